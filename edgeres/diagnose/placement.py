"""What ran where, for files meant for an accelerator, with the placement code bench already uses:

- int8 ONNX on a Qualcomm Hexagon NPU: onnxruntime's QNN execution provider (Qualcomm's HTP emulator off a
  Snapdragon), one profiled run, read by ``runtimes.ort_partition`` (its fused subgraphs and the nodes left
  to the CPU);
- OpenVINO IR on each NPU or GPU device OpenVINO sees here: its own ``query_model`` (``openvino_rt.offload``);
- TFLite compiled for the Edge TPU: the file's own operators (``backends.placement.edgetpu_offload``).

Each CPU node is mapped to the model block it belongs to by its name; ``compute_on_cpu`` counts the
convolutions, matrix products, additions, activations and pools among them (weight dequantizations the CPU
folds once at load are not work per image). Where no accelerator is present, the entry says so.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.console import say
from edgeres.diagnose.points import block_of


def _qnn(path: Path, blocks: list[str]) -> dict:
    """The QNN placement, read in a process of its own: a second QNN session in one process is given no
    nodes at all (onnxruntime-qnn's plugin), so each file gets a fresh process, as in bench."""
    import json
    import subprocess
    import sys

    say(f"placing {path.name} on the QNN HTP (one profiled run, in a process of its own)")
    proc = subprocess.run([sys.executable, "-m", "edgeres.diagnose.placement", str(path), *blocks],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        from edgeres.runtimes.base import first_line

        reason = first_line(Exception(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""))
        return {"unit": "Qualcomm HTP", "unavailable": f"the placement run failed (exit {proc.returncode}): {reason}"}
    return json.loads(lines[-1])


def _qnn_here(path: Path, blocks: list[str]) -> dict:
    import onnxruntime as ort

    from edgeres.runtimes.base import RuntimeUnavailable
    from edgeres.runtimes.onnxruntime_rt import QNN, OnnxRuntimeSession, check
    from edgeres.runtimes.ort_partition import COMPUTE_OPS

    usable, why = check(QNN)
    if not usable:
        return {"unit": "Qualcomm HTP", "unavailable": why}
    ort.set_default_logger_severity(3)  # the provider warns about every node it validates
    try:
        session = OnnxRuntimeSession(path, provider=QNN, provider_options={"backend_path": "libQnnHtp.so"})
    except RuntimeUnavailable as exc:
        return {"unit": "Qualcomm HTP", "unavailable": str(exc)}
    part = session.partitioning or {}
    by_block: dict[str, int] = {}
    for entry in part.get("cpu_nodes", []):
        name = entry.split(" ", 1)[-1]
        block = block_of(name, blocks)
        by_block[block] = by_block.get(block, 0) + 1
    return {"unit": "Qualcomm HTP", "emulated": session.emulated, "ops": part.get("nodes"),
            "on_cpu": part.get("on_cpu"), "subgraphs": part.get("subgraphs"),
            "compute_on_cpu": sum(part.get("ops", {}).get(op, {}).get("cpu", 0) for op in COMPUTE_OPS),
            "compute_on_provider": part.get("compute_on_provider"), "cpu_nodes": part.get("cpu_nodes", []),
            "cpu_by_block": by_block, "source": "onnxruntime profiler (QNN execution provider)"}


def _openvino(path: Path) -> list[dict]:
    import openvino as ov

    from edgeres.runtimes.openvino_rt import offload

    core = ov.Core()
    devices = [d for d in core.available_devices if d.split(".")[0] in ("NPU", "GPU")]
    if not devices:
        return [{"unit": "NPU/GPU", "unavailable": f"OpenVINO sees no NPU or GPU here (devices: "
                                                   f"{', '.join(core.available_devices)})"}]
    model = core.read_model(str(path))
    return [offload(core, model, f"HETERO:{device},CPU") for device in devices]


def placement(fmt: str, precision: str, path: Path, blocks: list[str]) -> list[dict]:
    """Where each accelerator that could run this file would run its operators; [] when none applies."""
    if fmt == "onnx" and precision == "int8":
        return [_qnn(path, blocks)]
    if fmt == "openvino":
        return _openvino(path)
    if fmt == "tflite" and precision == "int8":
        from edgeres.backends.placement import compiled_for, edgetpu_offload

        if "edgetpu" in compiled_for(path, "tflite"):
            return [edgetpu_offload(path) or {"unit": "Edge TPU", "unavailable": "the file cannot be read"}]
    return []


if __name__ == "__main__":  # python -m edgeres.diagnose.placement FILE BLOCK...: _qnn_here's answer as JSON
    import json
    import sys

    print(json.dumps(_qnn_here(Path(sys.argv[1]), sys.argv[2:])))
