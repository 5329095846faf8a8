from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, WorkspaceOpt, workspace
from edgeres.cli.devices_cmd import DevicesDirOpt


class BaselineDevice(str, Enum):
    """Where the FP32 baseline runs (``edgeres.baseline.choose_device``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def bench(
    device: Annotated[str, typer.Option(
        help="Device profile name (see `edgeres devices`) or a profile .yaml.")] = "cpu",
    model: Annotated[Optional[str], typer.Option(
        help="Artifact id/path or model name; default: the lineage of the newest export.")] = None,
    target: Annotated[Optional[list[str]], typer.Option(
        help="Formats to measure: onnx, openvino, tflite or all (repeatable); default: all.")] = None,
    precision: Annotated[Optional[list[str]], typer.Option(
        help="fp32, fp16, int8 or all (repeatable); default: all.")] = None,
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
) -> None:
    """Measure latency and accuracy of every exported variant on a device, beside the FP32 baseline."""
    from edgeres.bench import BenchRequest, run_bench
    from edgeres.console import out
    from edgeres.report import FILES, table

    method = {k: v for k, v in {"min_runs": min_runs, "min_seconds": min_seconds, "warmup": warmup,
                                "rounds": rounds}.items() if v is not None}
    request = BenchRequest(device=device, model=model, exports=export, targets=target, precisions=precision,
                           eval_limit=eval_limit, threads=threads, baseline=baseline.value, estimate=estimate,
                           method=method, devices_dir=devices_dir, data_dir=data, emulate=emulate,
                           trust_new_host=trust_new_host)
    result = run_bench(request, workspace(workspace_dir))
    out.print(table(result.results))
    for warning in result.results["warnings"]:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(f"saved {result.artifact.id}:")
    for name in FILES.values():
        out.print(f"  {result.file(name)}")
