from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, JsonOpt, WorkspaceOpt, workspace
from edgeres.cli.devices_cmd import DevicesDirOpt
from edgeres.cli.options import step_options
from edgeres.recipe import TuneStep


@step_options(TuneStep)
def tune(
    model: Annotated[str, typer.Argument(help="Model name (its latest FP32 train artifact) or a train artifact.")],
    options: TuneStep,
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

    request = TuneRequest(**options.model_dump(), model=model, output=output, data_dir=data, devices_dir=devices_dir)
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
        raise EdgeresError(f"no measured candidate kept val top-1 within {options.max_drop:g} pp "
                           f"(saved {result.artifact.id})", hint="raise --max-drop, or widen the search")
