"""TFLite (LiteRT) sessions: XNNPACK on the CPU by default, or a delegate library from the device profile
(``libedgetpu.so.1`` for a Coral Edge TPU, which also needs the file compiled by ``edgetpu_compiler``).

The interpreter comes from ``ai-edge-litert``, else ``tflite-runtime`` (what older Raspberry Pi and Coral
images have), else full TensorFlow; ``info()`` says which. TFLite files are NHWC: ``run`` takes NCHW
batches like every session and transposes them. An int8/uint8 input tensor gets the images quantized with
its own scale and zero point, and an int8/uint8 output is dequantized, so full-integer files take and
return the same floats as float files. Files with a fixed batch (edgeres writes batch 1) run chunk by
chunk; a file with a dynamic batch axis is resized to the batch instead.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .base import RuntimeUnavailable, Session, first_line

_PACKAGES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow")
_SCHEMAS = ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated",
            "tensorflow.lite.python.schema_py_generated")


def flatbuffer_schema():
    """The generated reader of TFLite's flatbuffer schema from the first package installed that ships it,
    or None."""
    for name in _SCHEMAS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _interpreter_api() -> tuple[str, Any, Any, str]:
    """(package, Interpreter class, load_delegate function, version) of the first interpreter installed."""
    for name in _PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if name == "tensorflow":
            lite = module.lite
            return "tensorflow.lite", lite.Interpreter, lite.experimental.load_delegate, module.__version__
        package = importlib.import_module(name.split(".")[0])
        return name.split(".")[0], module.Interpreter, module.load_delegate, getattr(package, "__version__", "?")
    raise RuntimeUnavailable(registry.not_installed("tflite") + ": no TFLite interpreter (ai-edge-litert, "
                             "tflite-runtime or tensorflow)")


class TFLiteSession(Session):
    runtime = "tflite"

    def __init__(self, path: Path | bytes, threads: int | None = None, delegate: str | None = None):
        """``path``: the file, or its bytes (a file made in memory, such as a cut of one)."""
        self.package, interpreter_class, load_delegate, self.version = _interpreter_api()
        delegates = []
        if delegate:
            try:
                ctypes.CDLL(delegate)  # first, as a failing load_delegate also prints a spurious traceback
                delegates.append(load_delegate(delegate))
            except (ValueError, OSError, RuntimeError) as exc:
                raise RuntimeUnavailable(f"cannot load the TFLite delegate {delegate}: {first_line(exc)}") from None
        source = {"model_content": path} if isinstance(path, bytes) else {"model_path": str(path)}
        try:
            self._interpreter = interpreter_class(**source, num_threads=threads,
                                                  experimental_delegates=delegates or None)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            name = "a model made in memory" if isinstance(path, bytes) else path.name
            raise RuntimeUnavailable(f"TFLite cannot load {name}: {first_line(exc)}") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        batch = int(self._input["shape_signature"][0])
        self._fixed_batch = batch if batch > 0 else None
        self._batch = int(self._input["shape"][0])
        self.device = f"delegate {delegate}" if delegate else "CPU (XNNPACK)"
        self.threads = threads

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32).transpose(0, 2, 3, 1)
        if self._fixed_batch is None:
            return self._invoke(x)
        size = self._fixed_batch
        outputs = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            if len(chunk) < size:  # pad the last chunk to the file's batch; the padding's results are dropped
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)])
            outputs.append(self._invoke(chunk))
        return np.concatenate(outputs)[:len(x)]

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [len(x), *x.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interpreter.invoke()
        y = _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)
        return y.reshape(len(x), -1)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version, "interpreter": self.package, "threads": self.threads,
                "input_shape": [int(d) for d in self._input["shape_signature"]],
                "input_dtype": np.dtype(self._input["dtype"]).name,
                "batch": self._fixed_batch if self._fixed_batch is not None else "dynamic"}


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float32 -> the tensor's type (int8/uint8 with its scale and zero point; others unchanged)."""
    dtype = np.dtype(detail["dtype"])
    if dtype not in (np.int8, np.uint8):
        return np.ascontiguousarray(x, dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]) not in (np.int8, np.uint8):
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def check(delegate: str | None = None, **_: Any) -> tuple[bool, str]:
    if delegate:
        try:
            ctypes.CDLL(delegate)
        except OSError:
            return False, f"TFLite delegate library {delegate} is not installed here"
        return True, f"tflite ({delegate})"
    return True, "tflite (XNNPACK)"


def open_session(path: Path, threads: int | None = None, delegate: str | None = None, **_: Any) -> TFLiteSession:
    return TFLiteSession(Path(path), threads, delegate)
