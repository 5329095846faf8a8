"""Structured pruning shrinks real models as asked, keeps them runnable and rebuildable, and the pruned
model goes on through int8 quantization and export; bad requests fail with one clear message."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import run_cli
from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace


@pytest.fixture(scope="module")
def pruned(trained_workspace, tmp_path_factory):
    """A copy of the trained workspace with resnet20 pruned at 0.5 (one fine-tune epoch on 5,000 images) and resnet18
    pruned at 0.3 in two Taylor-ranked steps without fine-tuning (the structure is what is checked there)."""
    from edgeres.prune import PruneRequest, run_prune

    root = tmp_path_factory.mktemp("pruned") / "ws"
    shutil.copytree(trained_workspace, root)
    ws = Workspace(root)
    r20 = run_prune(PruneRequest(model="resnet20", ratio=0.5, finetune_epochs=1, limit=5000, val_limit=200,
                                 eval_limit=300), ws)
    r18 = run_prune(PruneRequest(model="resnet18", ratio=0.3, method="taylor", iterative=2, finetune_epochs=0,
                                 limit=1000, val_limit=200, eval_limit=300), ws)
    return ws, r20, r18


@pytest.fixture(scope="module")
def quantized(pruned):
    from edgeres.quantize.step import QuantizeRequest, run_quantize

    ws, r20, _ = pruned
    return run_quantize(QuantizeRequest(model=r20.id, eval_limit=300, val_limit=200), ws)


def _convs(artifact) -> dict[str, dict]:
    report = json.loads((artifact.path / "pruning.json").read_text())
    return {row["layer"]: row for row in report["layers"]}


def test_ratio_half_halves_macs_and_params(pruned):
    _, r20, _ = pruned
    m = r20.manifest["metrics"]
    assert m["macs_after"] <= 0.55 * m["macs_before"] and m["params_after"] <= 0.55 * m["params_before"], m
    layers = _convs(r20)
    # inside the blocks half the channels go; the option-A residual stream and the classes keep their width
    assert layers["layer1.0.conv1"]["after"] == {"in": 16, "out": 8}
    assert layers["layer3.2.conv2"]["after"] == {"in": 32, "out": 64}
    assert layers["linear"]["after"] == layers["linear"]["before"] == {"in": 64, "out": 10}
    assert r20.manifest["kind"] == "prune" and r20.manifest["precision"] == "fp32"


def test_fine_tuned_accuracy_stays_close(pruned):
    _, r20, _ = pruned
    m = r20.manifest["metrics"]
    # the fixture models are weak and the fine-tune is one epoch on 5,000 images; benchmarks/ measure real drops
    assert m["drop_pp"] <= 10, m
    assert m["finetune_epochs_total"] == 1 and m["test"]["n"] == 300


def test_residual_couplings_are_pruned_together(pruned):
    _, _, r18 = pruned
    layers = _convs(r18)
    out = {name: row["after"].get("out", row["after"].get("features")) for name, row in layers.items()}
    for stage in (2, 3, 4):
        # everything added on a stage's residual stream has one width: both blocks' last convs, the shortcut
        stream = {out[f"layer{stage}.0.conv2"], out[f"layer{stage}.0.downsample.0"], out[f"layer{stage}.1.conv2"],
                  out[f"layer{stage}.0.bn2"], out[f"layer{stage}.0.downsample.1"]}
        assert len(stream) == 1 and stream.pop() < layers[f"layer{stage}.0.conv2"]["before"]["out"]
        assert layers[f"layer{stage}.1.conv1"]["after"]["in"] == out[f"layer{stage}.0.conv2"]
    assert layers["fc"]["after"] == {"in": out["layer4.1.conv2"], "out": 10}
    report = json.loads((r18.path / "pruning.json").read_text())
    assert [s["step"] for s in report["steps"]] == [1, 2]
    assert report["macs"]["before"] > report["steps"][0]["macs"] > report["steps"][1]["macs"] == report["macs"]["after"]
    assert report["macs"]["after"] <= 0.6 * report["macs"]["before"]  # 30 % of the channels: about (0.7)^2
    # ImageNet-layout ResNets keep widths the CPU kernels run unpadded, unless --round-to says otherwise
    assert report["round_to"] == 8 and all(width % 8 == 0 for width in out.values() if width != 10)


@pytest.mark.parametrize("which", [0, 1])
def test_pruned_artifact_rebuilds_from_its_manifest(pruned, which):
    from edgeres import data, models
    from edgeres.preprocessing import Preprocessing
    from edgeres.train import evaluate, load_fp32

    artifact = pruned[1:][which]
    arch = artifact.manifest["architecture"]
    assert arch["channels"] and all(k in arch for k in ("name", "num_classes", "in_channels"))
    model = load_fp32(artifact)
    assert sum(p.numel() for p in model.parameters()) == artifact.manifest["metrics"]["params_after"]
    prep = Preprocessing.from_dict(artifact.manifest["preprocessing"])
    result = evaluate(model, data.load_split("fashion-mnist", "test", prep, limit=300))
    assert result["top1"] == pytest.approx(artifact.manifest["metrics"]["test"]["top1"])
    assert models.build_from_architecture(arch)(torch.zeros(prep.input_shape(2))).shape == (2, 10)


def test_pruned_model_quantizes_and_exports_to_int8(pruned, quantized):
    import onnx

    from edgeres.export.step import ExportRequest, run_export

    ws, r20, _ = pruned
    assert quantized.manifest["parent"] == r20.id
    assert quantized.manifest["architecture"] == r20.manifest["architecture"]
    exports = run_export(ExportRequest(targets=["onnx", "openvino"], precisions=["int8"], model=r20.id, verify_limit=200), ws)
    assert sorted(a.manifest["format"] for a in exports) == ["onnx", "openvino"]
    for artifact in exports:
        assert artifact.manifest["metrics"]["verify"]["passed"], artifact.manifest["metrics"]["verify"]
    onnx_file = next(a for a in exports if a.manifest["format"] == "onnx")
    graph = onnx.load(str(onnx_file.path / onnx_file.manifest["file"])).graph
    shapes = {tuple(i.dims) for i in graph.initializer}
    # the blocks are narrow: first-stage convs 16 -> 8 -> 16 channels, no 64 -> 64 conv left in the last stage
    assert {(8, 16, 3, 3), (16, 8, 3, 3), (32, 64, 3, 3)} <= shapes and (64, 64, 3, 3) not in shapes


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_zero_one_is_refused(tmp_path, ratio):
    from edgeres.prune import PruneRequest, run_prune

    with pytest.raises(EdgeresError, match=f"--ratio {ratio}: Input should be (greater|less) than"):
        run_prune(PruneRequest(model="resnet20", ratio=ratio), Workspace(tmp_path))
    assert not any(tmp_path.iterdir())


def test_cli_bad_ratio_is_one_clear_line(pruned):
    ws, _, _ = pruned
    result = run_cli("prune", "resnet20", "--ratio", "1", workspace=ws.root)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--ratio 1.0: Input should be less than 1" in result.stderr  # one line naming the flag


def test_int8_artifact_is_refused_with_the_hint(pruned, quantized):
    from edgeres.prune import PruneRequest, run_prune

    ws, r20, _ = pruned
    with pytest.raises(EdgeresError, match="prune before quantizing") as err:
        run_prune(PruneRequest(model=quantized.id, ratio=0.3), ws)
    assert r20.id in str(err.value)


def test_layer_that_cannot_keep_a_channel_is_named(pruned):
    from edgeres.prune import PruneRequest, run_prune

    ws, r20, _ = pruned
    before = {a.id for a in ws.artifacts()}
    with pytest.raises(EdgeresError, match=r"layer layer1\.0\.conv1 has 16 output channels") as err:
        run_prune(PruneRequest(model="resnet20", ratio=0.95), ws)
    assert "--ratio at most 0.937" in str(err.value)
    with pytest.raises(EdgeresError, match="layer1.0.conv1 has 8 output channels") as err:
        run_prune(PruneRequest(model=r20.id, ratio=0.5, round_to=8), ws)  # 8 -> 4 channels, rounded down to none
    assert "smaller --round-to" in str(err.value)
    assert {a.id for a in ws.artifacts()} == before


def test_magnitude_sparsity_shrinks_the_compressed_file_not_the_macs(pruned):
    from edgeres.prune import PruneRequest, run_prune
    from edgeres.train import load_fp32

    ws, _, _ = pruned
    artifact = run_prune(PruneRequest(model="resnet20", method="magnitude", sparsity=0.6, iterative=2, finetune_epochs=0,
                                      limit=1000, val_limit=200, eval_limit=300), ws)
    m = artifact.manifest["metrics"]
    assert 0.59 <= m["sparsity"] <= 0.61 and m["macs_ratio"] == 1.0 and m["params_ratio"] == 1.0
    assert m["compressed_bytes_after"] < 0.8 * m["compressed_bytes_before"]
    assert artifact.manifest["architecture"]["channels"] == {}
    weights = [p for name, p in load_fp32(artifact).named_parameters() if name.endswith("weight") and p.ndim > 1]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(m["sparsity"], abs=1e-4)


@pytest.mark.parametrize("request_kwargs,needle", [
    ({"method": "magnitude"}, "method magnitude needs sparsity"),
    ({"method": "magnitude", "sparsity": 0.5, "ratio": 0.3}, "method magnitude takes sparsity instead"),
    ({"sparsity": 0.5}, "the structured methods take ratio"),
    ({"method": "random"}, "--method 'random': Input should be 'l1', 'l2'"),
    ({"ratio": float("nan")}, "--ratio nan: Input should be a finite number"),
    ({"method": "magnitude", "sparsity": float("nan")}, "--sparsity nan: Input should be a finite number"),
    ({"lr": float("nan")}, "--lr nan: Input should be a finite number"),
    ({"lr": float("inf")}, "--lr inf: Input should be a finite number"),
    ({"finetune_epochs": 10**9}, "--finetune-epochs 1000000000: Input should be less than or equal to 10000"),
    ({"iterative": 10**6}, "--iterative 1000000: Input should be less than or equal to 100"),
    ({"epochs": 3}, "unknown option 'epochs'"),
])
def test_a_bad_request_is_refused_by_its_option_before_any_work(tmp_path, request_kwargs, needle):
    from edgeres.prune import PruneRequest, run_prune

    with pytest.raises(EdgeresError, match=needle):
        run_prune(PruneRequest(model="resnet20", **request_kwargs), Workspace(tmp_path))
    assert not any(tmp_path.iterdir())
