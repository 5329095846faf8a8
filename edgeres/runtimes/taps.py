"""The tensors at chosen points of a model file (its "taps"), computed by the machine this runs on: on this
host for ``edgeres diagnose``'s layer comparisons, and on a device by the runner (a ``"taps"`` job), which
sets them against this host's tensors of the same file there, so that only the metrics travel back.

- onnxruntime: the file must already list each point's tensor as a graph output (diagnose writes such a copy);
  ``outputs`` maps point -> output name. CPU, all graph optimizations, as bench runs it.
- TFLite: an interpreter that keeps every tensor (``experimental_preserve_all_tensors``) and runs TFLite's
  builtin kernels (a delegate such as XNNPACK computes its partition internally and keeps none of it);
  ``outputs`` maps point -> tensor index. int8 tensors are dequantized with their own scale and zero point,
  NHWC becomes NCHW.
- OpenVINO: the IR must already list each point's tensor as a model output (diagnose saves such a copy);
  ``outputs`` maps point -> output index. CPU, f32 inference precision, LATENCY, as bench runs it.

Standard library, numpy and the runtime only, like the rest of ``runtimes/``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .tflite_rt import _interpreter_api, _quantize

BATCH = 64


def onnx_tensors(model: Path | bytes, outputs: dict[str, str], x: np.ndarray, threads: int | None) -> dict:
    """Each point's tensor (float32) for images ``x``, from a model whose graph outputs include them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    wanted = list(dict.fromkeys(outputs.values()))
    feed = session.get_inputs()[0].name
    parts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for i in range(0, len(x), BATCH):
        for name, value in zip(wanted, session.run(wanted, {feed: np.ascontiguousarray(x[i:i + BATCH])})):
            parts[name].append(np.asarray(value, np.float32))
    return {point: np.concatenate(parts[tensor]) for point, tensor in outputs.items()}


def tflite_interpreter(path: Path, threads: int | None, preserve: bool = True):
    """An interpreter of ``path`` on TFLite's builtin kernels that keeps every tensor (``preserve``)."""
    package, interpreter_class, _, _ = _interpreter_api()
    options = {}
    if preserve:
        if package == "ai_edge_litert":
            from ai_edge_litert.interpreter import OpResolverType

            options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        options["experimental_preserve_all_tensors"] = True
    with warnings.catch_warnings():  # the interpreter warns that preserving tensors is for debugging
        warnings.simplefilter("ignore")
        interpreter = interpreter_class(model_path=str(path), num_threads=threads, **options)
    interpreter.allocate_tensors()
    return interpreter


def _value(interpreter, detail: dict) -> np.ndarray:
    value = interpreter.get_tensor(detail["index"])
    if np.dtype(detail["dtype"]) in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        value = (value.astype(np.float32) - zero) * scale
    value = np.asarray(value, np.float32)
    return value.transpose(0, 3, 1, 2) if value.ndim == 4 else value


def tflite_tensors(path: Path, outputs: dict[str, int], x: np.ndarray, threads: int | None) -> dict:
    """Each point's tensor (float32, NCHW) for images ``x``, image by image (the file's batch is 1)."""
    interpreter = tflite_interpreter(path, threads)
    inp = interpreter.get_input_details()[0]
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    parts: dict[str, list[np.ndarray]] = {p: [] for p in outputs}
    nhwc = np.asarray(x, np.float32).transpose(0, 2, 3, 1)
    for i in range(len(nhwc)):
        interpreter.set_tensor(inp["index"], _quantize(nhwc[i:i + 1], inp))
        interpreter.invoke()
        for point, index in outputs.items():
            parts[point].append(_value(interpreter, details[int(index)]))
    return {point: np.concatenate(values) for point, values in parts.items()}


def reads_alone(model) -> bool:
    """Whether ``openvino_tensors`` reads a read IR's outputs one compiled model at a time: an int8 IR."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def openvino_tensors(model, outputs: dict[str, int], x: np.ndarray, threads: int | None,
                     done: Callable[[str], None] | None = None) -> dict:
    """Each point's tensor (float32) for images ``x``, from an IR (a path, or a read ``ov.Model``) whose
    outputs include them. In an int8 IR (one with FakeQuantize operators) each output is read from a compiled
    model of its own, with only the first output beside it: a FakeQuantize made an output is no longer fused
    with the operators around it, which changes what the rest of the network computes (on a ResNet-18 int8
    IR, reading all 28 points at once took its logits to 28.8 dB from the file's own, and moved its points'
    SQNR against torch by up to 27.9 dB: ``benchmarks/point_taps.py``). ``done(point)`` follows each one read
    alone."""
    import openvino as ov

    core = ov.Core()
    read = core.read_model(str(model)) if isinstance(model, (str, Path)) else model
    if not reads_alone(read):
        return _openvino_run(core, read, outputs, x, threads)
    found = {}
    for point, index in outputs.items():
        alone = read.clone()
        for i, result in enumerate(alone.get_results()):
            if i not in (0, int(index)):
                alone.remove_result(result)
        found.update(_openvino_run(core, alone, {point: min(int(index), 1)}, x, threads))
        if done:
            done(point)
    return found


def _openvino_run(core, model, outputs: dict[str, int], x: np.ndarray, threads: int | None) -> dict:
    """``outputs`` (point -> output index) of ``model`` compiled as bench runs it (f32, LATENCY)."""
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    parts: dict[str, list[np.ndarray]] = {p: [] for p in outputs}
    for i in range(0, len(x), BATCH):
        result = request.infer({0: np.ascontiguousarray(x[i:i + BATCH], np.float32)})
        for point, index in outputs.items():
            parts[point].append(np.asarray(result[compiled.outputs[int(index)]], np.float32))
    return {point: np.concatenate(values) for point, values in parts.items()}


TENSORS = {"onnxruntime": onnx_tensors, "openvino": openvino_tensors, "tflite": tflite_tensors}


def tensors(runtime: str, path: Path, outputs: dict, x: np.ndarray, threads: int | None) -> dict:
    """Each point's tensor of ``path`` for images ``x`` with ``runtime``'s taps."""
    if runtime not in TENSORS:
        raise ValueError(f"no layer taps for runtime {runtime!r} on a device (known: {', '.join(TENSORS)})")
    return TENSORS[runtime](path, outputs, x, threads)
