"""ONNX export: fp32, fp16 (float32 inputs/outputs), and int8 as QDQ with the quantizer's own scales.

Opset 17: the newest opset torch's TorchScript exporter, onnxruntime, OpenVINO and onnx2tf all handle
well, and >= 13 as per-channel QuantizeLinear/DequantizeLinear need. The batch axis is dynamic.

int8: NNCF's fake-quantizers are stripped to torch's native ones and exported as QuantizeLinear /
DequantizeLinear pairs with the calibrated scales and zero points. Weight QuantizeLinear nodes are then
folded offline into int8 initializers (exactly what the runtime would compute, rounding half to even),
so the file stores int8 weights (a quarter of the fp32 size) and runtimes see the standard
"int8 weight -> DequantizeLinear" pattern their int8 kernels match.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeres.errors import EdgeresError
from edgeres.export.formats import ExportJob

OPSET = 17


def torch_to_onnx(model: nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
    """Export a torch module with a dynamic batch axis (input ``input``, output ``logits``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model.eval(), torch.zeros(input_shape), str(path), input_names=["input"],
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as exc:  # the exporter raises many types; name the failure, keep no file
            path.unlink(missing_ok=True)
            raise EdgeresError(f"ONNX export failed: {str(exc).splitlines()[0][:300]}") from None
    return path


def set_metadata(model, metadata: dict[str, str]) -> None:
    import onnx

    onnx.helper.set_model_props(model, metadata)  # replaces any existing props


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def fold_weight_quantization(model) -> int:
    """Replace QuantizeLinear(constant weight) by its int8 result; returns how many were folded."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def constant(name: str):
        node = producers.get(name)
        while node is not None and node.op_type == "Identity":
            name = node.input[0]
            node = producers.get(name)
        return inits.get(name)

    folded, remove = 0, []
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        weight, scale, zero = (constant(n) for n in node.input[:3])
        if weight is None or scale is None or zero is None:
            continue  # an activation quantizer
        w = numpy_helper.to_array(weight).astype(np.float32)
        s = numpy_helper.to_array(scale).astype(np.float32)
        z = numpy_helper.to_array(zero)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if s.ndim == 1 and w.ndim > 1:
            shape = [1] * w.ndim
            shape[axis] = -1
            s, zb = s.reshape(shape), z.reshape(shape).astype(np.int32)
        else:
            zb = z.astype(np.int32)
        info = np.iinfo(z.dtype)
        q = np.clip(np.rint(w / s) + zb, info.min, info.max).astype(z.dtype)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        remove.append(node)
        folded += 1
    for node in remove:
        graph.node.remove(node)
    # drop initializers and Identity nodes that nothing reads any more
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    changed = True
    while changed:
        changed = False
        for node in list(graph.node):
            if node.op_type == "Identity" and not any(o in used for o in node.output):
                graph.node.remove(node)
                changed = True
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return folded


def _finish(model, job: ExportJob) -> Path:
    import onnx

    set_metadata(model, job.metadata)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise EdgeresError(f"exported ONNX model is invalid: {str(exc).splitlines()[0][:300]}") from None
    onnx.save(model, str(job.out_path))
    return job.out_path


def export(job: ExportJob) -> Path:
    import onnx

    if job.precision == "fp32":
        model = onnx.load(str(job.float_onnx()))
    elif job.precision == "fp16":
        from onnxconverter_common import float16

        with warnings.catch_warnings():  # it warns about every value it clamps to the fp16 range
            warnings.simplefilter("ignore")
            model = float16.convert_float_to_float16(onnx.load(str(job.float_onnx())), keep_io_types=True)
    else:
        from edgeres.quantize.engine import native

        example = torch.zeros(job.preprocessing.input_shape(1))
        tmp = job.out_path.with_suffix(".qdq-tmp.onnx")
        try:
            torch_to_onnx(native(job.torch_model, example), tmp, job.preprocessing.input_shape(1))
            model = onnx.load(str(tmp))
        finally:
            tmp.unlink(missing_ok=True)
        fold_weight_quantization(model)
    return _finish(model, job)

