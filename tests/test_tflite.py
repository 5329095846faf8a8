"""TFLite export and runtime on a real checkpoint: the resnet20 the session fixture trained on Fashion-MNIST,
exported to fp32, fp16 and int8 (both io modes), run in the TFLite session and compared with onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeres import data
from edgeres.errors import EdgeresError
from edgeres.export import tflite
from edgeres.export.formats import ExportJob
from edgeres.preprocessing import Preprocessing
from edgeres.runtimes import RuntimeUnavailable, open_session

pytestmark = pytest.mark.slow

PREP = Preprocessing(28, 1, (0.286,), (0.353,))
METADATA = {"edgeres.preprocessing": '{"input_size": 28, "channels": 1}', "edgeres.classes": '["T-shirt/top"]',
            "edgeres.parent": "train-resnet20-x", "edgeres.version": "0.1.0", "note": "ünïcode, \"quotes\""}
VARIANTS = {"fp32": ("fp32", "int8"), "fp16": ("fp16", "int8"), "int8": ("int8", "int8"),
            "int8-float-io": ("int8", "float")}


@dataclass
class Exported:
    onnx: Path
    files: dict[str, Path]
    calibration: np.ndarray
    x: np.ndarray  # 300 test images, NCHW
    reference: np.ndarray  # onnxruntime logits of the float model on x


def _job(precision: str, out: Path, onnx_path: Path, calibration: np.ndarray, io: str = "int8") -> ExportJob:
    return ExportJob(precision, out, PREP, None, lambda: onnx_path, lambda: calibration, METADATA, {"io": io})


@pytest.fixture(scope="module")
def exported(trained_workspace, tmp_path_factory) -> Exported:
    from edgeres.train import load_fp32
    from edgeres.workspace import Workspace

    tmp = tmp_path_factory.mktemp("tflite")
    model = load_fp32(Workspace(trained_workspace).latest("train", model="resnet20"))
    onnx_path = tmp / "float.onnx"
    torch.onnx.export(model.eval(), torch.zeros(PREP.input_shape(1)), str(onnx_path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    calibration = data.as_tensors(data.load_split("fashion-mnist", "train", PREP, limit=200))[0].numpy()
    x = data.as_tensors(data.load_split("fashion-mnist", "test", PREP, limit=300))[0].numpy()
    files = {}
    for name, (precision, io) in VARIANTS.items():
        files[name] = tflite.export(_job(precision, tmp / f"{name}.tflite", onnx_path, calibration, io))
    reference = open_session(onnx_path, threads=2).run(x)
    return Exported(onnx_path, files, calibration, x, reference)


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


@pytest.mark.parametrize("name", ["int8", "int8-float-io"])
def test_int8_agrees_with_the_float_model_and_is_small(exported, name):
    """Every disagreement seen was a near-tie: an image whose float top-2 margin is below one step of the
    int8 logits. The fixture's models (2 short epochs) have many of those: over six of its checkpoints the
    agreement was 95.0-99.3 % on all 300 images but 98.9-100 % on the rest, so the rest carry the bar."""
    from ai_edge_litert.interpreter import Interpreter

    logits = open_session(exported.files[name], threads=2).run_batched(exported.x)
    agree = logits.argmax(1) == exported.reference.argmax(1)
    step = Interpreter(str(exported.files["int8"])).get_output_details()[0]["quantization"][0]
    top2 = np.sort(exported.reference, axis=1)[:, -2:]
    resolvable = top2[:, 1] - top2[:, 0] > step
    assert resolvable.sum() >= 0.8 * len(agree)
    assert agree.mean() >= 0.92, f"{name}: top-1 agreement {agree.mean():.1%} on all {len(agree)} images"
    assert agree[resolvable].mean() >= 0.97, f"{name}: top-1 agreement {agree[resolvable].mean():.1%}"
    ratio = exported.files[name].stat().st_size / exported.files["fp32"].stat().st_size
    assert ratio <= 0.30, f"{name} is {ratio:.0%} of fp32"


def test_metadata_round_trips(exported):
    for path in exported.files.values():
        assert tflite.read_metadata(path) == METADATA


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


def test_failed_conversions_leave_nothing_and_name_the_cause(exported, tmp_path, monkeypatch):
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
            tflite.export(_job("int8", out_dir / "model.tflite", source, exported.calibration))
        assert list(out_dir.iterdir()) == []
        assert Path(failure.value.hint.rsplit(" ", 1)[1]).is_file()


def test_bad_options_and_calibration_are_refused_before_converting(exported, tmp_path):
    out = tmp_path / "model.tflite"
    with pytest.raises(EdgeresError, match="io='uint8'"):
        tflite.export(_job("int8", out, exported.onnx, exported.calibration, io="uint8"))
    with pytest.raises(EdgeresError, match="calibration needs N x 1 x 28 x 28"):
        tflite.export(_job("int8", out, exported.onnx, exported.calibration[:, :, :20]))
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
    job = ExportJob("fp32", tmp_path / "rgb.tflite", prep, None, lambda: onnx_path, lambda: None, {}, {})
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    logits = open_session(tflite.export(job)).run(x)
    np.testing.assert_allclose(logits, model(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
