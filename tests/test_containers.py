"""The user's own model and data: a public-layout CIFAR checkpoint imported with CIFAR-10 python batches
and with an ImageFolder tree (both holding the same real Fashion-MNIST images), through import ->
quantize -> export (three targets, int8) -> bench and a recipe, with no step told the data again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import CIFAR_MEAN, CIFAR_STD, fashion_as_rgb32, run_cli

MEAN_STD = [a for m in CIFAR_MEAN for a in ("--mean", str(m))] + [a for s in CIFAR_STD for a in ("--std", str(s))]


def _artifacts(ws: Path) -> list[Path]:
    return sorted(p for p in ws.iterdir() if not p.name.startswith(".")) if ws.exists() else []


def _manifest(path: str) -> dict:
    return json.loads((Path(path.strip().splitlines()[-1]) / "manifest.json").read_text())


def _reference_top1(checkpoint: Path, count: int | None = None) -> tuple[float, np.ndarray]:
    """The checkpoint's top-1 on the test images, computed here without edgeres's data pipeline."""
    from edgeres import models

    model = models.build("resnet20", 10, 3).eval()
    state = torch.load(checkpoint, map_location="cpu")["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=False)
    x, y = fashion_as_rgb32(False, 1000)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        predicted = model((torch.from_numpy(x).float() / 255 - mean) / std).argmax(1).numpy()
    return float((predicted == y).mean() * 100), predicted


@pytest.fixture(scope="module")
def imported(containers, public_checkpoint, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The public checkpoint imported once per container: workspace and train manifest."""
    out = {}
    for kind, dataset in (("cifar", "cifar10"), ("imagefolder", "imagefolder")):
        ws = tmp_path_factory.mktemp(f"ws-{kind}")
        result = run_cli("import", "resnet20", "--weights", str(public_checkpoint), "--dataset", dataset,
                         "--data", str(containers[kind]), *MEAN_STD, workspace=ws)
        assert result.returncode == 0, result.stderr
        out[kind] = (ws, _manifest(result.stdout))
    return out


def test_import_reproduces_the_checkpoint_top1_in_both_containers(imported, public_checkpoint, containers):
    expected, _ = _reference_top1(public_checkpoint)
    for kind, (_, manifest) in imported.items():
        assert manifest["origin"] == "imported"
        assert manifest["metrics"]["test_full"]["top1"] == pytest.approx(expected, abs=1e-9), kind
        assert manifest["metrics"]["test_full"]["n"] == 1000
        # imported weights may have seen every training image: decisions use 20 % of the test split
        assert manifest["data"]["validation"] == "test-split" and manifest["metrics"]["test"]["n"] == 800
        assert manifest["data"]["dir"] == str(containers[kind].resolve())
        assert manifest["preprocessing"]["resize"] is None and manifest["preprocessing"]["input_size"] == 32
        assert manifest["preprocessing"]["mean"] == list(CIFAR_MEAN)


def test_quantize_export_bench_need_no_data_again(imported):
    for kind, (ws, train) in imported.items():
        q = run_cli("quantize", train["id"], "--int8", "--calib-samples", "64", workspace=ws)
        assert q.returncode == 0, q.stderr
        quantized = _manifest(q.stdout)
        assert quantized["data"] == train["data"]
        assert quantized["metrics"]["test"]["n"] == 800 and quantized["metrics"]["fp32"]["test_top1"] == \
            pytest.approx(train["metrics"]["test"]["top1"], abs=1e-9)
        assert abs(quantized["metrics"]["drop_pp"]) < 3.0, (kind, quantized["metrics"])
        e = run_cli("export", "--target", "all", "--precision", "int8", "--verify-limit", "200",
                    "--calib-samples", "64", workspace=ws)
        assert e.returncode == 0, e.stderr
        exports = [m for m in (json.loads((p / "manifest.json").read_text()) for p in _artifacts(ws))
                   if m["kind"] == "export"]
        assert sorted(m["format"] for m in exports) == ["onnx", "openvino", "tflite"]
        for m in exports:
            assert m["data"]["dir"] == train["data"]["dir"]
            assert m["metrics"]["verify"]["passed"] and m["metrics"]["verify"]["agreement"] >= 95.0, (kind, m)
        b = run_cli("bench", "--device", "cpu", "--rounds", "1", "--min-runs", "5", "--min-seconds", "0",
                    "--eval-limit", "100", workspace=ws)
        assert b.returncode == 0, b.stderr
        assert "onnx" in b.stdout and "tflite" in b.stdout and "Traceback" not in b.stderr
        d = run_cli("diagnose", "--images", "16", "--recover", "1", "--no-latency", "--json", workspace=ws)
        assert d.returncode == 0, d.stderr
        report = json.loads(d.stdout)["report"]
        assert report["root"] == train["id"] and report["dataset"] == train["dataset"] and len(report["points"]) == 29
        assert sorted(f["format"] for f in report["files"]) == ["onnx", "openvino", "tflite"]
        for f in report["files"]:  # every point found in every file, each close to the torch int8 model
            assert [r["point"] for r in f["layers"]] == report["points"], (kind, f["format"])
            assert f["reference"].startswith("torch int8") and f["min_sqnr_db"] > 15 and f["agreement"] >= 90, \
                (kind, f["format"], f["min_sqnr_db"], f["agreement"])
        [trial] = report["quantization"]
        assert [r["point"] for r in trial["recovery"]][:2] == ["(as quantized)", trial["culprits"][0]], kind


