"""The optional parts of edgeres (pyproject's extras) and the one check that a job's extra is installed.

The core trains, imports, evaluates, prunes, exports ONNX fp32/fp16 and benchmarks ONNX files. int8 needs
``quantize`` (NNCF), in every format; OpenVINO IR and TFLite need their own extra to export and to run.
"""

from __future__ import annotations

import importlib.util

from edgeres.errors import EdgeresError

# extra -> the modules it installs that edgeres imports (tests check them against pyproject.toml)
EXTRAS = {
    "quantize": ("nncf", "torchao"),
    "openvino": ("openvino",),
    "tflite": ("tensorflow", "tf_keras", "onnx2tf", "onnx_graphsurgeon", "sng4onnx", "ai_edge_litert"),
    "qnn": ("onnxruntime_qnn",),
}


def install_command(extra: str) -> str:
    return f"pip install 'edgeres[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed here."""
    return [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def require(extra: str, job: str) -> None:
    """Raise one clear error, with the install command, when ``job`` needs ``extra`` and it is not installed."""
    absent = missing(extra)
    if absent:
        raise EdgeresError(f"{job} needs the '{extra}' extra ({', '.join(absent)} not installed)",
                           hint=install_command(extra))
