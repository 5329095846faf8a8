"""TFLite export: fp32, fp16 (float16 weights) and full-integer int8, NHWC, batch fixed at 1.

Path: the float ONNX model -> constants folded (onnx-graphsurgeon) -> onnx2tf, which rebuilds it as an
NHWC Keras graph (no transposes left at the input) -> TensorFlow's TFLite converter. onnx2tf is used
only for the graph rewrite (``disable_model_save``); the conversion is ours, so that only the file asked
for is built (onnx2tf itself always writes fp32, fp16 and five int8 variants) and so that the converter
lowers a plain ``tf.Module`` rather than the Keras model, whose serialization takes 40 s for resnet18.

The conversion runs in a worker subprocess (``python -m edgeres.export.tflite config.json``): TensorFlow's
C++ logging and onnx2tf's banners go to a log file instead of the user's terminal, a converter crash or
abort cannot take the calling process with it, and TensorFlow's memory and global settings (onnx2tf
sets ``CUDA_VISIBLE_DEVICES``) end with the worker. On failure the error names the ONNX node or TFLite
op the converter named, and the hint points at the kept log.

No downloads: onnx2tf fetches a sample-image file when the input is 4-D with 3 channels and a static
batch <= 20, and again to calibrate int8 itself. The ONNX input keeps a symbolic batch while onnx2tf
runs, and onnx2tf never quantizes, so neither fetch can happen; the batch is fixed at 1 when the Keras
graph is traced for the converter.

Batch 1: the single-stream edge case, and static shapes are what the Edge TPU compiler, NNAPI and GPU
delegates require. (A dynamic batch also converts and runs on LiteRT's XNNPACK, but buys throughput only.)

int8: weights per-channel int8, activations int8 (``TFLITE_BUILTINS_INT8``: an op without an int8
kernel fails the export instead of silently staying float), calibrated on ``job.calibration()``.
Option ``io``: ``int8`` (default) makes the input and output tensors int8, as integer-only accelerators
want; ``float`` keeps float32 tensors with quantize/dequantize ops inside. onnx2tf is told the graph
will be quantized so that it pads max-pooling with 0 rather than -FLT_MAX (which would wreck the
calibrated range); exact for ResNets, where max-pooling follows a ReLU.

Metadata: ``job.metadata`` goes into the flatbuffer's own ``Model.metadata`` list as one record named
``edgeres`` whose buffer is the dict as UTF-8 JSON (one record, so no key can clash with the records the
converter writes, such as ``min_runtime_version``); ``read_metadata`` returns the dict.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.export.formats import PRECISIONS, ExportJob

IO_TYPES = ("int8", "float")
METADATA_NAME = "edgeres"
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # so that the worker imports this very edgeres


def export(job: ExportJob) -> Path:
    """Write ``job.out_path`` (a ``.tflite`` file) for ``job.precision``; nothing is left there on failure."""
    io = job.options.get("io", "int8")
    if job.precision not in PRECISIONS:
        raise EdgeresError(f"TFLite cannot export precision {job.precision!r}",
                           hint=f"choose from {', '.join(PRECISIONS)}")
    if io not in IO_TYPES:
        raise EdgeresError(f"TFLite option io={io!r} is not one of {', '.join(IO_TYPES)}")
    prep = job.preprocessing
    out = Path(job.out_path)
    with tempfile.TemporaryDirectory(prefix="edgeres-tflite-") as tmp_name:
        tmp = Path(tmp_name)
        config = {"onnx": str(Path(job.float_onnx()).resolve()), "precision": job.precision, "io": io,
                  "input_shape": [1, prep.input_size, prep.input_size, prep.channels],
                  "metadata": job.metadata, "output": str(tmp / "model.tflite"), "error": str(tmp / "error.txt")}
        if job.precision == "int8":
            config["calibration"] = str(tmp / "calibration.npy")
            np.save(config["calibration"], _calibration_nhwc(job.calibration(), prep.input_shape(1)))
        (tmp / "config.json").write_text(json.dumps(config))
        _run_worker(tmp)
        partial = out.with_name(f".{out.name}.part")
        try:
            shutil.copyfile(tmp / "model.tflite", partial)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return out


def read_metadata(path: Path | str) -> dict[str, str]:
    """The metadata an edgeres export embedded in a ``.tflite`` file ({} if it has none)."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgeresError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgeresError(f"{path.name} is not a TFLite file (no TFL3 identifier)")
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME.encode():
                return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in struct/index/decoding code
        raise EdgeresError(f"{path.name} is a corrupt TFLite file ({type(exc).__name__} reading its metadata)") \
            from None
    return {}


