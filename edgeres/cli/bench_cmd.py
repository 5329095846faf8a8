from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, JsonOpt, Precision, Target, WorkspaceOpt, values,
                                 workspace)
from edgeres.cli.devices_cmd import DevicesDirOpt


class BaselineDevice(str, Enum):
    """Where the FP32 baseline runs (``edgeres.baseline.choose_device``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def bench(
    device: Annotated[Optional[list[str]], typer.Option(
        help="Device profile name (see `edgeres devices`) or a profile .yaml; repeat it for a fleet: each "
             "device benched in turn, one report with a row group per device (default: cpu).")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Artifact id/path or model name; default: the lineage of the newest export.")] = None,
    target: Annotated[Optional[list[Target]], typer.Option(
        help="Formats to measure (repeatable); default: all.")] = None,
    precision: Annotated[Optional[list[Precision]], typer.Option(
        help="Precisions to measure (repeatable); default: all.")] = None,
    export: Annotated[Optional[list[str]], typer.Option(
        "--export", help="Measure exactly this export artifact (id or path; repeatable) instead of the newest "
        "export per format and precision.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(
        min=1, help="Test images for top-1 (a seeded subset); default 1000, or the device's stated cap where its "
        "emulator is slow (this raises it).")] = None,
    baseline: Annotated[BaselineDevice, typer.Option(
        help="Where the FP32 PyTorch baseline runs: auto (CUDA when available), cpu or cuda.")] = BaselineDevice.auto,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Threads per runtime; default: the profile's, "
                                                              "else every core.")] = None,
    estimate: Annotated[bool, typer.Option("--estimate", help="Estimate latency from the profile's figures "
                                           "instead of measuring on the device (labelled estimated).")] = False,
    emulate: Annotated[bool, typer.Option("--emulate", help="Run on the device's emulation here (aarch64 boards: "
                                          "qemu-user, after `edgeres devices --setup DEVICE`): its accuracy on its "
                                          "own kernels, labelled emulated; latency estimated.")] = False,
    trust_new_host: Annotated[bool, typer.Option("--trust-new-host", help="Trust an ssh device whose host key "
                                                 "is not in known_hosts yet, and record it (a changed key is "
                                                 "always refused).")] = False,
    min_runs: Annotated[Optional[int], typer.Option(min=1, help="Timed batch-1 runs, at least.")] = None,
    min_seconds: Annotated[Optional[float], typer.Option(min=0.0, help="Seconds of timed runs, at least.")] = None,
    warmup: Annotated[Optional[int], typer.Option(min=0, help="Untimed runs before timing.")] = None,
    rounds: Annotated[Optional[int], typer.Option(min=1, help="Latency rounds, each in fresh processes; p50 is "
                                                  "the median of the rounds' (default 9).")] = None,
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

    method = {k: v for k, v in {"min_runs": min_runs, "min_seconds": min_seconds, "warmup": warmup,
                                "rounds": rounds}.items() if v is not None}
    names = device or ["cpu"]
    request = BenchRequest(device=names[0], model=model, exports=export, targets=values(target),
                           precisions=values(precision), eval_limit=eval_limit, threads=threads, baseline=baseline.value, estimate=estimate,
                           method=method, devices_dir=devices_dir, data_dir=data, emulate=emulate,
                           trust_new_host=trust_new_host)
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
