"""TFLite export: fp32, fp16 (float16 weights) and int8 carrying the quantize artifact's quantization, NHWC,
batch fixed at 1.

Path: an ONNX model -> constants folded (onnx-graphsurgeon) -> onnx2tf, which rebuilds it as an NHWC Keras
graph (no transposes left at the input) -> TensorFlow's TFLite converter. onnx2tf is used only for the graph
rewrite (``disable_model_save``); the conversion is ours, so that only the file asked for is built (onnx2tf
itself always writes fp32, fp16 and five int8 variants) and so that the converter lowers a plain
``tf.Module`` rather than the Keras model, whose serialization takes 40 s for resnet18.

The conversion runs in a worker subprocess (``python -m edgeres.export.tflite config.json``): TensorFlow's
C++ logging and onnx2tf's banners go to a log file instead of the user's terminal, a converter crash or
abort cannot take the calling process with it, and TensorFlow's memory and global settings (onnx2tf
sets ``CUDA_VISIBLE_DEVICES``, the worker registers its own Q/DQ converters in onnx2tf) end with the
worker. On failure the error names the ONNX node or TFLite op the converter named, and the hint points
at the kept log.

No downloads: onnx2tf fetches a sample-image file when the input is 4-D with 3 channels and a static
batch <= 20, and again to calibrate int8 itself. The ONNX input keeps a symbolic batch while onnx2tf
runs, and onnx2tf never quantizes, so neither fetch can happen; the batch is fixed at 1 when the Keras
graph is traced for the converter.

Batch 1: the single-stream edge case, and static shapes are what the Edge TPU compiler, NNAPI and GPU
delegates require. (A dynamic batch also converts and runs on LiteRT's XNNPACK, but buys throughput only.)

int8 is the quantize artifact's model (``job.torch_model``, NNCF), not a quantization of its own: its
QDQ ONNX export (what the ONNX exporter starts from) is turned into a graph whose every scale and zero
point is the artifact's, and TF's converter lowers it as a quantization-aware-trained model:

- each weight Q/DQ pair becomes its dequantized values (int8 x scale, clipped to +-127: NNCF's weights are
  symmetric narrow-range, as TFLite's must be); in the traced graph it gets a per-channel FakeQuant of
  exactly that range, found by its values, so the file's int8 weights and scales are the artifact's;
- each activation Q/DQ pair becomes a FakeQuant with the pair's range (``_register_fake_quant_ops``);
- the classifier (Gemm after global pooling) becomes a 1x1 convolution: the converter transposes a
  fully-connected weight and cannot keep per-channel scales through that transpose;
- onnx2tf is told the graph will be quantized, so that it pads max-pooling with 0 rather than -FLT_MAX
  (no int8 value); exact for ResNets, where max-pooling follows a ReLU.

A tensor the artifact leaves in float stays float, so a quantized layer writing one runs in float on its
dequantized int8 input with its int8 weights as floats (TFLite has no int8 layer with a float output; the
ONNX file computes the same sums). The logits are such a tensor. ``io=float`` keeps them so (float32 input
and logits; nothing is calibrated). ``io=int8`` (default; integer-only accelerators want int8 in and out)
quantizes them with the range the int8 model's logits take on the calibration images
(``job.calibration()``), the one range not from the artifact; the file must then hold no float tensor
unless the artifact keeps layers in float.

Layers the artifact keeps in float (``quantize --max-drop``) stay float: the converter quantizes any
convolution whose input and output are quantized, so such a convolution is put back as DEQUANTIZE ->
float CONV_2D (the artifact's float weights and bias) -> QUANTIZE in the flatbuffer; a float classifier
takes in the global average pooling before it (a convolution over the whole map), which the converter
would otherwise round to its input's int8 step. ``io=int8`` is refused when the layer that reads the input
is kept in float (the input then has no int8 scale). After conversion every layer is checked against the
artifact: its int8 weights and scales (or those weights as floats, as above), or its float weights.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres import extras
from edgeres.errors import EdgeresError
from edgeres.export.formats import PRECISIONS, ExportJob

IO_TYPES = ("int8", "float")
UNCOMPILED = "model-uncompiled.tflite"  # beside an Edge TPU-compiled file: the int8 file it was compiled from
METADATA_NAME = "edgeres"
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # so that the worker imports this very edgeres


def export(job: ExportJob) -> Path:
    """Write ``job.out_path`` (a ``.tflite`` file) for ``job.precision``; nothing is left there on failure."""
    extras.require("tflite", "TFLite export")
    io = job.options.get("io", "int8")
    if job.precision not in PRECISIONS:
        raise EdgeresError(f"TFLite cannot export precision {job.precision!r}",
                           hint=f"choose from {', '.join(PRECISIONS)}")
    if io not in IO_TYPES:
        raise EdgeresError(f"TFLite option io={io!r} is not one of {', '.join(IO_TYPES)}")
    edgetpu = job.options.get("compile", "none") == "edgetpu"
    if edgetpu and (job.precision != "int8" or io != "int8"):
        raise EdgeresError(f"the Edge TPU runs full-integer int8 files only, not {job.precision} with io={io}",
                           hint="compile for it with --precision int8 --io int8")
    if edgetpu:
        from edgeres.export import edgetpu as compiler

        compiler.require()  # before the conversion's minutes
    prep = job.preprocessing
    out = Path(job.out_path)
    with tempfile.TemporaryDirectory(prefix="edgeres-tflite-") as tmp_name:
        tmp = Path(tmp_name)
        config = {"precision": job.precision, "io": io,
                  "input_shape": [1, prep.input_size, prep.input_size, prep.channels],
                  "metadata": job.metadata, "output": str(tmp / "model.tflite"), "error": str(tmp / "error.txt")}
        if job.precision == "int8":
            config["onnx"] = str(_int8_onnx(job, tmp / "int8.onnx"))
            if io == "int8":
                if not _input_quantized(config["onnx"]):
                    raise EdgeresError("TFLite io=int8 needs the model input's int8 scale, and the quantize "
                                       "artifact has none: it keeps the layer that reads the input in float",
                                       hint="export with --io float (float input, that layer in float), or "
                                            "quantize without keeping the first layer in float")
                config["calibration"] = str(tmp / "calibration.npy")  # for the logits' range
                np.save(config["calibration"], _calibration_nhwc(job.calibration(), prep.input_shape(1)))
        else:
            config["onnx"] = str(Path(job.float_onnx()).resolve())
        (tmp / "config.json").write_text(json.dumps(config))
        _run_worker(tmp)
        files = {out: tmp / "model.tflite"}
        if edgetpu:  # the compiled file is the artifact's; the file it came from is kept beside it, verified
            compiled, report = compiler.compile_file(tmp / "model.tflite", tmp)
            files = {out.with_name(UNCOMPILED): tmp / "model.tflite", out: compiled}
            job.report["edgetpu"] = report
        for target, source in files.items():
            partial = target.with_name(f".{target.name}.part")
            try:
                shutil.copyfile(source, partial)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    return out


def runnable_twin(path: Path) -> Path:
    """The file to run on a CPU for ``path``: itself, or for an Edge TPU-compiled file (whose
    ``edgetpu-custom-op`` runs only with the delegate) the int8 file it was compiled from."""
    twin = path.with_name(UNCOMPILED)
    return twin if twin != path and twin.is_file() else path


def _int8_onnx(job: ExportJob, path: Path) -> Path:
    """The quantize artifact's model as QDQ ONNX, its quantizers as NNCF placed and calibrated them."""
    import torch

    from edgeres.export.onnx import torch_to_onnx
    from edgeres.quantize.engine import native

    if job.torch_model is None:
        raise EdgeresError("TFLite int8 is exported from a quantize artifact's int8 model, and none was given",
                           hint="quantize the model first: `edgeres quantize MODEL --int8`")
    shape = job.preprocessing.input_shape(1)
    return torch_to_onnx(native(job.torch_model, torch.zeros(shape)), path, shape)


