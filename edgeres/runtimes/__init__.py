"""Runtimes: load an exported model file and run it. One module per runtime.

These modules import only the standard library, numpy and their own runtime package (never torch or
the rest of edgeres), so the ssh device backend can copy them to a device as they are and run the very
same code there; ``torch_rt`` (the FP32 baseline) is the exception and runs on the edgeres host only.
Every session takes NCHW float32 batches, normalized as the model's preprocessing says, and returns
float32 logits; layout and int8 input/output conversions happen inside the session.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import RuntimeUnavailable, Session  # noqa: F401

RUNTIME_MODULES = {
    "onnxruntime": "onnxruntime_rt",
    "openvino": "openvino_rt",
    "tflite": "tflite_rt",
    "torch": "torch_rt",  # the FP32 baseline, on the edgeres host only
}
SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "tflite", ".pt": "torch"}


def open_session(path: Path | str, runtime: str | None = None, **options) -> Session:
    """A session for a model file; the runtime defaults to the one its suffix implies."""
    path = Path(path)
    runtime = runtime or SUFFIX_RUNTIME.get(path.suffix)
    if runtime not in RUNTIME_MODULES:
        raise RuntimeUnavailable(f"no runtime for {path.name} (known: {', '.join(RUNTIME_MODULES)})")
    module = importlib.import_module(f"{__name__}.{RUNTIME_MODULES[runtime]}")
    return module.open_session(path, **options)
