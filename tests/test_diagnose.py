"""``edgeres diagnose`` on real exported files: a layer whose quantization is broken on purpose in a file
(its scale multiplied by 8) is named first, in every format; the gates end with a non-zero exit; bad input
is one clear message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edgeres.diagnose.points import Point, find_points
from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace

FORMATS = ("onnx", "openvino", "tflite")
# The point to break, by kind: the first of these that is not the clean file's own first culprit. None ends a
# stage: TFLite's PAD and STRIDED_SLICE after a stage's last block share its tensor's scale by construction, so
# a scale changed there alone would misread the next stage instead of coarsening this block.
TARGETS = {"block": ("layer2.1", "layer1.1", "layer3.1"),
           "conv": ("layer2.1.conv1", "layer1.1.conv1", "layer3.1.conv1")}
IMAGES = 32


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    """A small ResNet-20 trained briefly on real Fashion-MNIST images, quantized, exported to int8 in every
    format and to fp16 ONNX, and diagnosed once (keep-float trial, profiles and placement too)."""
    from edgeres.diagnose.step import DiagnoseRequest, run_diagnose
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.quantize.step import QuantizeRequest, run_quantize
    from edgeres.train import TrainConfig, TrainRequest, run_train

    ws = Workspace(tmp_path_factory.mktemp("diagnose") / "ws")
    run_train(TrainRequest(model="resnet20", eval_limit=200, config=TrainConfig(epochs=1, limit=3000)), ws)
    int8 = run_quantize(QuantizeRequest(model="resnet20", eval_limit=200, val_limit=200, calib_samples=64), ws)
    exports = {fmt: run_export(ExportRequest(targets=[fmt], precisions=["int8"], model=int8.id, verify_limit=100),
                               ws)[0] for fmt in FORMATS}
    exports["onnx fp16"] = run_export(ExportRequest(targets=["onnx"], precisions=["fp16"], model=int8.id,
                                                    verify_limit=100), ws)[0]
    clean = run_diagnose(DiagnoseRequest(images=IMAGES, recover=1, placement=True), ws)
    return ws, exports, clean


def _file(report: dict, fmt: str, precision: str = "int8") -> dict:
    [found] = [f for f in report["files"] if f["format"] == fmt and f["precision"] == precision]
    return found


def _points(ws: Workspace, report: dict) -> list[Point]:
    """The points of the model the report diagnosed, as diagnose finds them."""
    from edgeres.quantize.fold import fold_batchnorm
    from edgeres.train import load_fp32

    points = find_points(fold_batchnorm(load_fp32(ws.resolve(report["root"]))))
    assert [p.name for p in points] == report["points"]
    return points


def _blocks(report: dict) -> list[str]:
    """The stem and the blocks, in order: what time is summed by."""
    return [r["point"] for r in report["files"][0]["layers"] if r["kind"] in ("stem", "block")]


def _copy_export(ws: Workspace, source, write) -> object:
    """A new export artifact like ``source`` whose file ``write(source_path, target_dir)`` made."""
    m = source.manifest
    keep = ("format", "precision", "runtime", "file", "architecture", "preprocessing", "classes", "data")
    with ws.create("export", model=m["model"], dataset=m["dataset"], parent=ws.resolve(m["parent"]),
                   config=m["config"], **{k: m[k] for k in keep if m.get(k) is not None}) as art:
        write(source.path / m["file"], art.dir / m["file"])
    return art.artifact


def _corrupt_onnx(source, target, point: Point) -> None:
    """Multiply the scale of the quantizer of ``point``'s tensor by 8 (its Q and DQ, in a scale of their own)."""
    import onnx
    from onnx import numpy_helper

    from edgeres.diagnose.taps_onnx import locate
    from edgeres.export.qdq import _Graph

    model = onnx.load(str(source))
    tensor = locate(model, [point])[point.name]
    g = _Graph(model)
    dq = g.producers[tensor]
    q = g.producers[dq.input[0]]
    assert (dq.op_type, q.op_type) == ("DequantizeLinear", "QuantizeLinear")
    scale = g.constant(dq.input[1]) * np.float32(8)
    model.graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32), "edgeres_test_scale"))
    q.input[1] = dq.input[1] = "edgeres_test_scale"
    onnx.save(model, str(target))


