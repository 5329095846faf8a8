"""onnxruntime sessions; the execution provider comes from the device profile (default: CPU).

Qualcomm's QNN execution provider is either built into onnxruntime (a Snapdragon board's build) or the
``onnxruntime-qnn`` plugin package (PyPI, onnxruntime >= 1.24), which is registered here; a bare
``backend_path`` such as ``libQnnHtp.so`` is then the plugin's own copy. The HTP compiles static shapes,
so symbolic dimensions (the batch) are fixed at 1 and batches run image by image. On a host that is no
Snapdragon (x86-64), QNN's backends are Qualcomm's emulators: the numerics are the NPU's, the speed is
not, and ``info()["emulated"]`` says so. A session on any provider but the CPU's is run once at load,
profiled, to report in ``info()["partitioning"]`` which nodes ran on the provider and which fell back to
the CPU (``ort_partition``).
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .base import RuntimeUnavailable, Session, first_line
from .ort_partition import partitioning, read_graph

CPU = "CPUExecutionProvider"
QNN = "QNNExecutionProvider"


def _qnn_plugin(ort, provider_options: dict[str, str]) -> tuple[list, dict[str, str]] | None:
    """The QNN devices of the onnxruntime-qnn plugin (registered once per process) and the provider
    options with a bare ``backend_path`` resolved to the plugin's library; None without the plugin."""
    try:
        import onnxruntime_qnn
    except ImportError:
        return None
    name = onnxruntime_qnn.get_ep_name()
    if not any(d.ep_name == name for d in ort.get_ep_devices()):
        try:
            ort.register_execution_provider_library(name, onnxruntime_qnn.get_library_path())
        except Exception as exc:  # onnxruntime raises its own types
            raise RuntimeUnavailable(f"cannot load onnxruntime-qnn's execution provider: {first_line(exc)}") from None
    options = dict(provider_options)
    bundled = Path(onnxruntime_qnn.get_qnn_htp_path()).parent / options.get("backend_path", "libQnnHtp.so")
    if "/" not in options.get("backend_path", "") and bundled.is_file():
        options["backend_path"] = str(bundled)
    return [d for d in ort.get_ep_devices() if d.ep_name == name], options


class OnnxRuntimeSession(Session):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, provider: str = CPU,
                 provider_options: dict | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable(registry.not_installed("onnxruntime")) from None
        available = ort.get_available_providers()
        provider_options = {k: str(v) for k, v in (provider_options or {}).items()}
        plugin = _qnn_plugin(ort, provider_options) if provider == QNN and provider not in available else None
        if provider not in available and not (plugin and plugin[0]):
            extra = "; for Qualcomm NPUs: pip install onnxruntime-qnn" if provider == QNN else ""
            raise RuntimeUnavailable(f"onnxruntime execution provider {provider} is not available here "
                                     f"(available: {', '.join(available)}{extra})")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            nodes, inputs = read_graph(path) if provider != CPU else ([], [])
        except (OSError, ValueError, IndexError) as exc:
            raise RuntimeUnavailable(f"onnxruntime cannot load {path.name}: {first_line(exc)}") from None
        self._fixed_batch = provider == QNN
        for name in {d for dims in inputs for d in dims if isinstance(d, str)} if self._fixed_batch else ():
            options.add_free_dimension_override_by_name(name, 1)
        profile_dir = tempfile.mkdtemp(prefix="edgeres-ort-") if provider != CPU else None
        if profile_dir:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(profile_dir) / "ort")
        try:
            if plugin:
                options.add_provider_for_devices(plugin[0], plugin[1])
                self._session = ort.InferenceSession(str(path), options)
            else:
                self._session = ort.InferenceSession(str(path), options, providers=[provider],
                                                     provider_options=[provider_options])
            self._input = self._session.get_inputs()[0].name
            self.partitioning = self._profile(nodes, provider) if profile_dir else None
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise RuntimeUnavailable(f"onnxruntime cannot load {path.name}: {first_line(exc)}") from None
        finally:
            if profile_dir:
                shutil.rmtree(profile_dir, ignore_errors=True)
        backend = Path((plugin[1] if plugin else provider_options).get("backend_path", "")).name
        self.device = f"{provider} ({backend})" if backend else provider
        on_arm = platform.machine().lower() in ("aarch64", "arm64")
        self.emulated = (f"Qualcomm's {backend or 'QNN'} emulator on {platform.machine()}"
                         if provider == QNN and not on_arm else None)
        self.version = ort.__version__

    def _profile(self, nodes: list[tuple[str, str]], provider: str) -> dict[str, Any]:
        """Run once on zeros, profiled, and read which nodes ran where; profiling stops afterwards."""
        shape = [d if isinstance(d, int) else 1 for d in self._session.get_inputs()[0].shape]
        self._session.run(None, {self._input: np.zeros(shape, np.float32)})
        return partitioning(self._session.end_profiling(), nodes, provider)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if self._fixed_batch and len(x) > 1:
            return np.concatenate([self.run(x[i:i + 1]) for i in range(len(x))])
        return self._session.run(None, {self._input: x})[0].astype(np.float32)

    def info(self) -> dict[str, Any]:
        extra = {"emulated": self.emulated} if self.emulated else {}
        if self.partitioning:
            extra["partitioning"] = self.partitioning
        return {**super().info(), "version": self.version, **extra}


def check(provider: str = CPU, **_: Any) -> tuple[bool, str]:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if provider == QNN and provider not in providers \
            and importlib.util.find_spec("onnxruntime_qnn") is not None:  # the plugin, registered per session
        emulator = "" if platform.machine().lower() in ("aarch64", "arm64") else ": Qualcomm's emulator"
        return True, f"onnxruntime (QNNExecutionProvider, onnxruntime-qnn{emulator})"
    if provider not in providers:
        return False, f"onnxruntime has no {provider} here (has: {', '.join(providers)})"
    return True, f"onnxruntime ({provider})"


def open_session(path: Path, threads: int | None = None, provider: str = CPU,
                 provider_options: dict | None = None, **_: Any) -> OnnxRuntimeSession:
    return OnnxRuntimeSession(Path(path), threads, provider, provider_options)
