"""Recipes are validated before any work, run end to end, skip what has not changed and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, interruptible, run_cli

SHIPPED = ("resnet18-fashion-int8-all.yaml", "resnet18-pruned-int8.yaml", "resnet18-qat-tflite-raspberrypi.yaml",
           "resnet20-cifar10-import-int8.yaml", "resnet20-cifar10-int8.yaml", "resnet50-int8-openvino-npu.yaml")
RECIPES = [REPO / "recipes" / name for name in SHIPPED]


def test_every_recipe_in_the_tree_is_in_the_tested_list():
    assert sorted(p.name for p in (REPO / "recipes").glob("*.yaml")) == sorted(SHIPPED)


# Overrides that shrink any shipped recipe to seconds per step (only for the steps it has). What is tested here
# is that every step of every recipe runs; how well the model learns, quantizes and exports is tested in
# test_train, test_quantize, test_export and test_verify. So one epoch on 2,000 images, and no verification:
# a barely trained model flips near-ties, and its int8 files would fail verification (3 epochs on 10,000
# images passed it, but took ResNet-50's recipe alone about 17 minutes on a 2-core Zen 1 VM, and every recipe
# together about 40 of CI's 90).
SHRINK = {
    "train": {"epochs": 1, "limit": 2000, "eval_limit": 200, "lr": 0.05},
    "prune": {"finetune_epochs": 1, "limit": 5000, "val_limit": 100, "eval_limit": 200},
    # max_drop: on 100 val images a budget search is noise; it is tested in test_quantize and test_tflite
    "quantize": {"calib_samples": 64, "val_limit": 100, "eval_limit": 200, "epochs": 1, "train_limit": 300,
                 "max_drop": "null"},
    "export": {"verify": "false", "calib_samples": 64},
    "bench": {"eval_limit": 50, "rounds": 1, "min_runs": 5, "min_seconds": 0},
}


def _shrunk(recipe: Path, containers: dict[str, Path], checkpoint: Path) -> list[str]:
    doc = yaml.safe_load(recipe.read_text())
    sets = [f"{step}.{key}={value}" for step, keys in SHRINK.items() if step in doc["steps"]
            for key, value in keys.items()]
    if doc.get("dataset") == "cifar10":
        sets.append(f"data={containers['cifar']}")
    if doc.get("weights") not in (None, "imagenet"):
        sets.append(f"weights={checkpoint}")
    return [arg for item in sets for arg in ("--set", item)]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_shipped_recipe_validates_and_plans(recipe, containers, public_checkpoint, tmp_path):
    result = run_cli("run", str(recipe), "--dry-run", *_shrunk(recipe, containers, public_checkpoint),
                     workspace=tmp_path / "ws")
    assert result.returncode == 0, result.stderr
    assert ("train" in result.stdout or "import" in result.stdout) and "run" in result.stdout
    assert not (tmp_path / "ws").exists() or not [p for p in (tmp_path / "ws").iterdir() if not p.name.startswith(".")]


# The first workspace in which each (model, dataset) was trained: later recipes that train the same model
# start from a copy of its train artifact and records, as recipes sharing one workspace do.
_TRAINED: dict[tuple[str, str], Path] = {}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_shipped_recipe_runs_end_to_end(recipe, containers, public_checkpoint, tmp_path, tmp_path_factory):
    """A shipped recipe that cannot run is a defect: each one runs, shrunk by --set, not edited. A recipe
    that trains what an earlier one trained reuses that training (another recipe's record, same key), kept
    for the session (a passing test's tmp_path goes when it ends)."""
    import shutil

    ws = tmp_path / "ws"
    doc = yaml.safe_load(recipe.read_text())
    trains = (doc["model"], doc.get("dataset", "fashion-mnist")) if "train" in doc["steps"] else None
    seed = _TRAINED.get(trains) if trains else None
    def copy_training(source: Path, target: Path) -> None:
        for path in [source / ".pipeline", *source.glob("train-*")]:
            shutil.copytree(path, target / path.name)

    if seed is not None:
        copy_training(seed, ws)
    # a whole road: on a 2-core AVX2 machine ResNet-50's shrunk training alone takes many minutes
    result = run_cli("run", str(recipe), *_shrunk(recipe, containers, public_checkpoint), workspace=ws, timeout=2400)
    assert result.returncode == 0, result.stderr[-3000:]
    if seed is not None:
        assert "train: unchanged, skipped" in result.stderr, result.stderr[-2000:]
    elif trains:
        _TRAINED[trains] = tmp_path_factory.mktemp("trained")
        copy_training(ws, _TRAINED[trains])
    kinds = [json.loads((p / "manifest.json").read_text())["kind"] for p in ws.iterdir() if not p.name.startswith(".")]
    assert set(kinds) == ({"train"} | set(doc["steps"])), kinds
    exports = len(doc["steps"]["export"]["targets"]) * len(doc["steps"]["export"]["precisions"])
    assert kinds.count("export") == exports
    assert "plot:" in result.stdout


def test_set_overrides_are_checked(tmp_path):
    main = REPO / "recipes" / "resnet18-fashion-int8-all.yaml"
    for item, needle in (("train.epochs", "expected KEY=VALUE"), ("train.epochs=-1", "steps.train.epochs"),
                         ("model.x=1", "model is not a mapping"), ("export.targets=[onnx", "not valid YAML"),
                         ("train.lr=nan", "steps.train.lr")):
        result = run_cli("run", str(main), "--dry-run", "--set", item, workspace=tmp_path / "ws")
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert needle in result.stderr, (item, result.stderr)


BASE = {"name": "t", "model": "resnet20", "steps": {"train": {"epochs": 1}, "quantize": {},
                                                    "export": {"targets": ["onnx"]}, "bench": {"devices": ["cpu"]}}}


def _with(**changes):
    recipe = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        node = recipe
        *path, last = dotted.split(".")
        for p in path:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return recipe


@pytest.mark.parametrize("recipe,needle", [
    ("name: [unclosed", "not valid YAML at line 1"),
    ("- just\n- a list\n", "must be a mapping"),
    (_with(colour="red"), "colour: unknown key"),
    (_with(**{"steps.quantize": {"calib_samples": "many"}}), "steps.quantize.calib_samples"),
    (_with(**{"steps.distill": {}}), "steps.distill: unknown key"),
    (_with(**{"steps.export": {"targets": ["coreml"]}}), "steps.export.targets.0"),
    (_with(**{"steps.export": {"targets": ["onnx"], "io": "float"}}), "io and edgetpu are TFLite options"),
    (_with(**{"steps.quantize": None}), "int8 but there is no quantize step"),
    (_with(**{"steps.bench": {"devices": ["toaster"]}}), "unknown device"),
    (_with(**{"steps.export": {"targets": ["onnx"]}, "steps.bench": {"devices": ["coral-edgetpu"]}}),
     "runs none of the export targets"),
    (_with(model="resnet19"), "unknown model"),
    (_with(data="/nonexistent/fashion"), "apt-get install dataset-fashion-mnist"),
    (yaml.safe_dump(BASE) + "model: resnet32\n", "key 'model' is given twice"),
    (yaml.safe_dump(BASE) + "# caf\xe9 in Latin-1\n", "not UTF-8"),
    (_with(**{"steps.bench": {"devices": ["cpu"], "min_runs": 10**12}}), "steps.bench.min_runs"),
])
def test_bad_recipes_are_refused_up_front(recipe, needle, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe), encoding="latin-1")
    result = run_cli("run", str(path), workspace=tmp_path / "ws")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert needle in result.stderr and str(path) in result.stderr, result.stderr
    assert not (tmp_path / "ws").exists()


SMALL = {
    "name": "small", "model": "resnet20",
    "steps": {
        "train": {"epochs": 1, "limit": 2000, "eval_limit": 200},  # the steps' reuse is tested, not accuracy
        "quantize": {"calib_samples": 64, "val_limit": 200, "eval_limit": 200},
        "export": {"targets": ["onnx", "openvino"], "precisions": ["fp32", "int8"], "verify": False},
        "bench": {"devices": ["cpu"], "eval_limit": 100, "min_runs": 5, "min_seconds": 0, "rounds": 1},
    },
}


def test_recipe_end_to_end_then_skips_then_reruns_from_a_step(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    first = run_cli("run", str(path), workspace=tmp_path / "ws")
    assert first.returncode == 0, first.stderr
    assert "onnx" in first.stdout and "plot:" in first.stdout
    kinds = sorted(p.name.split("-")[0] for p in (tmp_path / "ws").iterdir() if not p.name.startswith("."))
    assert kinds == ["bench", "export", "export", "export", "export", "quantize", "train"]

    again = run_cli("run", str(path), workspace=tmp_path / "ws")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("unchanged, skipped") == 4  # no step re-ran

    rerun = run_cli("run", str(path), "--from", "export", workspace=tmp_path / "ws")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("unchanged, skipped") == 2
    kinds = [p.name.split("-")[0] for p in (tmp_path / "ws").iterdir() if not p.name.startswith(".")]
    assert kinds.count("export") == 8 and kinds.count("bench") == 2


def test_interrupted_run_resumes_after_the_last_finished_step(tmp_path):
    path = tmp_path / "small.yaml"
    recipe = json.loads(json.dumps(SMALL))
    recipe["steps"]["export"]["targets"] = ["onnx", "openvino", "tflite"]
    path.write_text(yaml.safe_dump(recipe))
    ws = tmp_path / "ws"
    env = dict(os.environ, EDGERES_WORKSPACE=str(ws))
    proc = subprocess.Popen([sys.executable, "-m", "edgeres", "run", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=interruptible)
    state = ws / ".pipeline" / "small.json"
    deadline = time.time() + 600
    while time.time() < deadline and not (state.exists() and len(json.loads(state.read_text())) >= 2):
        time.sleep(0.5)
    time.sleep(2)  # inside the export step
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    finished = {p.name.split("-")[0] for p in ws.iterdir() if not p.name.startswith(".")}
    assert {"train", "quantize"} <= finished and "bench" not in finished
    resumed = run_cli("run", str(path), workspace=ws)
    assert resumed.returncode == 0, resumed.stderr
    assert "train: unchanged, skipped" in resumed.stderr and "quantize: unchanged, skipped" in resumed.stderr


def test_device_override_and_unknown_from_step(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    result = run_cli("run", str(path), "--from", "prune", "--dry-run", workspace=tmp_path / "ws")
    assert result.returncode != 0 and "not a step of recipe small" in result.stderr
    result = run_cli("run", str(path), "--device", "toaster", "--dry-run", workspace=tmp_path / "ws")
    assert result.returncode != 0 and "unknown device" in result.stderr


def test_the_cache_replays_nothing_stale(containers, public_checkpoint, tmp_path):
    """A step is reused only while its artifacts are intact and nothing it depends on changed: the
    data files, the weights' contents, the artifacts themselves."""
    import shutil

    data = tmp_path / "cifar"
    shutil.copytree(containers["cifar"], data)
    weights = tmp_path / "w.th"
    shutil.copy(public_checkpoint, weights)
    path = tmp_path / "imported.yaml"
    path.write_text(yaml.safe_dump({
        "name": "imported", "model": "resnet20", "dataset": "cifar10", "data": str(data), "weights": str(weights),
        "steps": {"import": {"eval_limit": 50},
                  "export": {"targets": ["onnx"], "precisions": ["fp32"], "verify_limit": 50}}}))
    ws = tmp_path / "ws"
    assert run_cli("run", str(path), workspace=ws).returncode == 0

    def plan() -> dict[str, str]:
        result = run_cli("run", str(path), "--dry-run", workspace=ws)
        assert result.returncode == 0, result.stderr
        return dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())

    assert plan() == {"import": "skip (unchanged)", "export": "skip (unchanged)"}
    export = next(p for p in ws.iterdir() if p.name.startswith("export-"))
    (export / "model.onnx").write_bytes(b"replaced by hand")
    assert plan() == {"import": "skip (unchanged)", "export": "run"}
    os.utime(data / "test_batch", ns=(1, 1))  # the data changed
    assert plan()["import"] == "run"
    os.utime(data / "test_batch")
    assert run_cli("run", str(path), workspace=ws).returncode == 0
    assert plan() == {"import": "skip (unchanged)", "export": "skip (unchanged)"}
    torch = pytest.importorskip("torch")
    torch.save(torch.load(weights, map_location="cpu"), weights)  # same weights, other bytes: re-import
    assert plan()["import"] == "run"
