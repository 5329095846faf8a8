"""Compute operators (convolutions, fully-connected layers, matrix products) that an int8 file still runs in
float, as its runtime prepares it for the CPU: the usual reason an int8 file is no faster than fp32.

- onnxruntime: the graph after its own optimizations (saved with ``optimized_model_filepath``): a Conv,
  Gemm or MatMul left there is a float one (the int8 ones become QLinearConv, QGemm, MatMulInteger...);
- OpenVINO: the compiled model's runtime graph, whose operators say the precision they run in
  (``runtimePrecision``);
- TFLite: the file's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED operators whose input is float.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

COMPUTE = {"onnx": ("Conv", "Gemm", "MatMul", "ConvTranspose"),
           "openvino": ("Convolution", "FullyConnected", "MatMul", "GroupConvolution"),
           "tflite": ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")}
INTEGER_ONNX = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul")


def _onnx(path: Path) -> dict:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeres-diagnose-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        nodes = onnx.load(options.optimized_model_filepath).graph.node
    compute = [n for n in nodes if n.op_type in COMPUTE["onnx"] or n.op_type in INTEGER_ONNX]
    left = [n.name or n.op_type for n in compute if n.op_type in COMPUTE["onnx"]]
    return {"compute_ops": len(compute), "float_ops": len(left), "float_names": left}


def _openvino(path: Path) -> dict:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    compute, left = 0, []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind not in COMPUTE["openvino"]:
            continue
        compute += 1
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
        if precision.lower() not in ("i8", "u8"):
            left.append(op.get_friendly_name())
    return {"compute_ops": compute, "float_ops": len(left), "float_names": left}


def _tflite(path: Path) -> dict:
    import numpy as np

    from edgeres.runtimes.taps import tflite_interpreter

    interpreter = tflite_interpreter(path, 1)
    types = {d["index"]: np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    compute = [op for op in interpreter._get_ops_details() if op["op_name"] in COMPUTE["tflite"]]  # noqa: SLF001
    left = [f"{op['op_name']} #{op['index']}" for op in compute if types[int(op["inputs"][0])].kind == "f"]
    return {"compute_ops": len(compute), "float_ops": len(left), "float_names": left}


def float_ops(fmt: str, path: Path) -> dict:
    """``{"compute_ops", "float_ops", "float_names"}`` for one file of format ``fmt``."""
    return {"onnx": _onnx, "openvino": _openvino, "tflite": _tflite}[fmt](path)
