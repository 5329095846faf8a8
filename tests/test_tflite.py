"""TFLite export and runtime on real checkpoints: the resnet20 the session fixture trained on Fashion-MNIST,
exported to fp32 and fp16 from its float ONNX, and to int8 (both io modes) from quantize artifacts of it
(PTQ, QAT, and one that keeps layers in float), each file run in its runtime and compared with the torch
int8 model and with the ONNX and OpenVINO files of the same artifact."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from edgeres import data
from edgeres.errors import EdgeresError
from edgeres.export import tflite
from edgeres.export.formats import ExportJob
from edgeres.preprocessing import Preprocessing
from edgeres.runtimes import RuntimeUnavailable, open_session
from edgeres.workspace import Artifact, Workspace

pytestmark = pytest.mark.slow

PREP = Preprocessing(28, 1, (0.286,), (0.353,))
METADATA = {"edgeres.preprocessing": '{"input_size": 28, "channels": 1}', "edgeres.classes": '["T-shirt/top"]',
            "edgeres.parent": "train-resnet20-x", "edgeres.version": "0.1.0", "note": "ünïcode, \"quotes\""}
# kept in float by the budgeted artifact: a conv reading a quantized tensor, one whose output is quantized
# for the residual add, and the classifier (whose output is the quantized logits with io=int8)
FLOAT_LAYERS = ["layer1.0.conv2", "layer2.1.conv1", "linear"]


@dataclass
class Int8Models:
    ws: Workspace
    ptq: Artifact
    qat: Artifact
    budget: Artifact  # keeps FLOAT_LAYERS in float
    x: np.ndarray  # 500 test images, NCHW
    exports: dict[str, Artifact]  # "ptq-onnx", "ptq-tflite", "ptq-tflite-float-io", the same for qat


def _quantize_artifact(ws: Workspace, like: Artifact, model, method: str, float_layers: list[str]) -> Artifact:
    """A quantize artifact holding ``model``, recorded as ``quantize`` records one."""
    from edgeres.quantize import engine

    fixed = {"id", "kind", "model", "dataset", "parent", "created", "command", "config", "metrics"}
    fields = {k: v for k, v in like.manifest.items() if k not in fixed}
    with ws.create("quantize", model=like.manifest["model"], dataset=like.manifest["dataset"],
                   parent=ws.resolve(like.manifest["parent"]), config={},
                   **(fields | {"method": method, "float_layers": float_layers})) as art:
        engine.save(model, art.dir)
    assert art.artifact is not None
    return art.artifact


@pytest.fixture(scope="module")
def int8(trained_workspace, tmp_path_factory) -> Int8Models:
    """A workspace of its own (so that no other test exports these artifacts) with the fixture's resnet20
    and three quantize artifacts of it: PTQ as ``quantize`` makes it; that model trained one QAT epoch on
    256 images (by hand: ``quantize --qat`` keeps its best validation epoch, and at this scale that was the
    PTQ one in each of four tries); and a PTQ model keeping FLOAT_LAYERS in float, as ``--max-drop`` would.
    PTQ and QAT are exported by ``edgeres export`` to ONNX int8 and TFLite int8 (both io modes)."""
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.quantize import engine
    from edgeres.quantize.fold import fold_batchnorm
    from edgeres.quantize.step import QuantizeRequest, load_quantized, run_quantize
    from edgeres.train import TrainConfig, fit, load_fp32

    root = tmp_path_factory.mktemp("int8")
    train = Workspace(trained_workspace).latest("train", model="resnet20")
    shutil.copytree(train.path, root / train.path.name)
    ws = Workspace(root)
    ptq = run_quantize(QuantizeRequest(model=train.path.name, eval_limit=200, val_limit=200), ws)
    model = load_quantized(ptq)
    fit(model, data.load_split("fashion-mnist", "train", PREP, limit=256), TrainConfig(epochs=1, lr=0.002), None,
        "QAT")
    qat = _quantize_artifact(ws, ptq, model.to(memory_format=torch.contiguous_format).eval(), "qat", [])
    calibration = data.as_tensors(data.load_split("fashion-mnist", "train", PREP, limit=300))[0]
    kept = engine.ptq(fold_batchnorm(load_fp32(ws.resolve(train.path.name))), calibration,
                      float_layers=FLOAT_LAYERS)
    budget = _quantize_artifact(ws, ptq, kept, "ptq", FLOAT_LAYERS)
    exports = {}
    for name, source in (("ptq", ptq), ("qat", qat)):
        for key, target, options in (("onnx", "onnx", {}), ("tflite", "tflite", {"io": "int8"}),
                                     ("tflite-float-io", "tflite", {"io": "float"})):
            (exports[f"{name}-{key}"],) = run_export(ExportRequest(
                targets=[target], precisions=["int8"], model=source.id, **options, verify_limit=300), ws)
    x = data.as_tensors(data.load_split("fashion-mnist", "test", PREP, limit=500))[0].numpy()
    return Int8Models(ws, ptq, qat, budget, x, exports)


def _file(artifact: Artifact) -> Path:
    return artifact.path / artifact.manifest["file"]


@dataclass
class Exported:
    onnx: Path
    files: dict[str, Path]
    x: np.ndarray  # 300 test images, NCHW
    reference: np.ndarray  # onnxruntime logits of the float model on x


def _job(precision: str, out: Path, onnx_path: Path, calibration, io: str = "int8", model=None) -> ExportJob:
    return ExportJob(precision=precision, out_path=out, preprocessing=PREP, torch_model=model,
                     float_onnx=lambda: onnx_path, calibration=lambda: calibration, metadata=METADATA,
                     options={"io": io})


@pytest.fixture(scope="module")
def exported(trained_workspace, int8, tmp_path_factory) -> Exported:
    from edgeres.train import load_fp32

    tmp = tmp_path_factory.mktemp("tflite")
    model = load_fp32(Workspace(trained_workspace).latest("train", model="resnet20"))
    onnx_path = tmp / "float.onnx"
    torch.onnx.export(model.eval(), torch.zeros(PREP.input_shape(1)), str(onnx_path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    x = data.as_tensors(data.load_split("fashion-mnist", "test", PREP, limit=300))[0].numpy()
    files = {precision: tflite.export(_job(precision, tmp / f"{precision}.tflite", onnx_path, None))
             for precision in ("fp32", "fp16")}
    files["int8"] = _file(int8.exports["ptq-tflite"])
    files["int8-float-io"] = _file(int8.exports["ptq-tflite-float-io"])
    reference = open_session(onnx_path, threads=2).run(x)
    return Exported(onnx_path, files, x, reference)


def test_files_are_nhwc_batch_1_with_the_requested_io_types(exported):
    expected_input = {"fp32": "float32", "fp16": "float32", "int8": "int8", "int8-float-io": "float32"}
    for name, path in exported.files.items():
        info = open_session(path, threads=2).info()
        assert info["input_shape"] == [1, 28, 28, 1], name
        assert info["input_dtype"] == expected_input[name], name
        assert info["runtime"] == "tflite" and info["batch"] == 1


def test_fp32_and_fp16_match_onnxruntime(exported):
    x, ref = exported.x[:50], exported.reference[:50]
    fp32 = open_session(exported.files["fp32"], threads=2).run(x)
    fp16 = open_session(exported.files["fp16"], threads=2).run(x)
    assert fp32.shape == ref.shape and fp32.dtype == np.float32
    assert np.abs(fp32 - ref).max() < 1e-3
    assert np.abs(fp16 - ref).max() < 0.05 * np.abs(ref).max()
    assert (fp16.argmax(1) == ref.argmax(1)).mean() >= 0.98


def test_int8_files_are_small(exported):
    for name in ("int8", "int8-float-io"):
        ratio = exported.files[name].stat().st_size / exported.files["fp32"].stat().st_size
        assert ratio <= 0.30, f"{name} is {ratio:.0%} of fp32"


# -- int8 is the quantize artifact ------------------------------------------------------------------
def _onnx_quantization(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], set[tuple[float, int]]]:
    """The ONNX int8 file's weights (int8 values, OIHW or [out, in], and per-channel scales) and its
    activation quantizers as TFLite int8 (scale, zero point) pairs."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    weights, activations = [], set()
    for node in graph.node:  # in order: torch shares constants through Identity nodes
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
        elif node.op_type == "DequantizeLinear" and node.input[0] in consts:
            weights.append((consts[node.input[0]], consts[node.input[1]]))
        elif node.op_type == "QuantizeLinear":
            scale, zero = consts[node.input[1]], consts[node.input[2]]
            activations.add((float(scale), int(zero) - (128 if zero.dtype == np.uint8 else 0)))
    return weights, activations