def test_an_import_recipe_runs_on_an_image_folder(containers, public_checkpoint, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "mine", "model": "resnet20", "dataset": "imagefolder", "data": str(containers["imagefolder"]),
        "weights": str(public_checkpoint), "mean": list(CIFAR_MEAN), "std": list(CIFAR_STD),
        "steps": {"quantize": {"calib_samples": 64, "val_limit": 100, "eval_limit": 200},
                  "export": {"targets": ["onnx"], "precisions": ["int8"], "verify_limit": 100}}}))
    ws = tmp_path / "ws"
    first = run_cli("run", str(recipe), workspace=ws)
    assert first.returncode == 0, first.stderr
    assert "import" in first.stderr
    kinds = sorted(json.loads((p / "manifest.json").read_text())["kind"] for p in _artifacts(ws))
    assert kinds == ["export", "quantize", "train"]
    again = run_cli("run", str(recipe), workspace=ws)
    assert again.returncode == 0 and again.stderr.count("unchanged, skipped") == 3, again.stderr


# -- bad input: one clear message, a non-zero exit, nothing half-written ----------------------------------
def _refused(result, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_a_dataset_that_moved_is_named_with_the_fix(containers, public_checkpoint, tmp_path):
    moved = tmp_path / "cifar"
    shutil.copytree(containers["cifar"], moved)
    ws = tmp_path / "ws"
    result = run_cli("import", "resnet20", "--weights", str(public_checkpoint), "--dataset", "cifar10",
                     "--data", str(moved), "--eval-limit", "50", *MEAN_STD, workspace=ws)
    assert result.returncode == 0, result.stderr
    moved.rename(tmp_path / "elsewhere")
    before = _artifacts(ws)
    _refused(run_cli("quantize", "resnet20", "--int8", workspace=ws), str(moved), "--data")
    assert _artifacts(ws) == before
    ok = run_cli("eval", "resnet20", "--data", str(tmp_path / "elsewhere"), "--eval-limit", "50", workspace=ws)
    assert ok.returncode == 0 and "top-1" in ok.stdout, ok.stderr


def test_containers_given_as_the_other_say_which_they_are(containers, tmp_path):
    _refused(run_cli("train", "resnet20", "--dataset", "imagefolder", "--data", str(containers["cifar"]),
                     workspace=tmp_path / "a"), "--dataset cifar10")
    _refused(run_cli("train", "resnet20", "--dataset", "cifar10", "--data", str(containers["imagefolder"]),
                     workspace=tmp_path / "b"), "--dataset imagefolder")
    assert not (tmp_path / "a").exists() or not _artifacts(tmp_path / "a")


def test_checkpoint_mismatches_get_the_hint_that_fits(containers, public_checkpoint, tmp_path):
    from edgeres import models

    deeper = tmp_path / "resnet32.pt"
    torch.save(models.build("resnet32", 10, 3).state_dict(), deeper)
    wider = tmp_path / "cifar100.pt"
    torch.save(models.build("resnet20", 100, 3).state_dict(), wider)
    common = ("--dataset", "cifar10", "--data", str(containers["cifar"]), "--eval-limit", "20")
    _refused(run_cli("import", "resnet20", "--weights", str(deeper), *common, workspace=tmp_path / "ws"),
             "is a resnet32", "use the model resnet32")
    _refused(run_cli("import", "resnet20", "--weights", str(wider), *common, workspace=tmp_path / "ws"),
             "classifies 100 classes", "--num-classes 100")
    _refused(run_cli("import", "resnet20", "--weights", str(public_checkpoint), *common, "--mean", "0.5",
                     "--mean", "0.5", workspace=tmp_path / "ws"), "mean and std need 1 or 3 values")
    _refused(run_cli("import", "resnet20", "--weights", str(public_checkpoint), *common, "--mean", "nan", "--std", "0.25",
                     workspace=tmp_path / "ws"), "finite")
    assert not _artifacts(tmp_path / "ws")


def test_downstream_data_of_another_class_count_or_dataset_is_refused(imported, tmp_path):
    from PIL import Image

    ws, train = imported["imagefolder"]
    three = tmp_path / "three"
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            (three / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(three / split / name / "0.png")
    before = _artifacts(ws)
    _refused(run_cli("quantize", train["id"], "--int8", "--data", str(three), workspace=ws),
             "holds 3 classes", "classifies 10")
    _refused(run_cli("export", "--model", train["id"], "--target", "onnx", "--data", str(three), workspace=ws),
             "holds 3 classes")
    _refused(run_cli("quantize", train["id"], "--int8", "--dataset", "cifar10", workspace=ws),
             "was made with imagefolder, not cifar10")
    assert _artifacts(ws) == before
