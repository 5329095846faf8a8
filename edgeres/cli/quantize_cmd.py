from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, EvalLimitOpt, TrustPickleOpt, WorkspaceOpt,
                                 workspace)


class Estimator(str, Enum):
    default = "default"
    minmax = "minmax"
    mean_minmax = "mean-minmax"
    percentile = "percentile"
    mse = "mse"


class BiasCorrection(str, Enum):
    none = "none"
    fast = "fast"


def quantize(
    model: Annotated[str, typer.Argument(help="Model name (its latest FP32 artifact) or an artifact id/path.")],
    int8: Annotated[bool, typer.Option("--int8", help="Quantize to int8 (the precision quantize makes).")] = False,
    precision: Annotated[Optional[str], typer.Option(help="Same as --int8 when 'int8'.")] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Quantization-aware training after PTQ.")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="QAT epochs (the best by validation accuracy is kept).")] = 1,
    lr: Annotated[float, typer.Option(min=0.0, help="QAT peak learning rate.")] = 0.002,
    calib_samples: Annotated[int, typer.Option(min=1, max=100000,
                                               help="Calibration images from the training split.")] = 300,
    estimator: Annotated[Estimator, typer.Option(help="Activation range estimator.")] = Estimator.default,
    bias_correction: Annotated[BiasCorrection, typer.Option(help="NNCF's fast bias correction, or none (fast "
                                                            "cost accuracy on BN-folded ResNets here).")]
    = BiasCorrection.none,
    max_drop: Annotated[Optional[float], typer.Option(help="Accuracy budget in percentage points: keep the most "
                                                           "sensitive layers in float until it holds.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero when the budget cannot be met.")] = False,
    analyze: Annotated[bool, typer.Option("--analyze", help="Save and print per-layer sensitivity.")] = False,
    weights: Annotated[Optional[Path], typer.Option(help="Start from this FP32 checkpoint file.")] = None,
    trust_pickle: TrustPickleOpt = False,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset; default: the model's own (fashion-mnist when "
                                                   "one must be trained first).")] = None,
    data: DataDirOpt = None,
    train_limit: Annotated[Optional[int], typer.Option(min=1, help="QAT on a subset of the training images.")] = None,
    val_limit: Annotated[Optional[int], typer.Option(min=1, help="Validation images for budget/analysis/QAT.")] = 2000,
    eval_limit: EvalLimitOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Quantize a model to int8: post-training (default) or --qat, with an optional accuracy budget."""
    from edgeres.errors import EdgeresError

    if precision is not None and precision != "int8":
        raise EdgeresError(f"quantize makes int8 models, not {precision!r}",
                           hint="fp16 and fp32 are export precisions: `edgeres export --precision fp16`")
    if not (int8 or precision == "int8"):
        raise EdgeresError("say which precision: --int8", hint=f"edgeres quantize {model} --int8")

    from edgeres.quantize.step import QuantizeRequest, run_quantize

    request = QuantizeRequest(model=model, dataset=dataset, data_dir=data, weights=weights,
                              calib_samples=calib_samples, estimator=estimator.value,
                              bias_correction=bias_correction.value, qat=qat, epochs=epochs, lr=lr,
                              train_limit=train_limit, max_drop=max_drop, strict=strict, analyze=analyze,
                              val_limit=val_limit, eval_limit=eval_limit, trust_pickle=trust_pickle)
    artifact = run_quantize(request, workspace(workspace_dir))
    if analyze and (artifact.path / "sensitivity.json").is_file():
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
