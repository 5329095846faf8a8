"""The one table of export formats: it drives export, verification and benchmarking.

A new format is one exporter module plus one row here: the exporter module has
``export(job: ExportJob) -> Path`` and the runtime named here can open its files. Every format's int8 file
is the quantize artifact's model (``ExportJob.torch_model``) with its quantizers' scales and zero points;
none calibrates int8 on its own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # of the main file; OpenVINO's weights .bin sits beside the .xml
    precisions: tuple[str, ...]
    runtime: str  # the edgeres.runtimes name that runs it
    exporter: str  # module with export(job) -> Path
    description: str
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)  # option -> allowed values

    @property
    def extra(self) -> str | None:
        """The edgeres extra that exports and runs this format (None: the core)."""
        from edgeres.runtimes import registry

        return registry.get(self.runtime).extra

    def export_function(self) -> Callable[["ExportJob"], Path]:
        return importlib.import_module(self.exporter).export

    def runnable_here(self, path: Path) -> Path:
        """The file that verification runs for ``path``: itself, or a twin the exporter kept beside a file
        that needs an accelerator (``runnable_twin``: an Edge TPU-compiled TFLite file)."""
        twin = getattr(importlib.import_module(self.exporter), "runnable_twin", None)
        return twin(path) if twin is not None else path


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", PRECISIONS, "onnxruntime", "edgeres.export.onnx",
                   "ONNX (onnxruntime); int8 as QDQ with the quantizer's scales"),
    "openvino": Format("openvino", ".xml", PRECISIONS, "openvino", "edgeres.export.openvino",
                       "OpenVINO IR (.xml + .bin)"),
    "tflite": Format("tflite", ".tflite", PRECISIONS, "tflite", "edgeres.export.tflite",
                     "TFLite flatbuffer, NHWC (LiteRT / tflite-runtime); int8 with the quantizer's scales",
                     options={"io": ("int8", "float"), "compile": ("none", "edgetpu")}),
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise EdgeresError(f"unknown export target {name!r}", hint=f"choose one of: {', '.join(FORMATS)}, all")
    return FORMATS[name]


@dataclass(kw_only=True)
class ExportJob:
    """Everything an exporter needs. ``out_path`` is the main file to write (inside a temporary artifact
    directory: a failure leaves nothing behind)."""

    precision: str
    out_path: Path
    preprocessing: Preprocessing
    torch_model: Any  # nn.Module: float for fp32/fp16; NNCF-quantized for int8 from a quantize artifact
    float_onnx: Callable[[], Path]  # lazily exported fp32 ONNX of the float model (dynamic batch)
    calibration: Callable[[], np.ndarray]  # NCHW float32 images, preprocessed (TFLite int8: the logits' range)
    metadata: dict[str, str]  # to embed in the file: preprocessing, labels, parent, edgeres version
    options: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)  # what the exporter found, for the manifest's metrics