def _corrupt_openvino(source, target, point: Point) -> None:
    """Multiply the four range constants of the FakeQuantize that makes ``point``'s tensor by 8."""
    import openvino as ov

    from edgeres.diagnose.taps_openvino import locate

    model = ov.Core().read_model(str(source))
    fq = locate(model, [point])[point.name].get_node()
    assert fq.get_type_name() == "FakeQuantize"
    for i in range(1, 5):
        value = fq.input_value(i).get_node().get_data() * np.float32(8)
        fq.input(i).replace_source_output(ov.op.Constant(value.astype(np.float32)).output(0))
    ov.save_model(model, str(target), compress_to_fp16=False)


def _corrupt_tflite(source, target, point: Point, points: list[Point]) -> None:
    """Multiply the quantization scale of ``point``'s tensor (a residual ADD's or a convolution's output) by 8. A
    convolution reading it keeps its int32 bias in units of input scale x weight scale, so that bias is
    re-expressed in the new units (as a converter would write it), as in the ONNX and OpenVINO files,
    whose biases are float: only the point's tensor gets coarser."""
    from tensorflow.lite.tools import flatbuffer_utils

    from edgeres.diagnose.taps_tflite import match_points
    from edgeres.runtimes.taps import tflite_interpreter

    interpreter = tflite_interpreter(source, 1)
    ops = interpreter._get_ops_details()
    index = match_points(ops, {interpreter.get_input_details()[0]["index"]}, points)[point.name]
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(source.read_bytes()))
    tensors = model.subgraphs[0].tensors
    tensors[index].quantization.scale = [float(s) * 8 for s in tensors[index].quantization.scale]
    readers = [op for op in ops if op["op_name"] == "CONV_2D" and int(op["inputs"][0]) == index]
    assert readers
    for op in readers:
        bias = tensors[int(op["inputs"][2])]
        buffer = model.buffers[bias.buffer]
        values = np.rint(buffer.data.view(np.int32) / 8).astype("<i4")
        buffer.data = np.frombuffer(values.tobytes(), np.uint8)
        bias.quantization.scale = [float(s) * 8 for s in bias.quantization.scale]
    target.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def _corrupted(ws, exports, fmt: str, point: Point, points: list[Point]):
    def write(source, target):
        if fmt == "onnx":
            _corrupt_onnx(source, target, point)
        elif fmt == "openvino":
            _corrupt_openvino(source, target, point)
        else:
            _corrupt_tflite(source, target, point, points)

    return _copy_export(ws, exports[fmt], write)


def _target(clean: dict, fmt: str, points: list[Point], kind: str = "block") -> Point:
    first = _file(clean, fmt)["culprits"][:1]
    name = next(name for name in TARGETS[kind] if [name] != first)
    return next(p for p in points if p.name == name)


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_corrupted_layer_is_named_first(diagnosed, fmt, kind):
    """The key check: the quantization scale of one block's output, or of one convolution's inside a block, x8
    in the int8 file, and diagnose blames that point (where the clean file blames another), with the SQNR
    falling there and not before."""
    from edgeres.diagnose.step import DiagnoseRequest, run_diagnose

    ws, exports, clean = diagnosed
    points = _points(ws, clean.report)
    target = _target(clean.report, fmt, points, kind)
    broken = _corrupted(ws, exports, fmt, target, points)
    report = run_diagnose(DiagnoseRequest(artifact=broken.id, images=IMAGES, recover=0, latency=False), ws).report
    [got] = report["files"]
    was = _file(clean.report, fmt)
    assert got["artifact"] == broken.id and got["culprits"][0] == target.name, got["culprits"]
    at = clean.report["points"].index(target.name)
    assert got["layers"][at]["sqnr_db"] < was["layers"][at]["sqnr_db"] - 3
    assert [r["sqnr_db"] for r in got["layers"][:at]] == pytest.approx([r["sqnr_db"] for r in was["layers"][:at]],
                                                                       abs=0.5)