def _input_quantized(onnx_path: str) -> bool:
    import onnx

    graph = onnx.load(onnx_path).graph
    readers = [node for node in graph.node if graph.input[0].name in node.input]
    return bool(readers) and all(node.op_type == "QuantizeLinear" for node in readers)


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
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _one_line(exc: BaseException) -> str:
    """The informative line of a converter exception (Keras wraps the real message in a preamble;
    MLIR diagnostics carry 'error:' lines naming the TFLite op)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception encountered when calling layer")]
    errors = [line for line in lines if "error:" in line]
    return ((errors or lines or [type(exc).__name__])[0])[:300]


class _ConversionFailed(Exception):
    """A conversion failure, already phrased for the user."""


@dataclass
class _Int8Plan:
    """What the int8 file must hold, from the quantize artifact's QDQ graph (weights as OIHW)."""

    weights: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # int8: values, channel scales
    float_layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # float-kept: weight, bias
    input_quantized: bool = True
    integer_only: bool = False  # no float tensor may be left in the file


def _prepared_onnx(path: str, int8: bool = False):
    """The ONNX model as onnx2tf converts it best: constants folded (torch computes pads and shapes with
    small subgraphs that onnx2tf would otherwise lay out wrongly), every node named, and a symbolic batch
    axis (which keeps onnx2tf from downloading its sample images). For int8, also the plan: weight Q/DQ
    pairs folded into their dequantized values, the classifier as a 1x1 convolution."""
    import onnx
    import onnx_graphsurgeon as gs

    model = onnx.load(path)
    plan = None
    if int8:
        graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
        graph.fold_constants(should_exclude_node=lambda node: node.op in _QDQ).cleanup()
        plan = _fold_weight_quantizers(graph)
    else:
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
    return model, plan