def _tflite_tensors(path: Path) -> tuple[list[tuple[np.ndarray, dict]], list[dict], int]:
    """The convolutions' weights (values, OHWI, with their tensor details), every other int8 tensor (the
    activations) and the output's index, read without a delegate so that every tensor is there."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kernels = [int(op["inputs"][1]) for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    activations = [t for i, t in tensors.items() if i not in kernels and t["dtype"] == np.int8
                   and len(t["quantization_parameters"]["scales"]) == 1]
    return ([(interpreter.get_tensor(i), tensors[i]) for i in kernels], activations,
            interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("name", ["ptq", "qat"])
def test_int8_holds_the_quantize_artifacts_weights_and_scales(int8, name):
    """Every int8 weight and scale of the ONNX int8 file (the quantizer's) is in the TFLite file, and every
    int8 activation of the TFLite file has one of its activation scales and zero points (the logits of an
    io=int8 file aside: the artifact leaves them in float). The QAT model's weights are not the PTQ ones."""
    onnx_weights, onnx_activations = _onnx_quantization(_file(int8.exports[f"{name}-onnx"]))
    for key in ("tflite", "tflite-float-io"):
        export = int8.exports[f"{name}-{key}"]
        assert export.manifest["parent"] == getattr(int8, name).id
        assert tflite.read_metadata(_file(export))["edgeres.parent"] == getattr(int8, name).id
        weights, activations, output = _tflite_tensors(_file(export))
        int8_weights = [(q, t["quantization_parameters"]["scales"]) for q, t in weights if t["dtype"] == np.int8]
        float_weights = [q for q, t in weights if t["dtype"] == np.float32]
        assert len(int8_weights) + len(float_weights) == len(onnx_weights) == 20
        assert len(float_weights) == (1 if key == "tflite-float-io" else 0)  # the classifier: float logits
        for q, scale in onnx_weights:
            q = np.maximum(q.reshape(*q.shape, *[1] * (4 - q.ndim)).transpose(0, 2, 3, 1), -127)  # NNCF clips at -127
            found = [w for w, s in int8_weights if w.shape == q.shape and np.array_equal(w, q)
                     and np.allclose(s, scale, rtol=1e-6)]
            found += [w for w in float_weights if w.shape == q.shape and np.allclose(w, q * scale.reshape(-1, 1, 1, 1),
                                                                                  rtol=1e-6, atol=0)]
            assert len(found) == 1
        assert len(activations) >= 30  # every conv and add output, the input, the pooled features
        pairs = {t["index"]: (t["quantization_parameters"]["scales"][0], t["quantization_parameters"]["zero_points"][0])
                 for t in activations}
        for tensor in activations:
            scale, zero = pairs[tensor["index"]]
            if (scale, zero) != pairs.get(output):  # the logits (io=int8), before and after their reshape
                assert any(np.isclose(scale, s, rtol=1e-6) and zero == z for s, z in onnx_activations), tensor["name"]
    if name == "qat":
        ptq_weights, _ = _onnx_quantization(_file(int8.exports["ptq-onnx"]))
        changed = [not (np.array_equal(a, b) and np.array_equal(sa, sb))
                   for (a, sa), (b, sb) in zip(ptq_weights, onnx_weights)]
        assert sum(changed) >= 10, "QAT left the PTQ weights as they were"


def _agreement(logits: np.ndarray, reference: np.ndarray, images: np.ndarray | None = None) -> float:
    agree = logits.argmax(1) == reference.argmax(1)
    return float(agree[images].mean() if images is not None else agree.mean())


@pytest.mark.parametrize("name", ["ptq", "qat"])
def test_int8_agrees_with_the_torch_int8_model_as_well_as_onnx(int8, name):
    """On the same 500 images. The io=float file computes what the ONNX file does (int8 layers, float
    logits), with TFLite's own fixed-point requantization: agreement within two images of the ONNX file's,
    logits as close to torch. The io=int8 file also rounds the logits to one int8 step, which decides images
    whose top-2 logits are closer than that: it is held to the ONNX file's agreement, within two images, on
    the images it can resolve (top-2 margin over two steps)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeres.quantize.sensitivity import logits_of
    from edgeres.quantize.step import load_quantized

    reference = logits_of(load_quantized(getattr(int8, name)), torch.from_numpy(int8.x))
    run = {key: open_session(_file(int8.exports[f"{name}-{key}"]), threads=2).run_batched(int8.x)
           for key in ("onnx", "tflite", "tflite-float-io")}
    onnx, float_io, int8_io = (_agreement(run[k], reference) for k in ("onnx", "tflite-float-io", "tflite"))
    two_images = 2 / len(reference)  # rounding differs between the runtimes: a near-tie or two may flip
    assert float_io >= max(onnx - two_images, 0.97), f"TFLite (io=float) {float_io:.2%} vs ONNX {onnx:.2%}"
    assert np.abs(run["tflite-float-io"] - reference).mean() <= 1.25 * np.abs(run["onnx"] - reference).mean()
    step = Interpreter(str(_file(int8.exports[f"{name}-tflite"]))).get_output_details()[0]["quantization"][0]
    top2 = np.sort(reference, axis=1)[:, -2:]
    resolvable = top2[:, 1] - top2[:, 0] > 2 * step
    assert resolvable.mean() >= 0.9 and int8_io >= 0.97
    assert (_agreement(run["tflite"], reference, resolvable)
            >= _agreement(run["onnx"], reference, resolvable) - 2 / resolvable.sum())
    for key in ("onnx", "tflite", "tflite-float-io"):  # what `export` verified, on its own 300 images
        verified = int8.exports[f"{name}-{key}"].manifest["metrics"]["verify"]
        assert verified["reference"] == "torch int8" and verified["threshold"] == 97.0 and verified["passed"]


def test_layers_kept_in_float_are_float_in_every_format(int8):
    """The budgeted artifact exported to all three targets (TFLite in both io modes), each verified against
    the torch int8 model: the float-kept layers have float weights and read a float input in each file,
    the other layers int8 weights."""
    import onnx
    import openvino as ov

    from edgeres.export.step import ExportRequest, run_export
    from edgeres.quantize.step import load_quantized

    exports = run_export(ExportRequest(targets=["all"], precisions=["int8"], model=int8.budget.id,
                                       verify_limit=300), int8.ws)
    exports += run_export(ExportRequest(targets=["tflite"], precisions=["int8"], model=int8.budget.id,
                                        io="float", verify_limit=300), int8.ws)
    assert [e.manifest["format"] for e in exports] == ["onnx", "openvino", "tflite", "tflite"]
    assert all(e.manifest["metrics"]["verify"]["reference"] == "torch int8" for e in exports)
    graph = onnx.load(str(_file(exports[0]))).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    layers = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    kept_nodes = {node.name for node in layers if node.input[1] in {f"{layer}.weight" for layer in FLOAT_LAYERS}}
    assert len(layers) == 20 and len(kept_nodes) == len(FLOAT_LAYERS)
    for node in layers:
        kept = node.name in kept_nodes
        assert (producers.get(node.input[1]) != "DequantizeLinear") == kept, node.name
        assert (producers.get(node.input[0]) != "DequantizeLinear") == kept, node.name

    layers = [op for op in ov.Core().read_model(str(_file(exports[1]))).get_ordered_ops()
              if op.get_type_name() in ("Convolution", "MatMul")]  # named after the ONNX nodes
    assert len(layers) == 20
    for op in layers:
        kept = any(op.get_friendly_name().startswith(f"{name}/") for name in kept_nodes)
        assert (op.input_value(1).get_node().get_type_name() == "Constant") == kept, op.get_friendly_name()
        assert (op.input_value(0).get_node().get_type_name() != "FakeQuantize") == kept, op.get_friendly_name()

    model = load_quantized(int8.budget)
    kept_weights = [model.get_submodule(layer).weight.detach().numpy() for layer in FLOAT_LAYERS]
    for export in exports[2:]:
        weights, _, _ = _tflite_tensors(_file(export))
        assert len(weights) == 20
        for layer, w in zip(FLOAT_LAYERS, kept_weights):
            if w.ndim == 2:  # the classifier: a convolution over the pooled map, its weights spread over it
                found = [q for q, t in weights if t["dtype"] == np.float32 and q.shape[0] == w.shape[0]
                         and np.allclose(q.sum(axis=(1, 2)), w, atol=1e-6)]
            else:
                found = [q for q, t in weights
                         if t["dtype"] == np.float32 and np.array_equal(q, w.transpose(0, 2, 3, 1))]
            assert len(found) == 1, f"{layer} is not float in {export.manifest['config']['options']}"
        assert sum(t["dtype"] == np.int8 for _, t in weights) >= 20 - len(FLOAT_LAYERS) - 2


def test_int8_io_is_refused_when_the_input_layer_is_kept_in_float(int8, tmp_path):
    from edgeres.quantize import engine
    from edgeres.quantize.fold import fold_batchnorm
    from edgeres.train import load_fp32

    train = int8.ws.resolve(int8.ptq.manifest["parent"])
    calibration = data.as_tensors(data.load_split("fashion-mnist", "train", PREP, limit=64))[0]
    model = engine.ptq(fold_batchnorm(load_fp32(train)), calibration, float_layers=["conv1"])
    out = tmp_path / "model.tflite"
    with pytest.raises(EdgeresError, match="io=int8 needs the model input's int8 scale") as refused:
        tflite.export(_job("int8", out, Path("unused.onnx"), calibration.numpy(), model=model))
    assert "--io float" in refused.value.hint and not out.exists()


def test_int8_needs_the_quantized_model(tmp_path):
    with pytest.raises(EdgeresError, match="quantize artifact's int8 model"):
        tflite.export(_job("int8", tmp_path / "model.tflite", Path("unused.onnx"), None))


# -- files, metadata and failures -------------------------------------------------------------------
def test_metadata_round_trips(exported):
    for name in ("fp32", "fp16"):
        assert tflite.read_metadata(exported.files[name]) == METADATA


def test_corrupt_files_are_refused_clearly(exported, tmp_path):
    whole = exported.files["int8"].read_bytes()
    for name, content in {"truncated": whole[:len(whole) // 2], "header only": whole[:64], "empty": b"",
                          "not tflite": b"\x00" * 4096}.items():
        path = tmp_path / "bad.tflite"
        path.write_bytes(content)
        with pytest.raises(RuntimeUnavailable, match="TFLite cannot load bad.tflite"):
            open_session(path)
        with pytest.raises(EdgeresError):
            tflite.read_metadata(path)


def test_missing_delegate_is_a_clear_error(exported):
    with pytest.raises(RuntimeUnavailable, match="cannot load the TFLite delegate libedgetpu"):
        open_session(exported.files["int8"], delegate="libedgetpu-missing.so.1")


def test_failed_conversions_leave_nothing_and_name_the_cause(tmp_path, monkeypatch):
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the converter's log of a failure is kept

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an ONNX model" * 40)
    node = helper.make_node("Frobnicate", ["input"], ["logits"], name="mystery", domain="example.custom")
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 1, 28, 28]) for name in ("input", "logits")]
    graph = helper.make_graph([node], "g", io[:1], io[1:])
    unsupported = tmp_path / "unsupported.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("example.custom", 1)]), str(unsupported))
    out_dir = tmp_path / "artifact"
    out_dir.mkdir()
    for source, message in ((garbage, "cannot read the ONNX model"), (unsupported, "node mystery.*Frobnicate")):
        with pytest.raises(EdgeresError, match=message) as failure:
            tflite.export(_job("fp32", out_dir / "model.tflite", source, None))
        assert list(out_dir.iterdir()) == []
        assert Path(failure.value.hint.rsplit(" ", 1)[1]).is_file()


def test_bad_options_and_calibration_are_refused_before_converting(int8, tmp_path):
    from edgeres.quantize.step import load_quantized

    out, model = tmp_path / "model.tflite", load_quantized(int8.ptq)
    calibration = data.as_tensors(data.load_split("fashion-mnist", "train", PREP, limit=8))[0].numpy()
    with pytest.raises(EdgeresError, match="io='uint8'"):
        tflite.export(_job("int8", out, Path("unused.onnx"), calibration, io="uint8", model=model))
    with pytest.raises(EdgeresError, match="calibration needs N x 1 x 28 x 28"):
        tflite.export(_job("int8", out, Path("unused.onnx"), calibration[:, :, :20], model=model))
    assert not out.exists()


def test_rgb_model_with_a_static_batch_converts_without_any_download(tmp_path, monkeypatch):
    """onnx2tf fetches sample images for 3-channel inputs with a static batch <= 20; with every proxy
    pointing at a closed port, any fetch would fail the export."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    onnx_path = tmp_path / "rgb.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 16, 16), str(onnx_path), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)  # batch fixed at 1
    prep = Preprocessing(16, 3, (0.5,), (0.25,))
    job = ExportJob(precision="fp32", out_path=tmp_path / "rgb.tflite", preprocessing=prep, torch_model=None,
                    float_onnx=lambda: onnx_path, calibration=lambda: None, metadata={})
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    logits = open_session(tflite.export(job)).run(x)
    np.testing.assert_allclose(logits, model(torch.from_numpy(x)).detach().numpy(), atol=1e-4)