def test_clean_files_match_their_sources(diagnosed):
    """Every point of every clean file is found and close to the torch model it came from; the fp16 file
    names no culprit; the int8 files run every convolution and the classifier in int8."""
    _, exports, clean = diagnosed
    report = clean.report
    # ResNet-20: the stem, then in each of 9 blocks its two convolutions and its output, then the logits
    assert report["points"][:5] == ["relu", "layer1.0.conv1", "layer1.0.conv2", "layer1.0", "layer1.1.conv1"]
    assert report["points"][-1] == "logits" and len(report["points"]) == 29
    assert {(f["format"], f["precision"]) for f in report["files"]} == {*((fmt, "int8") for fmt in FORMATS),
                                                                         ("onnx", "fp16")}
    for f in report["files"]:
        assert [r["point"] for r in f["layers"]] == report["points"] and f["agreement"] >= 90
        if f["precision"] == "int8":
            assert f["reference"].startswith("torch int8") and f["min_sqnr_db"] > 15
            assert f["fallback"]["float_ops"] == 0 and f["fallback"]["compute_ops"] >= 20
            assert all(r["sqnr_vs_fp32_db"] < 60 for r in f["layers"])  # int8 is not FP32
        else:
            assert f["reference"] == "torch fp32" and f["min_sqnr_db"] > 50 and f["culprits"] == []
    q = report["quantization"][0]
    base, block, *alone = q["recovery"]
    assert q["culprits"] and [base["point"], block["point"]] == ["(as quantized)", q["culprits"][0]]
    assert block["float_layers"] and all(n.startswith(("layer", "conv1", "linear")) for n in block["float_layers"])
    # a point of several layers is then tried layer by layer, each of its layers alone in float
    several = len(block["float_layers"]) > 1
    assert [r["float_layers"] for r in alone] == ([[n] for n in block["float_layers"]] if several else [])
    assert all(r["alone"] and r["point"] == block["point"] for r in alone)
    best = max(q["recovery"][1:], key=lambda r: (r["recovery_pp"], r["agreement_gain_pp"], -len(r["float_layers"])))
    assert q["fix"].get("float_layers", best["float_layers"]) == best["float_layers"]