def _fold_weight_quantizers(graph) -> _Int8Plan:
    """Replace each weight's Q/DQ pair by its dequantized values (clipped to +-127, NNCF's narrow range),
    turn a classifier Gemm after global pooling into a 1x1 Conv, and list what the file must hold."""
    import onnx_graphsurgeon as gs

    scales: dict[str, np.ndarray] = {}  # dequantized weight constant -> its per-output-channel scales
    for q in [n for n in graph.nodes if n.op == "QuantizeLinear" and isinstance(n.inputs[0], gs.Constant)]:
        users = q.outputs[0].outputs
        if len(users) != 1 or users[0].op != "DequantizeLinear":
            raise _ConversionFailed(f"weight quantizer {q.name} is not followed by one DequantizeLinear")
        dq, w = users[0], q.inputs[0].values.astype(np.float32)
        zero = np.asarray(q.inputs[2].values) if len(q.inputs) > 2 else np.zeros(1)
        axis = q.attrs.get("axis", 1) if np.size(q.inputs[1].values) > 1 else 0
        if np.any(zero != 0) or axis != 0:
            raise _ConversionFailed(f"weight quantizer {q.name} is not symmetric per output channel, "
                                    "as TFLite's int8 weights are")
        scale = np.broadcast_to(np.asarray(q.inputs[1].values, np.float32).reshape(-1), (w.shape[0],)).copy()
        step = scale.reshape(-1, *[1] * (w.ndim - 1))
        values = gs.Constant(f"{q.name}/dequantized", (np.clip(np.rint(w / step), -127, 127) * step + 0.0)
                             .astype(np.float32))
        scales[values.name] = scale
        for user in list(dq.outputs[0].outputs):
            user.inputs[user.inputs.index(dq.outputs[0])] = values
        q.outputs.clear()
        dq.outputs.clear()
    for gemm in [n for n in graph.nodes if n.op == "Gemm"]:
        _classifier_as_conv(graph, gemm, scales)
    graph.cleanup().toposort()

    plan = _Int8Plan(input_quantized=all(n.op == "QuantizeLinear" for n in graph.inputs[0].outputs))
    for node in graph.nodes:
        weight = node.inputs[1] if node.op in ("Conv", "Gemm", "MatMul") and len(node.inputs) > 1 else None
        if not isinstance(weight, gs.Constant):
            continue
        if node.op != "Conv":
            if weight.name in scales:
                raise _ConversionFailed(f"the int8 layer {node.name} ({node.op}) is not a convolution or a "
                                        "classifier after global pooling, which is all TFLite int8 export handles")
            continue
        if weight.name in scales:
            plan.weights.append((weight.values, scales[weight.name]))
        else:
            bias = node.inputs[2].values if len(node.inputs) > 2 else np.zeros(weight.shape[0], np.float32)
            plan.float_layers.append((weight.values.astype(np.float32), np.asarray(bias, np.float32)))
    return plan


