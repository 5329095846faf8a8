"""The peer both benchmark scripts compare with: onnxruntime's own static int8 quantizer, in its fastest
setting on this CPU (QDQ, per-channel s8 weights, u8 activations, after ``quant_pre_process``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantize_static(fp32: Path, out: Path, calib: np.ndarray) -> Path:
    """Quantize the fp32 ONNX file ``fp32`` into ``out``, calibrating image by image on ``calib`` (NCHW)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    ort_quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out