# Coral's edgetpu_compiler comes only from Coral's own apt repository, which this project's machines cannot
# reach: this stand-in keeps its command line and outputs (``<stem>_edgetpu.tflite`` and ``.log`` in
# --out_dir) and, as the real compiler's files do, holds the mapped operators as ``edgetpu-custom-op``
# (here each CONV_2D, renamed; the file then runs only where that operator exists, as a compiled one does).
STAND_IN_COMPILER = '''#!{python}
import sys, pathlib, flatbuffers
from ai_edge_litert import schema_py_generated as s
args = sys.argv[1:]
if args == ["--version"]:
    print("Edge TPU Compiler version 0.0.stand-in"); sys.exit(0)
out, src = pathlib.Path(args[args.index("--out_dir") + 1]), pathlib.Path(args[-1])
model = s.ModelT.InitFromObj(s.Model.GetRootAs(src.read_bytes(), 0))
for code in model.operatorCodes:
    if {rename} and max(code.builtinCode, code.deprecatedBuiltinCode) == s.BuiltinOperator.CONV_2D:
        code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
        code.customCode = "edgetpu-custom-op"
builder = flatbuffers.Builder(0)
builder.Finish(model.Pack(builder), b"TFL3")
(out / (src.stem + "_edgetpu.tflite")).write_bytes(builder.Output())
(out / (src.stem + "_edgetpu.log")).write_text("Edge TPU Compiler version 0.0.stand-in\\nCONV_2D Mapped to Edge TPU\\n")
'''