def _classifier_as_conv(graph, gemm, scales: dict[str, np.ndarray]) -> None:
    """Flatten([N, C, 1, 1]) -> Gemm becomes Conv 1x1 -> Flatten (the same sums); a float-kept classifier
    also takes in the GlobalAveragePool before it."""
    import onnx_graphsurgeon as gs

    flatten = gemm.inputs[0].inputs[0] if gemm.inputs[0].inputs else None
    pooled = flatten.inputs[0] if flatten is not None and flatten.op == "Flatten" else None
    attrs = gemm.attrs
    if (pooled is None or pooled.shape is None or len(pooled.shape) != 4 or list(pooled.shape[2:]) != [1, 1]
            or not isinstance(gemm.inputs[1], gs.Constant) or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
        return
    weight = gemm.inputs[1]
    w = (weight.values if attrs.get("transB", 0) else weight.values.T)[:, :, None, None]
    pool = pooled.inputs[0] if pooled.inputs else None
    if weight.name in scales:
        kernel = gs.Constant(f"{weight.name}/as_conv", np.ascontiguousarray(w))
        scales[kernel.name] = scales[weight.name]
    elif (pool is not None and pool.op == "GlobalAveragePool" and pool.inputs[0].shape is not None
          and all(isinstance(d, int) for d in pool.inputs[0].shape[2:])):
        # A float classifier reads the pooled features unquantized; the converter would give the mean the
        # int8 scale of its input, so the mean is folded into the float layer: a convolution over the
        # whole map with the weights spread over it.
        height, width = pool.inputs[0].shape[2:]
        pooled, w = pool.inputs[0], np.tile(w / (height * width), (1, 1, height, width))
        kernel = gs.Constant(f"{weight.name}/as_conv", np.ascontiguousarray(w, np.float32))
    else:
        kernel = gs.Constant(f"{weight.name}/as_conv", np.ascontiguousarray(w))
    summed = gs.Variable(f"{gemm.name}/conv_output", dtype=np.float32)
    graph.nodes.append(gs.Node("Conv", f"{gemm.name}/as_conv", {"kernel_shape": list(kernel.shape[2:])},
                               [pooled, kernel, *gemm.inputs[2:3]], [summed]))
    graph.nodes.append(gs.Node("Flatten", f"{gemm.name}/flatten", {"axis": 1}, [summed], list(gemm.outputs)))
    gemm.outputs.clear()


def _register_fake_quant_ops() -> None:
    """Make onnx2tf turn each (activation) QuantizeLinear into a FakeQuantWithMinMaxVars of the same range
    and each DequantizeLinear into nothing: TF's converter takes int8 scales from FakeQuant ops."""
    import types

    import tensorflow as tf

    def alias(node, layers: dict, tensor) -> None:
        out = node.outputs[0]
        layers[out.name] = {"optype": node.op, "shape": out.shape, "dtype": np.float32, "tf_node": tensor,
                            "nhwc": layers[node.inputs[0].name].get("nhwc", False)}

    def quantize(*, graph_node, tf_layers_dict, **_):
        scale = np.asarray(graph_node.inputs[1].values, np.float64)
        zero = np.asarray(graph_node.inputs[2].values) if len(graph_node.inputs) > 2 else np.zeros((), np.uint8)
        if scale.size != 1:
            raise ValueError(f"activation quantizer {graph_node.name} is per-channel")
        limits = np.iinfo(zero.dtype)
        low, high = ((limit - int(zero)) * float(scale) for limit in (limits.min, limits.max))
        alias(graph_node, tf_layers_dict, tf.quantization.fake_quant_with_min_max_vars(
            tf_layers_dict[graph_node.inputs[0].name]["tf_node"], low, high, num_bits=8, narrow_range=False))

    def dequantize(*, graph_node, tf_layers_dict, **_):
        alias(graph_node, tf_layers_dict, tf_layers_dict[graph_node.inputs[0].name]["tf_node"])

    for op, make_node in (("QuantizeLinear", quantize), ("DequantizeLinear", dequantize)):
        module = types.ModuleType(f"onnx2tf.ops.{op}")
        module.make_node = make_node
        sys.modules[module.__name__] = module


def _with_weight_ranges(concrete, plan: _Int8Plan):
    """The traced function, frozen, with a per-channel FakeQuant (narrow range, +-127 x the artifact's
    scales) on each int8 layer's weight constant, found by its values."""
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    wanted = {_values_key(w): (w.transpose(2, 3, 1, 0), s) for w, s in plan.weights}  # OIHW -> HWIO
    nodes = {node.name: node for node in graph_def.node}
    found = 0
    for conv in [node for node in graph_def.node if node.op == "Conv2D"]:
        const = nodes.get(conv.input[1])
        if const is None or const.op != "Const":
            continue
        values = tensor_util.MakeNdarray(const.attr["value"].tensor)
        hwio, scale = wanted.get(_values_key(values), (None, None))
        if hwio is None or not np.array_equal(values, hwio):
            continue
        name = f"{const.name}/edgeres_weight_range"
        for suffix, limit in (("min", -127 * scale), ("max", 127 * scale)):
            bound = graph_def.node.add(name=f"{name}/{suffix}", op="Const")
            bound.attr["dtype"].type = tf.float32.as_datatype_enum
            bound.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(limit.astype(np.float32)))
        fake_quant = graph_def.node.add(name=name, op="FakeQuantWithMinMaxVarsPerChannel",
                                        input=[const.name, f"{name}/min", f"{name}/max"])
        fake_quant.attr["num_bits"].i = 8
        fake_quant.attr["narrow_range"].b = True
        conv.input[1] = name
        found += 1
    if found != len(plan.weights):
        raise _ConversionFailed(f"found {found} of the {len(plan.weights)} int8 layers' weights in the "
                                "TensorFlow graph")
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    return wrapped.prune(feeds=[wrapped.graph.get_tensor_by_name(frozen.inputs[0].name)],
                         fetches={"logits": wrapped.graph.get_tensor_by_name(frozen.outputs[0].name)})


