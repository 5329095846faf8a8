from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, JsonOpt, WorkspaceOpt, workspace
from edgeres.cli.devices_cmd import DevicesDirOpt, TrustNewHostOpt
from edgeres.cli.options import step_options
from edgeres.recipe import BenchStep


@step_options(BenchStep)
def bench(
    options: BenchStep,
    model: Annotated[Optional[str], typer.Option(
        help="Artifact id/path or model name; default: the lineage of the newest export.")] = None,
    export: Annotated[Optional[list[str]], typer.Option(
        "--export", help="Measure exactly this export artifact (id or path; repeatable) instead of the newest "
        "export per format and precision.")] = None,
    trust_new_host: TrustNewHostOpt = False,
    data: DataDirOpt = None,
    devices_dir: DevicesDirOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
    json_: JsonOpt = False,
) -> None:
    """Measure latency and accuracy of every exported variant on a device, beside the FP32 baseline.

    --json: {"artifact", "path", "files": {"json", "csv", "md", "png"}, "results"}, results being the saved
    results.json: "model", "dataset", "root", "device", "mode", "host", "method", "eval", "rows" (one per
    variant, the baseline first: "variant", "role", "status", "format", "precision", "runtime", "device",
    "top1", "delta_top1_pp", "p50_ms", "p90_ms", "estimated_p50_ms", "speedup", "speedup_vs_fp32",
    "size_bytes", "error", ...; the CSV's columns), "skipped" and "warnings"."""
    from edgeres.bench import BenchRequest, run_bench
    from edgeres.console import emit_json, stdout_to_stderr

    names = options.devices
    request = BenchRequest.of(options, device=names[0], model=model, exports=export, devices_dir=devices_dir,
                              data_dir=data, trust_new_host=trust_new_host)
    with stdout_to_stderr(json_):
        if len(names) > 1:
            from edgeres.bench.fleet import run_fleet

            result = run_fleet(request, names, workspace(workspace_dir))
        else:
            result = run_bench(request, workspace(workspace_dir))
    if json_:
        from edgeres.report import document

        emit_json(document(result.artifact, result.results))
        return
    show_results(result.results)
    from edgeres.console import out
    from edgeres.report import FILES

    out.print(f"saved {result.artifact.id}:", markup=False)
    for name in FILES.values():
        out.print(f"  {result.file(name)}", markup=False, soft_wrap=True)


def show_results(results: dict) -> None:
    """A bench's table and its warnings on stdout (``bench``, ``report`` and ``run``)."""
    from rich.text import Text

    from edgeres.console import out, show
    from edgeres.report import table

    show(table(results))
    for warning in results["warnings"]:
        out.print(Text.assemble(("warning:", "yellow"), " ", warning), soft_wrap=True)
