"""OpenVINO IR export (``.xml`` graph + ``.bin`` weights).

fp32 and fp16 convert the float ONNX model; fp16 stores the weights compressed to half precision. int8
converts the int8 QDQ ONNX model (see ``export/onnx.py``), so the scales are exactly the quantizer's;
OpenVINO turns each QDQ pair into a FakeQuantize and stores the int8 weights compressed.
Metadata goes into the model's ``rt_info`` under ``edgeres``.
"""

from __future__ import annotations

from pathlib import Path

from edgeres import extras
from edgeres.errors import EdgeresError, first_line
from edgeres.export.formats import ExportJob


def export(job: ExportJob) -> Path:
    extras.require("openvino", "OpenVINO export")
    import openvino as ov

    if job.precision == "int8":
        from edgeres.export import onnx as onnx_export

        source = job.out_path.with_suffix(".int8-tmp.onnx")
        onnx_export.export(ExportJob(precision="int8", out_path=source, preprocessing=job.preprocessing,
                                     torch_model=job.torch_model, float_onnx=job.float_onnx,
                                     calibration=job.calibration, metadata={}))
    else:
        source = job.float_onnx()
    try:
        model = ov.convert_model(str(source))
        for key, value in job.metadata.items():
            model.set_rt_info(value, ["edgeres", key])
        ov.save_model(model, str(job.out_path), compress_to_fp16=job.precision == "fp16")
    except Exception as exc:  # OpenVINO raises RuntimeError/OpConversionFailure with long texts
        job.out_path.unlink(missing_ok=True)
        job.out_path.with_suffix(".bin").unlink(missing_ok=True)
        raise EdgeresError(f"OpenVINO conversion failed: {first_line(exc)}") from None
    finally:
        if job.precision == "int8":
            source.unlink(missing_ok=True)
    return job.out_path


def read_metadata(path: Path) -> dict[str, str]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    if not model.has_rt_info(["edgeres"]):
        return {}
    return {key: value.astype(str) for key, value in model.get_rt_info()["edgeres"].items()}