def _values_key(values: np.ndarray) -> bytes:
    """The same for a weight in any layout (-0.0 counted as 0.0)."""
    return (np.sort(values.ravel()).astype(np.float32) + np.float32(0)).tobytes()


def _convert(config: dict) -> tuple[bytes, _Int8Plan | None]:
    precision, io = config["precision"], config["io"]
    try:
        onnx_model, plan = _prepared_onnx(config["onnx"], int8=precision == "int8")
    except _ConversionFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf, onnx and onnx-graphsurgeon errors alike
        raise _ConversionFailed(f"cannot read the ONNX model: {type(exc).__name__}: {_one_line(exc)}") from None

    import onnx2tf
    import tensorflow as tf

    if plan is not None:
        _register_fake_quant_ops()
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

    logits_range = None
    if plan is not None and io == "int8":
        calibration = np.load(config["calibration"])
        logits = np.concatenate([keras_model(calibration[i:i + 64]).numpy() for i in range(0, len(calibration), 64)])
        logits_range = (min(float(logits.min()), 0.0), max(float(logits.max()), 0.0))

    def serve(x):
        logits = keras_model(x)
        if logits_range is not None:
            logits = tf.quantization.fake_quant_with_min_max_vars(logits, *logits_range, num_bits=8)
        return {"logits": logits}

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec(config["input_shape"], tf.float32, "input")])
    concrete = module.serve.get_concrete_function()
    if plan is None:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_with_weight_ranges(concrete, plan)])
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":  # quantization-aware-training conversion: every range from a FakeQuant op
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if io == "int8":
            # TFLITE_BUILTINS_INT8 alone would make TF 2.21 ask for a representative dataset (it checks before
            # looking for FakeQuant ops); _check_int8 checks instead that no float tensor is left
            plan.integer_only = not plan.float_layers
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return converter.convert(), plan
    except Exception as exc:  # noqa: BLE001 - ConverterError and the like
        raise _ConversionFailed(f"the TFLite converter failed: {_one_line(exc)}") from None


def _finish(model_bytes: bytes, metadata: dict[str, str], plan: _Int8Plan | None) -> bytes:
    """The converted model with float-kept layers put back in float and checked (int8), and with the
    ``edgeres`` metadata record added; rebuilt with the schema of the converter that wrote it (so that
    nothing it wrote is lost)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    if plan is not None:
        _restore_float_layers(model, plan)
        _check_int8(model, plan)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _convolutions(model) -> list:
    """The CONV_2D operators of the main subgraph, with their weight tensor."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model.subgraphs[0]
    return [(op, graph.tensors[op.inputs[1]]) for op in graph.operators
            if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                   model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D]


def _int8_weight(model, tensor) -> tuple[np.ndarray, np.ndarray]:
    """An int8 weight tensor's values (OHWI) and per-output-channel scales."""
    q = model.buffers[tensor.buffer].data.view(np.int8).reshape(tensor.shape)
    return q, np.asarray(tensor.quantization.scale, np.float32)


def _float_weight(model, tensor) -> np.ndarray:
    return model.buffers[tensor.buffer].data.view(np.float32).reshape(tensor.shape)