def test_the_fix_command_makes_the_model_its_trial_measured(diagnosed):
    """The quantize command diagnose gives for a keep-float trial re-makes the quantize artifact with those
    layers in float: the same val top-1 on the same val images. A layer the model lacks is one clear error."""
    from edgeres.diagnose.step import VAL_IMAGES, _quantize_command

    ws, exports, clean = diagnosed
    q = clean.report["quantization"][0]
    base, trial = q["recovery"][:2]
    source = ws.resolve(exports["onnx"].manifest["parent"])
    command = _quantize_command(source, [*base["float_layers"], *trial["float_layers"]]).split()
    assert command[:5] == ["edgeres", "quantize", source.manifest["parent"], "--int8", "--calib-samples"]
    before = len(ws.artifacts("quantize"))
    made = run_cli(*command[1:], "--val-limit", str(VAL_IMAGES), "--eval-limit", "100", workspace=ws.root)
    assert made.returncode == 0, made.stderr
    manifest = json.loads((Path(made.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["float_layers"] == trial["float_layers"] and q["val_images"] == VAL_IMAGES
    # one image in 500 of slack: the CLI's process may sum in another thread order
    assert manifest["metrics"]["int8"]["val_top1"] == pytest.approx(trial["top1"], abs=100 / VAL_IMAGES + 1e-9)
    bad = run_cli(*command[1:4], "--keep-float", "layer9.conv1", workspace=ws.root)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--keep-float layer9.conv1: no such Conv2d or Linear layer" in bad.stderr
    assert re.search(r"its layers: conv1, layer1\.0\.conv1, .*, linear \(\d+;", " ".join(bad.stderr.split()))
    assert len(ws.artifacts("quantize")) == before + 1


def test_reading_points_does_not_change_what_a_file_computes(diagnosed):
    """A point read out of an int8 IR is read in a compiled model of its own (a FakeQuantize made an output
    no longer fuses with its neighbours): the logits are the file's own, bit for bit, and a point's tensor is
    the same whichever other points are read with it. An ONNX file's logits are its own too."""
    import openvino as ov

    from edgeres.diagnose import taps_onnx, taps_openvino
    from edgeres.diagnose.points import LOGITS
    from edgeres.runtimes.onnxruntime_rt import OnnxRuntimeSession

    ws, exports, clean = diagnosed
    points = _points(ws, clean.report)
    path = exports["openvino"].file(exports["openvino"].manifest["file"])
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    every = taps_openvino.taps(path, points, x)
    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_array_equal(every[LOGITS], compiled({0: x})[compiled.outputs[0]])
    for point in (points[3], points[-2]):
        np.testing.assert_array_equal(taps_openvino.taps(path, [point, points[-1]], x)[point.name], every[point.name])
    onnx_file = exports["onnx"].file(exports["onnx"].manifest["file"])  # ONNX: the logits from the file as it is
    np.testing.assert_array_equal(taps_onnx.taps(onnx_file, points, x)[LOGITS],
                                  OnnxRuntimeSession(onnx_file, threads=None).run(x))


def test_placement_and_the_fallback_gate(diagnosed):
    """The QNN HTP (Qualcomm's emulator here) takes every convolution of the int8 ONNX file and leaves the
    classifier to the CPU (a Gemm with a float output, see export/qdq.py), which --max-fallback 0 catches."""
    from edgeres.diagnose.step import DiagnoseRequest, run_diagnose

    ws, exports, clean = diagnosed
    [placed] = _file(clean.report, "onnx")["placement"]
    if placed.get("unavailable"):
        pytest.skip(f"no QNN execution provider here: {placed['unavailable']}")
    assert placed["compute_on_cpu"] == 1 and placed["compute_on_provider"] > 0.9
    assert [n for n in placed["cpu_nodes"] if n.startswith(("Conv ", "Gemm "))] == ["Gemm /linear/Gemm"]
    result = run_diagnose(DiagnoseRequest(artifact=exports["onnx"].id, images=8, recover=0, latency=False,
                                          placement=True, max_fallback=0), ws)
    assert len(result.failures) == 1 and "Qualcomm HTP leaves 1 compute" in result.failures[0]
    assert _file(clean.report, "onnx", "fp16")["placement"] == []


def test_latency_by_operator(diagnosed):
    """Operator types come from the runtimes' own profilers: int8 ONNX runs QLinearConv, fp16 ONNX Conv;
    OpenVINO's counters name convolutions; TFLite's, timed by prefixes of the file, spend most of their time
    in convolutions; the CPU's int8 flags are read."""
    _, _, clean = diagnosed
    lat = {(f["format"], f["precision"]): f for f in clean.report["latency"]["files"]}
    assert "QLinearConv" in lat[("onnx", "int8")]["by_type"] and "Conv" in lat[("onnx", "fp16")]["by_type"]
    assert "QLinearConv" not in lat[("onnx", "fp16")]["by_type"]
    assert "Convolution" in lat[("openvino", "int8")]["by_type"]
    for key in (("onnx", "int8"), ("openvino", "int8")):
        assert lat[key]["ops_p50_ms"] > 0 and lat[key]["p50_ms"] > 0 and "layer2.1" in lat[key]["by_block"]
    tflite = lat[("tflite", "int8")]  # timed by prefixes of the file: operator by operator, block by block
    assert tflite["by_type"]["CONV_2D"] > 0.5 * tflite["ops_p50_ms"] and "first operators" in tflite["ops_statistic"]
    assert list(tflite["by_block"]) == [*_blocks(clean.report), "(other)"] and tflite["by_block"]["layer2.1"] > 0
    slowest = tflite["slowest"][0]  # named after its block, by its type and place in the file
    assert slowest["op"] == f"{slowest['op'].split()[0]} {slowest['type']}#{slowest['op'].split('#')[1]}"
    assert slowest["op"].split()[0] in tflite["by_block"] and slowest["type"] in tflite["by_type"]
    cpu = clean.report["latency"]["cpu"]
    assert isinstance(cpu["fast_int8"], bool) and cpu["note"]


def test_the_report_names_the_slowest_operators(diagnosed, capsys):
    """The report as printed: SQNR point by point, the keep-float trials, time by block (every format's stem
    and blocks: an operator is its block's wherever the scope stands in its name) and each file's slowest
    operators, TFLite's too, with their share of the file's operator time."""
    from edgeres.cli.diagnose_cmd import show_report

    _, _, clean = diagnosed
    capsys.readouterr()
    show_report(clean.report)
    text = capsys.readouterr().out
    assert "# SQNR (dB)" in text and "# keep-float trials" in text and "# time by block" in text
    checks = text[text.index("# int8 checks"):text.index("# slowest operators")]  # one row per int8 file
    for f in clean.report["latency"]["files"]:
        if f["precision"] == "int8":
            requant = f["requantize_ops"]
            assert re.search(rf"^{f['format']} int8\t.*\t{requant['count']} \({requant['ms']:.3f}\)\t", checks, re.M)
    for f in clean.report["latency"]["files"]:
        assert list(f["by_block"]) == [*_blocks(clean.report), "(other)"]
    slow = text[text.index("# slowest operators"):]
    for f in clean.report["latency"]["files"]:
        top = f["slowest"][0]
        assert f"{f['format']} {f['precision']}" in slow and top["op"] in slow
        assert f"{top['ms'] / f['ops_p50_ms'] * 100:.0f}" in slow


def test_a_tflite_prefix_runs_every_operator_it_keeps(diagnosed, tmp_path):
    """What TFLite's time per operator rests on: the file's first k operators, cut out of it, compute exactly
    the whole file's tensors (on the same builtin kernels), and every tensor they make is read by one of them
    or is an output, so that XNNPACK, which drops operators nobody reads, runs them all too; its first output
    is the last operator's."""
    from edgeres.runtimes.taps import tflite_interpreter, tflite_tensors
    from edgeres.runtimes.tflite_cuts import Cutter

    _, exports, _ = diagnosed
    path = exports["tflite"].file(exports["tflite"].manifest["file"])
    cutter = Cutter(path)
    ops = tflite_interpreter(path, 1)._get_ops_details()
    assert cutter.kinds == [op["op_name"] for op in ops] and "CONV_2D" in cutter.kinds
    made = {int(t): i for i, op in enumerate(ops) for t in op["outputs"]}
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    whole = tflite_tensors(path, {t: t for t in made}, x, 1)
    branched = 0
    for kept in range(1, cutter.operators + 1):
        prefix = tmp_path / f"prefix{kept}.tflite"
        prefix.write_bytes(cutter.prefix(kept))
        outputs = [int(o["index"]) for o in tflite_interpreter(prefix, 1).get_output_details()]
        read = {int(t) for op in ops[:kept] for t in op["inputs"]}
        assert outputs[0] == int(ops[kept - 1]["outputs"][0])
        assert {t for t, i in made.items() if i < kept} <= read | set(outputs)
        branched += len(outputs) > 1
        got = tflite_tensors(prefix, {t: t for t in outputs}, x, 1)
        for t in outputs:
            np.testing.assert_array_equal(got[t], whole[t])
    assert branched  # a shortcut convolution made some prefix end in two branches
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(cutter.prefix(0))
    empty_interpreter = tflite_interpreter(empty, 1)
    assert [o["index"] for o in empty_interpreter.get_output_details()] == [
        o["index"] for o in empty_interpreter.get_input_details()]
    with pytest.raises(ValueError, match="operators, not"):
        cutter.prefix(cutter.operators + 1)


def test_tflite_cuts_run_one_at_a_time_where_memory_is_short(diagnosed, monkeypatch):
    """Every cut loaded at once holds a copy of the weights each: where that would take more than half the
    free memory (a small board, a large model), the cuts are timed one after another instead."""
    from edgeres.diagnose.oplatency import _cuts
    from edgeres.runtimes import opprofile

    ws, exports, clean = diagnosed
    path = exports["tflite"].file(exports["tflite"].manifest["file"])
    assert opprofile._fit_together(path, 2) and not opprofile._fit_together(path, 10**9)
    stem, *blocks = _blocks(clean.report)
    cuts = _cuts(path, _points(ws, clean.report))
    assert list(cuts) == [stem, *blocks]
    monkeypatch.setattr(opprofile, "_fit_together", lambda path, sessions: False)
    found = opprofile.profile("tflite", path, np.zeros((1, 1, 28, 28), np.float32), 1, cuts=cuts)
    assert list(found["by_block"]) == [stem, *blocks, "(other)"] and "one cut at a time" in found["ops_statistic"]
    assert found["runs"] >= opprofile.MIN_RUNS and found["p50_ms"] > 0


def test_cpu_int8_flags():
    from edgeres.runtimes.opprofile import cpu_int8

    assert "AVX-512 VNNI" in cpu_int8("flags\t: fpu avx2 avx512_vnni\n")["int8_instructions"]
    slow = cpu_int8("flags\t: fpu sse4_2 avx2\n")
    if slow["machine"] in ("x86_64", "AMD64"):
        assert not slow["fast_int8"] and "VNNI" in slow["note"]


def test_saved_artifact_and_points_of_a_torchvision_resnet(diagnosed):
    import torchvision

    ws, _, clean = diagnosed
    art = clean.artifact
    assert art.kind == "diagnose" and {"diagnose.json", "sqnr.png"} <= set(art.manifest["files"])
    saved = json.loads((art.path / "diagnose.json").read_text())
    assert saved["files"] == json.loads(json.dumps(clean.report["files"]))
    assert (art.path / "sqnr.png").read_bytes()[:4] == b"\x89PNG"
    points = find_points(torchvision.models.resnet18(num_classes=10))
    assert [p.name for p in points][:8] == ["maxpool", "layer1.0.conv1", "layer1.0.conv2", "layer1.0", "layer1.1.conv1",
                                            "layer1.1.conv2", "layer1.1", "layer2.0.conv1"]
    assert [(p.kind, p.feeds) for p in points[8:11]] == [("conv", None), ("shortcut", None), ("block", None)]
    assert points[9].name == "layer2.0.downsample.0" and points[1].feeds == "layer1.0.conv2"
    assert len(points) == 1 + 8 * 3 + 3 + 1
    bottleneck = find_points(torchvision.models.resnet50(num_classes=10))  # three convolutions a block
    assert [(p.name, p.kind, p.feeds) for p in bottleneck[1:6]] == [
        ("layer1.0.conv1", "conv", "layer1.0.conv2"), ("layer1.0.conv2", "conv", "layer1.0.conv3"),
        ("layer1.0.conv3", "conv", None), ("layer1.0.downsample.0", "shortcut", None), ("layer1.0", "block", None)]
    assert bottleneck[4].scope == "/layer1/layer1.0/downsample/downsample.0/" and bottleneck[4].block == "layer1.0"


def test_gates_on_the_command_line(diagnosed):
    """A clean int8 file passes --min-sqnr and --max-fallback; a corrupted one fails --min-sqnr with one
    message naming the layer and a non-zero exit; --json stays one document."""
    ws, exports, clean = diagnosed
    points = _points(ws, clean.report)
    block = _target(clean.report, "onnx", points)
    broken = _corrupted(ws, exports, "onnx", block, points)
    clean_min = _file(clean.report, "onnx")["min_sqnr_db"]
    threshold = f"{clean_min - 2:.1f}"
    ok = run_cli("diagnose", exports["onnx"].id, "--images", "32", "--recover", "0", "--no-latency", "--no-placement",
                 "--min-sqnr", threshold, "--max-fallback", "0", "--json", workspace=ws.root)
    assert ok.returncode == 0, ok.stderr
    document = json.loads(ok.stdout)
    report = document["report"]
    assert report["files"][0]["artifact"] == exports["onnx"].id and report["gates"]["failures"] == []
    bad = run_cli("diagnose", broken.id, "--images", "32", "--recover", "0", "--no-latency", "--no-placement",
                  "--min-sqnr", threshold, workspace=ws.root)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "gate(s) not met" in bad.stderr and "--min-sqnr" in bad.stderr and block.name in bad.stderr
    assert re.search(rf"^{re.escape(block.name)}\t-?[\d.]+ \*(\t|$)", bad.stdout, re.M)  # where the error jumps


def test_a_file_whose_nodes_lost_the_module_names_is_one_clear_error(diagnosed):
    """ONNX and OpenVINO points are found by torch's module names: a file whose nodes were renamed says so,
    naming the points it lacks, and writes no report."""
    import onnx
    import openvino as ov

    from edgeres.diagnose.step import DiagnoseRequest, run_diagnose

    ws, exports, clean = diagnosed

    def rename_onnx(source, target):
        model = onnx.load(str(source))
        for i, node in enumerate(model.graph.node):
            node.name = f"node{i}"
        onnx.save(model, str(target))

    def rename_openvino(source, target):
        model = ov.Core().read_model(str(source))
        for i, op in enumerate(model.get_ordered_ops()):
            if op.get_type_name() not in ("Parameter", "Result"):
                op.set_friendly_name(f"op{i}")
        ov.save_model(model, str(target), compress_to_fp16=False)

    first = ", ".join(clean.report["points"][:2])
    reports = len(ws.artifacts("diagnose"))
    for fmt, rename, nodes in [("onnx", rename_onnx, "ONNX nodes"),
                               ("openvino", rename_openvino, "OpenVINO operators")]:
        renamed = _copy_export(ws, exports[fmt], rename)
        with pytest.raises(EdgeresError, match=rf"no {nodes} named after module\(s\) {re.escape(first)}, ") as caught:
            run_diagnose(DiagnoseRequest(artifact=renamed.id, images=4), ws)
        assert "not exported by edgeres from that model" in caught.value.hint
    assert len(ws.artifacts("diagnose")) == reports


def test_bad_input(diagnosed, tmp_path):
    from edgeres.diagnose.step import DiagnoseRequest, run_diagnose
    from edgeres.train import TrainConfig, TrainRequest, run_train

    ws, _, _ = diagnosed
    for request, needle in [({"artifact": "no-such-thing"}, "no artifact or exported model"),
                            ({"images": 0}, "--images 0: Input should be greater than or equal to 1"),
                            ({"images": 10**6}, "--images 1000000: Input should be less than or equal to 2000"),
                            ({"min_sqnr": float("nan")}, "--min-sqnr nan: Input should be a finite number"),
                            ({"targets": ["coreml"]}, r"--target \['coreml'\]: Input should be 'onnx'"),
                            ({"device": "nosuch"}, "unknown device 'nosuch'"),
                            ({"device": "raspberrypi", "targets": ["openvino"]}, "device raspberrypi does not run openvino"),
                            ({"emulate": True}, "device cpu cannot be emulated here")]:
        with pytest.raises(EdgeresError, match=needle):
            run_diagnose(DiagnoseRequest(**request), ws)
    empty = Workspace(tmp_path / "ws")
    run_train(TrainRequest(model="resnet20", eval_limit=20, config=TrainConfig(epochs=0)), empty)
    with pytest.raises(EdgeresError, match="no export artifact"):
        run_diagnose(DiagnoseRequest(), empty)
    assert empty.artifacts("diagnose") == []
    for args, needle in [(("no-such-thing",), "no artifact or exported model"), (("--images", "0"), "--images")]:
        result = run_cli("diagnose", *args, workspace=ws.root)
        assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr
