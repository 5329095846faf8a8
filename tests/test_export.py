"""Every target x precision exports, carries its metadata, and runs in its runtime with the accuracy of
the model it came from; bad requests fail cleanly and leave nothing behind."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS
from edgeres.workspace import Workspace


@pytest.fixture(scope="module")
def exported(trained_workspace, tmp_path_factory):
    """Both fixture models quantized, then exported to every target at every precision."""
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.quantize.step import QuantizeRequest, run_quantize

    root = tmp_path_factory.mktemp("exported") / "ws"
    shutil.copytree(trained_workspace, root)
    ws = Workspace(root)
    artifacts: dict = {}
    for name in ("resnet20", "resnet18"):
        int8 = run_quantize(QuantizeRequest(model=name, eval_limit=300, val_limit=200, calib_samples=128), ws)
        for fmt in FORMATS:
            for precision in ("fp32", "fp16", "int8"):
                try:
                    [a] = run_export(ExportRequest(targets=[fmt], precisions=[precision], model=int8.id, verify_limit=300), ws)
                    artifacts[(name, fmt, precision)] = a
                except EdgeresError as exc:  # reported by the test of that combination
                    artifacts[(name, fmt, precision)] = exc
    return ws, artifacts


def get(artifacts, key):
    value = artifacts[key]
    if isinstance(value, Exception):
        pytest.fail(f"export {key} failed: {value}")
    return value


@pytest.mark.parametrize("model", ["resnet20", "resnet18"])
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_exports_verify(exported, model, fmt, precision):
    _, artifacts = exported
    artifact = get(artifacts, (model, fmt, precision))
    v = artifact.manifest["metrics"]["verify"]
    assert v["passed"] and v["n"] == 300
    if precision == "fp32":
        assert v["agreement"] == 100 and v["max_abs_diff"] < 1e-2
    assert (artifact.path / artifact.manifest["file"]).is_file()


@pytest.mark.parametrize("model", ["resnet20", "resnet18"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_int8_files_are_a_quarter_of_fp32(exported, model, fmt):
    _, artifacts = exported
    fp32 = get(artifacts, (model, fmt, "fp32")).manifest["metrics"]["size_bytes"]
    int8 = get(artifacts, (model, fmt, "int8")).manifest["metrics"]["size_bytes"]
    # resnet20's 0.27 M parameters make fixed graph overhead count; resnet18 is the real check
    assert int8 / fp32 <= (0.27 if model == "resnet18" else 0.40)


def test_onnx_int8_is_qdq_with_int8_weights_and_a_dynamic_batch(exported):
    import onnx

    _, artifacts = exported
    a = get(artifacts, ("resnet18", "onnx", "int8"))
    model = onnx.load(str(a.path / "model.onnx"))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DequantizeLinear") > ops.count("QuantizeLinear") > 10
    int8_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert len(int8_weights) == 21  # 20 convolutions + the classifier, stored as int8
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("model", ["resnet20", "resnet18"])
def test_onnxruntime_runs_every_conv_and_the_classifier_in_int8(exported, model, tmp_path):
    """After onnxruntime's own graph optimization no float Conv or Gemm is left: the classifier is a QGemm
    (it needs a quantized input after the Flatten and an int32 bias, both written by export/qdq.py)."""
    import onnx
    import onnxruntime as ort

    _, artifacts = exported
    a = get(artifacts, (model, "onnx", "int8"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(a.path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "Conv" not in ops and "Gemm" not in ops and "MatMul" not in ops
    assert ops.count("QGemm") == 1 and ops.count("QLinearConv") >= 19

def test_openvino_says_which_operators_a_device_takes(exported):
    """OpenVINO's own query_model counts what a device takes of an IR (bench reports it for NPU rows);
    here the CPU, which takes every operator of the int8 file."""
    import openvino as ov

    from edgeres.runtimes.openvino_rt import offload

    _, artifacts = exported
    core = ov.Core()
    model = core.read_model(str(get(artifacts, ("resnet20", "openvino", "int8")).path / "model.xml"))
    counted = offload(core, model, "HETERO:CPU")
    convolutions = sum(op.get_type_name() == "Convolution" for op in model.get_ordered_ops())
    assert counted["unit"] == "CPU" and counted["on_cpu"] == 0 and counted["ops"] > convolutions >= 19


def test_int8_onnx_carries_the_quantizer_scales(exported):
    """The scales in the file are NNCF's: exported ONNX and OpenVINO agree with the torch int8 model."""
    _, artifacts = exported
    for fmt in ("onnx", "openvino"):
        v = get(artifacts, ("resnet18", fmt, "int8")).manifest["metrics"]["verify"]
        assert v["reference"] == "torch int8" and v["agreement"] >= 97