def _restore_float_layers(model, plan: _Int8Plan) -> None:
    """Put each float-kept convolution that the converter quantized back in float: DEQUANTIZE -> CONV_2D
    with the artifact's float weight and bias -> QUANTIZE. It is found by its int8 weight, which is within
    half a step of the float one."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model.subgraphs[0]
    wanted = [(w.transpose(0, 2, 3, 1), b) for w, b in plan.float_layers]  # OIHW -> OHWI
    for op, weight in _convolutions(model):
        if weight.type != schema.TensorType.INT8 or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        q, scale = _int8_weight(model, weight)
        step = scale.reshape(-1, 1, 1, 1)
        match = next((i for i, (w, _) in enumerate(wanted)
                      if w.shape == q.shape and np.all(np.abs(q * step - w) <= 0.501 * step)), None)
        if match is None:
            continue
        w, b = wanted.pop(match)
        for index, values in ((op.inputs[1], w), (op.inputs[2], b)):
            tensor = graph.tensors[index]
            tensor.type, tensor.quantization = schema.TensorType.FLOAT32, None
            model.buffers[tensor.buffer].data = np.frombuffer(np.ascontiguousarray(values, "<f4").tobytes(), np.uint8)
        position = graph.operators.index(op)
        if graph.tensors[op.outputs[0]].type == schema.TensorType.INT8:
            quantized, op.outputs[0] = op.outputs[0], _float_twin(model, op.outputs[0])
            graph.operators.insert(position + 1, _operator(model, schema.BuiltinOperator.QUANTIZE, 1,
                                                           op.outputs[0], quantized))
        if graph.tensors[op.inputs[0]].type == schema.TensorType.INT8:
            quantized, op.inputs[0] = op.inputs[0], _float_twin(model, op.inputs[0])
            graph.operators.insert(position, _operator(model, schema.BuiltinOperator.DEQUANTIZE, 2,
                                                       quantized, op.inputs[0]))


def _float_twin(model, index: int) -> int:
    """A new float32 tensor shaped like tensor ``index``; returns its index."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph, source = model.subgraphs[0], model.subgraphs[0].tensors[index]
    tensor = schema.TensorT()
    tensor.shape, tensor.shapeSignature = source.shape, source.shapeSignature
    tensor.type, tensor.name = schema.TensorType.FLOAT32, source.name + b"/float"
    model.buffers.append(schema.BufferT())
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(model, builtin: int, version: int, source: int, target: int):
    from tensorflow.lite.python import schema_py_generated as schema

    codes = model.operatorCodes
    index = next((i for i, c in enumerate(codes) if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin), None)
    if index is None:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = version
        codes.append(code)
        index = len(codes) - 1
    op = schema.OperatorT()
    op.opcodeIndex = index
    op.inputs, op.outputs = np.array([source], np.int32), np.array([target], np.int32)
    return op


def _check_int8(model, plan: _Int8Plan) -> None:
    """Every int8 layer of the artifact holds its int8 weights and scales (or, with io=float, the
    classifier those weights as floats); every float-kept layer is float; no other layer is int8."""
    from tensorflow.lite.python import schema_py_generated as schema

    int8 = [(w.transpose(0, 2, 3, 1), s) for w, s in plan.weights]
    floats = [w.transpose(0, 2, 3, 1) for w, _ in plan.float_layers]
    stray = 0
    for _, tensor in _convolutions(model):
        if tensor.type == schema.TensorType.INT8:
            q, scale = _int8_weight(model, tensor)
            match = next((i for i, (w, s) in enumerate(int8) if w.shape == q.shape and np.allclose(scale, s, rtol=1e-6)
                          and np.array_equal(q, np.rint(w / s.reshape(-1, 1, 1, 1)))), None)
        else:
            values = _float_weight(model, tensor)
            match = next((i for i, (w, _) in enumerate(int8) if np.array_equal(values, w)), None)
            if match is None:
                match = next((i for i, w in enumerate(floats) if np.array_equal(values, w)), None)
                if match is not None:
                    floats.pop(match)
                    continue
        if match is None:
            stray += 1
        else:
            int8.pop(match)
    if int8 or floats or stray:
        raise _ConversionFailed(f"the converted file does not hold the quantize artifact's layers: {len(int8)} of its "
                                f"{len(plan.weights)} int8 layers lack its weights and scales, {len(floats)} of its "
                                f"{len(plan.float_layers)} float layers are not float, {stray} layers are unknown")
    left = [t.name.decode() for t in model.subgraphs[0].tensors if t.type == schema.TensorType.FLOAT32]
    if plan.integer_only and left:
        raise _ConversionFailed(f"{len(left)} tensors of the int8 file stayed float, e.g. {left[0]}")


def _worker_main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    try:
        model_bytes, plan = _convert(config)
        data = _finish(model_bytes, config["metadata"], plan)
    except _ConversionFailed as exc:  # the parent turns this line into an EdgeresError
        Path(config["error"]).write_text(str(exc))
        return 1
    Path(config["output"]).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))
