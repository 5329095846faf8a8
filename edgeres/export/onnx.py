"""ONNX export: fp32, fp16 (float32 inputs/outputs), and int8 as QDQ with the quantizer's own scales.

Opset 17: the newest opset torch's TorchScript exporter, onnxruntime, OpenVINO and onnx2tf all handle
well, and >= 13 as per-channel QuantizeLinear/DequantizeLinear need. The batch axis is dynamic.

int8: NNCF's fake-quantizers are stripped to torch's native ones and exported as QuantizeLinear /
DequantizeLinear pairs with the calibrated scales and zero points; ``export/qdq.py`` then rewrites the
graph into the patterns runtimes' int8 kernels match (int8 weight initializers, a quantized classifier
input, the classifier's bias added after its Gemm).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from edgeres.errors import EdgeresError, first_line
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
            raise EdgeresError(f"ONNX export failed: {first_line(exc)}") from None
    return path


def set_metadata(model, metadata: dict[str, str]) -> None:
    import onnx

    onnx.helper.set_model_props(model, metadata)  # replaces any existing props


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _finish(model, job: ExportJob) -> Path:
    import onnx

    set_metadata(model, job.metadata)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise EdgeresError(f"exported ONNX model is invalid: {first_line(exc)}") from None
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
        from edgeres.export import qdq
        from edgeres.quantize.engine import native

        example = torch.zeros(job.preprocessing.input_shape(1))
        tmp = job.out_path.with_suffix(".qdq-tmp.onnx")
        try:
            torch_to_onnx(native(job.torch_model, example), tmp, job.preprocessing.input_shape(1))
            model = onnx.load(str(tmp))
        finally:
            tmp.unlink(missing_ok=True)
        qdq.fold_weight_quantization(model)
        qdq.requantize_reshapes(model)
        qdq.split_gemm_biases(model)
    return _finish(model, job)

