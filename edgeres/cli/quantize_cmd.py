from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, DatasetOpt, NprocOpt, TrustPickleOpt, WorkspaceOpt,
                                 spread, workspace)
from edgeres.cli.options import step_options
from edgeres.recipe import QuantizeStep


@step_options(QuantizeStep)
def quantize(
    model: Annotated[str, typer.Argument(help="Model name (its latest FP32 artifact) or an artifact id/path.")],
    options: QuantizeStep,
    int8: Annotated[bool, typer.Option("--int8", help="Quantize to int8 (the precision quantize makes).")] = False,
    precision: Annotated[Optional[str], typer.Option(help="Same as --int8 when 'int8'.")] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Same as --method qat.")] = False,
    weights: Annotated[Optional[Path], typer.Option(help="Start from this FP32 checkpoint file.")] = None,
    trust_pickle: TrustPickleOpt = False,
    dataset: DatasetOpt = None,
    data: DataDirOpt = None,
    nproc: NprocOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Quantize a model to int8: post-training (default) or --qat, with an optional accuracy budget.

    With --qat, --nproc N (or torchrun) runs QAT's training as DDP; every process calibrates alike."""
    from edgeres.errors import EdgeresError

    if precision is not None and precision != "int8":
        raise EdgeresError(f"quantize makes int8 models, not {precision!r}",
                           hint="fp16 and fp32 are export precisions: `edgeres export --precision fp16`")
    if not (int8 or precision == "int8"):
        raise EdgeresError("say which precision: --int8", hint=f"edgeres quantize {model} --int8")

    if qat:
        options = options.model_copy(update={"method": "qat"})
    if nproc not in (None, 1) and options.method != "qat":
        raise EdgeresError("--nproc spreads training over processes: post-training quantization has none",
                           hint="add --qat, or leave out --nproc")
    spread(nproc)
    from edgeres import distributed
    from edgeres.console import stdout_to_stderr
    from edgeres.quantize.step import QuantizeRequest, run_quantize

    request = QuantizeRequest.of(options, model=model, dataset=dataset and dataset.value, data_dir=data,
                                 weights=weights, trust_pickle=trust_pickle)
    with distributed.joined(), stdout_to_stderr():  # NNCF's progress bars too: stdout is the path alone
        artifact = run_quantize(request, workspace(workspace_dir))
    if not distributed.is_main():
        return
    if options.analyze and (artifact.path / "sensitivity.json").is_file():
        _print_sensitivity(artifact.path / "sensitivity.json")
    print(artifact.path)


def _print_sensitivity(path: Path) -> None:
    import json

    from rich.text import Text

    from edgeres.console import show, table

    shown = table("layer", "val top-1 with layer in float", "recovery (pp)", "logit SQNR (dB)",
                  title="int8 sensitivity (most sensitive first)")
    for row in json.loads(path.read_text()):
        shown.add_row(Text(row["layer"]), f"{row['top1_with_layer_float']:.2f}", f"{row['recovery_pp']:+.2f}",
                      f"{row['sqnr_db']:.1f}")
    show(shown)