def test_metadata_travels_in_the_files(exported):
    from edgeres.export import onnx as onnx_export
    from edgeres.export import openvino as openvino_export

    _, artifacts = exported
    for fmt, reader in (("onnx", onnx_export.read_metadata), ("openvino", openvino_export.read_metadata)):
        a = get(artifacts, ("resnet20", fmt, "int8"))
        meta = reader(a.path / a.manifest["file"])
        assert json.loads(meta["edgeres.preprocessing"])["input_size"] == 28
        assert json.loads(meta["edgeres.classes"])[0] == "T-shirt/top"
        assert meta["edgeres.parent"] == a.manifest["parent"] and meta["edgeres.precision"] == "int8"


def test_bad_requests(exported, tmp_path):
    from edgeres.export.step import ExportRequest, run_export

    ws, _ = exported
    exported_before = ws.artifacts("export")
    for request, needle in [  # refused as the request is made, naming the option
        ({"targets": ["coreml"]}, r"--target \['coreml'\]: Input should be 'onnx'"),
        ({"targets": ["onnx"], "precisions": ["int4"]}, r"--precision \['int4'\]: Input should be 'fp32'"),
        ({"targets": ["onnx"], "io": "int8"}, "io and edgetpu are TFLite options"),
        ({"targets": ["tflite"], "io": "uint4"}, r"--io 'uint4': Input should be 'int8' or 'float'"),
        ({"targets": ["onnx"], "verify_limit": 0}, "--verify-limit 0: Input should be greater than or equal to 1"),
    ]:
        with pytest.raises(EdgeresError, match=needle):
            run_export(ExportRequest(**request), ws)
    assert ws.artifacts("export") == exported_before
    with pytest.raises(EdgeresError, match="no quantize or prune or train artifact"):
        run_export(ExportRequest(targets=["onnx"]), Workspace(tmp_path / "empty"))


def test_int8_of_an_unquantized_model_says_quantize_first(exported, tmp_path):
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.train import TrainConfig, TrainRequest, run_train

    ws = Workspace(tmp_path / "ws")
    run_train(TrainRequest(model="resnet20", eval_limit=50, config=TrainConfig(epochs=0)), ws)
    with pytest.raises(EdgeresError, match="quantize it first"):
        run_export(ExportRequest(targets=["onnx"], precisions=["int8"]), ws)
    assert ws.artifacts("export") == []


def test_cli_output_refuses_to_overwrite(exported, tmp_path):
    ws, artifacts = exported
    source = get(artifacts, ("resnet20", "onnx", "fp32")).manifest["parent"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ("export", "--target", "onnx", "--precision", "fp32", "--model", source, "--no-verify", "--output", str(out))
    result = run_cli(*args, workspace=ws.root)
    assert result.returncode != 0 and "--force" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(*args, "--force", workspace=ws.root)
    assert result.returncode == 0, result.stderr
    assert (out / "resnet20-fp32.onnx").is_file() and (out / "keep.txt").read_text() == "mine"


def test_converter_failure_keeps_no_partial_artifact(exported):
    """An operator ONNX cannot express: the error names it and no artifact is left."""
    import torch

    from edgeres.export import onnx as onnx_export
    from edgeres.preprocessing import Preprocessing

    class Untraceable(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x.flatten(2))[1]  # no ONNX op for an SVD

    ws, _ = exported
    prep = Preprocessing(28, 1, (0.5,), (0.5,))
    before = {a.id for a in ws.artifacts()}
    with pytest.raises(EdgeresError, match="ONNX export failed.*svd"):
        with ws.create("export", model="x", dataset="fashion-mnist") as art:
            path = art.dir / "model.onnx"
            onnx_export.torch_to_onnx(Untraceable(), path, prep.input_shape(1))
    assert {a.id for a in ws.artifacts()} == before
    assert not any(p.name.startswith(".tmp-") for p in ws.root.iterdir())