def _compiler_on_path(tmp_path: Path, monkeypatch, rename: bool = True) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "edgetpu_compiler"
    script.write_text(STAND_IN_COMPILER.format(python=sys.executable, rename=rename))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


def test_edgetpu_without_its_compiler_is_refused_before_converting(int8, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    before = {p.name for p in int8.ws.root.iterdir()}
    result = run_cli("export", "--model", int8.ptq.id, "--target", "tflite", "--precision", "int8", "--edgetpu",
                     workspace=int8.ws.root)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "edgetpu_compiler is not on PATH" in result.stderr and "apt-get install edgetpu-compiler" in result.stderr
    assert {p.name for p in int8.ws.root.iterdir()} == before
    for args in (["--precision", "fp32"], ["--precision", "int8", "--io", "float"]):
        result = run_cli("export", "--model", int8.ptq.id, "--target", "tflite", *args, "--edgetpu",
                         workspace=int8.ws.root)
        assert result.returncode != 0 and "full-integer int8" in result.stderr, result.stderr


def test_edgetpu_compiled_file_ships_and_its_source_is_verified(int8, monkeypatch, tmp_path):
    """The artifact's file is the compiler's output, counted by operator; verification ran the file it was
    compiled from, which holds the artifact's int8 weights; bench labels the row by what the file holds."""
    from edgeres.backends.placement import compiled_for
    from edgeres.export.step import ExportRequest, run_export

    _compiler_on_path(tmp_path, monkeypatch)
    (art,) = run_export(ExportRequest(targets=["tflite"], precisions=["int8"], model=int8.ptq.id,
                                      edgetpu=True, verify_limit=200), int8.ws)
    main = art.file(art.manifest["file"])
    metrics = art.manifest["metrics"]
    assert compiled_for(main, "tflite") == {"edgetpu"}
    assert metrics["edgetpu"]["compiler"] == "0.0.stand-in" and "Mapped to Edge TPU" in metrics["edgetpu"]["log"]
    offload = metrics["edgetpu"]["offload"]
    assert offload["subgraphs"] >= 20 and offload["on_cpu"] == offload["ops"] - offload["subgraphs"]
    assert metrics["verify"]["passed"] and "model-uncompiled.tflite" in metrics["verify"]["file"]
    twin = art.file(tflite.UNCOMPILED)
    assert compiled_for(twin, "tflite") == frozenset() and metrics["size_bytes"] == main.stat().st_size
    with pytest.raises(RuntimeUnavailable):  # the compiled file needs the delegate, as a real one does
        open_session(main, threads=1).run(int8.x[:1])


def test_edgetpu_compiler_that_maps_nothing_is_an_error(int8, monkeypatch, tmp_path):
    from edgeres.export import edgetpu

    _compiler_on_path(tmp_path, monkeypatch, rename=False)
    source = int8.exports["ptq-tflite"]
    with pytest.raises(EdgeresError, match="mapped no operator to the Edge TPU"):
        edgetpu.compile_file(source.file(source.manifest["file"]), tmp_path)
