"""onnxruntime sessions; the execution provider comes from the device profile (default: CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import RuntimeUnavailable, Session


class OnnxRuntimeSession(Session):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, provider: str = "CPUExecutionProvider",
                 provider_options: dict | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
        available = ort.get_available_providers()
        if provider not in available:
            raise RuntimeUnavailable(f"onnxruntime execution provider {provider} is not available here "
                                     f"(available: {', '.join(available)})")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=[provider],
                                                 provider_options=[provider_options or {}])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise RuntimeUnavailable(f"onnxruntime cannot load {path.name}: {str(exc).splitlines()[0][:300]}") from None
        self._input = self._session.get_inputs()[0].name
        self.device = provider
        self.version = ort.__version__

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0].astype(np.float32)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version}


def open_session(path: Path, threads: int | None = None, provider: str = "CPUExecutionProvider",
                 provider_options: dict | None = None, **_: Any) -> OnnxRuntimeSession:
    return OnnxRuntimeSession(Path(path), threads, provider, provider_options)