def _calibration_nhwc(images: np.ndarray, nchw_shape: tuple[int, ...]) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != tuple(nchw_shape[1:]) or len(images) == 0:
        raise EdgeresError(f"int8 calibration needs N x {' x '.join(map(str, nchw_shape[1:]))} images, "
                           f"got an array of shape {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def _run_worker(tmp: Path) -> None:
    """Convert in a subprocess; its console output goes to a log that is kept only on failure."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
               PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(_PACKAGE_PARENT), os.environ.get("PYTHONPATH")])))
    log_path = tmp / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.run([sys.executable, "-m", "edgeres.export.tflite", str(tmp / "config.json")],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    if proc.returncode == 0 and (tmp / "model.tflite").is_file():
        return
    error_file = tmp / "error.txt"
    reason = error_file.read_text().strip() if error_file.is_file() else _reason_from_log(log_path, proc.returncode)
    kept = Path(tempfile.mkstemp(prefix="edgeres-tflite-", suffix=".log")[1])
    shutil.copyfile(log_path, kept)
    raise EdgeresError(f"TFLite export failed: {reason}", hint=f"the converter's full log is in {kept}")


def _reason_from_log(log_path: Path, returncode: int) -> str:
    """The last error line of a worker that died without writing its own message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))
    errors = [line.strip() for line in text.splitlines() if "error" in line.lower() and line.strip()]
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return f"the converter stopped ({how})" + (f": {errors[-1][:300]}" if errors else "")


# -- the worker: runs in its own process, may import TensorFlow --------------------------------------
def _prepared_onnx(path: str):
    """The float ONNX model as onnx2tf converts it best: constants folded (torch computes pads and
    shapes with small subgraphs that onnx2tf would otherwise lay out wrongly), every node named,
    and a symbolic batch axis (which keeps onnx2tf from downloading its sample images)."""
    import onnx
    import onnx_graphsurgeon as gs

    model = onnx.load(path)
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup()
    model = gs.export_onnx(graph)
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{i}"
    if len(model.graph.input) != 1:
        raise ValueError(f"expected one model input, found {len(model.graph.input)}")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch.ClearField("dim_value")
    batch.dim_param = "batch"
    return model


def _one_line(exc: BaseException) -> str:
    """The informative line of a converter exception (Keras wraps the real message in a preamble;
    MLIR diagnostics carry 'error:' lines naming the TFLite op)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception encountered when calling layer")]
    errors = [line for line in lines if "error:" in line]
    return ((errors or lines or [type(exc).__name__])[0])[:300]


class _ConversionFailed(Exception):
    """A conversion failure, already phrased for the user."""


def _convert(config: dict) -> bytes:
    precision = config["precision"]
    try:
        onnx_model = _prepared_onnx(config["onnx"])
    except Exception as exc:  # noqa: BLE001 - protobuf, onnx and onnx-graphsurgeon errors alike
        raise _ConversionFailed(f"cannot read the ONNX model: {type(exc).__name__}: {_one_line(exc)}") from None

    import onnx2tf
    import tensorflow as tf

    try:
        keras_model = onnx2tf.convert(onnx_graph=onnx_model, disable_model_save=True,
                                      output_folder_path=str(Path(config["output"]).parent / "onnx2tf"),
                                      not_use_onnxsim=True, not_use_opname_auto_generate=True,
                                      output_integer_quantized_tflite=precision == "int8", verbosity="error")
    except Exception as exc:  # noqa: BLE001 - onnx2tf raises whatever its op converters raise
        node = getattr(exc, "onnx_op_name", None)
        missing = getattr(exc, "name", None) or ""
        reason = (f"onnx2tf has no converter for op {missing.rsplit('.', 1)[1]}"
                  if isinstance(exc, ModuleNotFoundError) and missing.startswith("onnx2tf.ops.") else _one_line(exc))
        raise _ConversionFailed(f"onnx2tf cannot convert ONNX node {node}: {reason}" if node
                                else f"onnx2tf failed: {reason}") from None
    except SystemExit:  # onnx2tf prints some errors itself, then exits
        raise _ConversionFailed("onnx2tf rejected the model (its reason is in the log)") from None

    module = tf.Module()
    module.serve = tf.function(lambda x: {"logits": keras_model(x)},
                               input_signature=[tf.TensorSpec(config["input_shape"], tf.float32, "input")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        calibration = np.load(config["calibration"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        if config["io"] == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001 - ConverterError, or errors raised while calibrating
        raise _ConversionFailed(f"the TFLite converter failed: {_one_line(exc)}") from None


def _with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """The model with the ``edgeres`` metadata record added, rebuilt with the schema of the converter
    that wrote it (so that nothing it wrote is lost)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _worker_main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    try:
        data = _with_metadata(_convert(config), config["metadata"])
    except _ConversionFailed as exc:  # the parent turns this line into an EdgeresError
        Path(config["error"]).write_text(str(exc))
        return 1
    Path(config["output"]).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))
