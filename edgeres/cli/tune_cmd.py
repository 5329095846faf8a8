from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, EvalLimitOpt, JsonOpt, Precision, Target,
                                 WorkspaceOpt, values, workspace)
from edgeres.cli.devices_cmd import DevicesDirOpt


def tune(
    model: Annotated[str, typer.Argument(help="Model name (its latest FP32 train artifact) or a train artifact.")],
    max_drop: Annotated[float, typer.Option(help="Accuracy budget: the val top-1 (percentage points) the chosen "
                                                 "variant may lose against the FP32 model.")],
    device: Annotated[str, typer.Option(help="Device profile (see `edgeres devices`); one that cannot be used "
                                             "now gives labelled estimates, as bench does.")] = "cpu",
    budget_minutes: Annotated[Optional[float], typer.Option(help="Start no new work after this many minutes; "
                                                            "run again to go on (finished candidates are "
                                                            "reused).")] = None,
    ratio: Annotated[Optional[list[float]], typer.Option(help="Pruning ratios to try besides the unpruned model "
                                                         "(repeatable); default 0.25 and 0.5.")] = None,
    target: Annotated[Optional[list[Target]], typer.Option(help="Formats (repeatable); default: all.")] = None,
    precision: Annotated[Optional[list[Precision]], typer.Option(help="Precisions (repeatable); default: all.")] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Also quantization-aware training for every int8 "
                                                    "candidate's model.")] = False,
    qat_epochs: Annotated[int, typer.Option(help="QAT epochs.")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tune epochs after pruning (once per ratio).")] = 3,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Fine-tune and QAT on a seeded subset of the "
                                                             "training images.")] = None,
    val_limit: Annotated[Optional[int], typer.Option(min=1, help="Validation images every decision is taken "
                                                                 "on.")] = 2000,
    eval_limit: EvalLimitOpt = None,
    rounds: Annotated[int, typer.Option(help="Latency rounds per candidate, each in a fresh process.")] = 3,
    output: Annotated[Optional[Path], typer.Option(help="Also copy the chosen file here.")] = None,
    data: DataDirOpt = None,
    devices_dir: DevicesDirOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
    json_: JsonOpt = False,
) -> None:
    """The fastest variant within an accuracy budget, measured on the device: searches pruning ratios, int8
    (PTQ, --qat), targets and precisions; shows the Pareto front of val top-1, p50 and size.

    --json: {"artifact", "path", "files": {"json", "png"}, "results"}, results being tune.json: "chosen",
    "single_step", "speedup_vs_single_step", "front", "lineage", "fp32_val_top1", "stopped", "reused",
    "made", "candidates" (each: "name", "status", "val_top1", "val_drop_pp", "test_top1", "p50_ms",
    "latency_kind", "size_bytes", "macs", "export", "bench", "on_front", "why")."""
    from edgeres.console import emit_json, stdout_to_stderr
    from edgeres.errors import EdgeresError
    from edgeres.tune import TuneRequest, run_tune
    from edgeres.tune.space import DEFAULT_RATIOS

    request = TuneRequest(model=model, device=device, max_drop=max_drop, budget_minutes=budget_minutes,
                          ratios=list(ratio or DEFAULT_RATIOS), qat=qat, qat_epochs=qat_epochs,
                          finetune_epochs=finetune_epochs, limit=limit, val_limit=val_limit, eval_limit=eval_limit,
                          rounds=rounds, output=output, data_dir=data, devices_dir=devices_dir)
    if target:
        request.targets = values(target)
    if precision:
        request.precisions = values(precision)
    with stdout_to_stderr(json_):
        result = run_tune(request, workspace(workspace_dir))
    from edgeres.tune import report

    files = {kind: str(result.artifact.path / name) for kind, name in report.FILES.items()}
    if json_:
        emit_json({"artifact": result.artifact.id, "path": str(result.artifact.path), "files": files,
                   "results": result.results})
    else:
        from edgeres.console import out, show

        show(report.table(result.results))
        out.print(f"saved {result.artifact.id}:", markup=False)
        for path in [*files.values(), *sorted(str(p) for p in result.artifact.path.glob("*")
                                              if p.name not in report.FILES.values() and p.name != "manifest.json")]:
            out.print(f"  {path}", markup=False, soft_wrap=True)
    if result.results["chosen"] is None:
        raise EdgeresError(f"no measured candidate kept val top-1 within {max_drop:g} pp "
                           f"(saved {result.artifact.id})", hint="raise --max-drop, or widen the search")
