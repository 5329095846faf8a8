"""OpenVINO sessions; the device (CPU, GPU, NPU) comes from the device profile.

fp32 files run with ``INFERENCE_PRECISION_HINT=f32`` so that "fp32" means fp32 even on CPUs where
OpenVINO would silently pick bf16; the LATENCY hint gives single-stream batch-1 behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .base import RuntimeUnavailable, Session, first_line


class OpenVinoSession(Session):
    runtime = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str = "CPU",
                 performance_hint: str = "LATENCY"):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeUnavailable(registry.not_installed("openvino")) from None
        core = ov.Core()
        if device not in core.available_devices:
            raise RuntimeUnavailable(f"OpenVINO device {device} is not available here "
                                     f"(available: {', '.join(core.available_devices)})")
        config: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint}
        if device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
        try:
            model = core.read_model(str(path))
            self.offload = None if device == "CPU" else offload(core, model, device)
            self._compiled = core.compile_model(model, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with long multi-line texts
            raise RuntimeUnavailable(f"OpenVINO cannot load {path.name}: {first_line(exc)}") from None
        self._request = self._compiled.create_infer_request()
        self.device = device
        self.version = ov.__version__

    def run(self, x: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: np.ascontiguousarray(x, np.float32)})
        return np.asarray(result[self._compiled.outputs[0]], np.float32)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version, **({"offload": self.offload} if self.offload else {})}


def offload(core: Any, model: Any, device: str) -> dict[str, Any]:
    """Which of the model's operators ``device`` takes, by OpenVINO's own ``query_model``; the rest fall
    back to the CPU under HETERO/AUTO (a plain NPU device refuses the model instead)."""
    unit = device.split(":", 1)[-1].split(",")[0]  # HETERO:NPU,CPU -> NPU
    ops = [op.get_friendly_name() for op in model.get_ordered_ops()
           if op.get_type_name() not in ("Parameter", "Result", "Constant")]
    placed = core.query_model(model, device)
    taken = sum(1 for name in ops if placed.get(name, "").split(".")[0] == unit)
    return {"unit": unit, "source": "OpenVINO query_model", "ops": len(ops), "on_cpu": len(ops) - taken}


def check(device: str = "CPU", **_: Any) -> tuple[bool, str]:
    try:
        import openvino as ov

        devices = ov.Core().available_devices
    except Exception as exc:  # a broken plugin set-up raises RuntimeError
        return False, f"openvino is not usable: {first_line(exc, 200)}"
    if device not in devices:
        return False, f"OpenVINO has no {device} device here (has: {', '.join(devices)})"
    return True, f"openvino ({device})"


def open_session(path: Path, threads: int | None = None, device: str = "CPU", **_: Any) -> OpenVinoSession:
    return OpenVinoSession(Path(path), threads, device)
