"""``edgeres tune`` on real Fashion-MNIST images with a shrunk search (two pruning ratios, two targets,
int8, subsets, one fine-tune epoch, one latency round): it finds a front and a chosen variant
within the budget; a search killed after its first candidate resumes without redoing it; bad input is one
clear error. The model is a small ResNet-20 at 16x16 trained here (the shared ``trained_workspace``
trains two models for minutes, more than this file's whole budget)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import interruptible, run_cli
from edgeres.workspace import Workspace

SEARCH = ["--ratio", "0.25", "--ratio", "0.5", "--target", "onnx", "--target", "openvino", "--precision", "int8",
          "--finetune-epochs", "1", "--limit", "1000", "--val-limit", "300",
          "--eval-limit", "200", "--rounds", "1", "--max-drop", "15"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgeres.train import TrainConfig, TrainRequest, run_train

    ws = Workspace(tmp_path_factory.mktemp("tune") / "ws")
    return ws, run_train(TrainRequest(model="resnet20", input_size=16, eval_limit=300,
                                      config=TrainConfig(epochs=2, limit=2000)), ws)


def _kinds(ws: Workspace) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for artifact in ws.artifacts():
        found.setdefault(artifact.kind, set()).add(artifact.id)
    return found


@pytest.fixture(scope="module")
def searches(trained):
    """The search killed (SIGKILL) once its first candidate is finished, the artifacts then, and the same
    command run again to the end (--json)."""
    ws, model = trained
    env = {**os.environ, "EDGERES_WORKSPACE": str(ws.root), "COLUMNS": "200"}
    child = subprocess.Popen([sys.executable, "-m", "edgeres", "tune", model.id, *SEARCH], env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    first = None
    for line in child.stderr:
        if line.startswith("candidate "):
            first = line.strip()
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stderr.close()
    assert first is not None, "the search never finished a candidate"
    before = _kinds(ws)
    done = run_cli("tune", model.id, *SEARCH, "--json", workspace=ws.root)
    assert done.returncode == 0, done.stderr[-3000:]
    return ws, first, before, json.loads(done.stdout), done.stderr


def test_front_and_choice_within_budget(searches):
    ws, _, _, doc, _ = searches
    results = doc["results"]
    measured = [c for c in results["candidates"] if c["status"] == "measured"]
    assert len(results["front"]) >= 2, results["front"]
    chosen = next(c for c in measured if c["name"] == results["chosen"])
    assert chosen["val_drop_pp"] <= results["max_drop_pp"]
    within = [c for c in measured if c["val_drop_pp"] <= results["max_drop_pp"]]
    assert chosen["p50_ms"] == min(c["p50_ms"] for c in within)  # the fastest within the budget
    assert {c["ratio"] for c in measured} >= {0.0, 0.25}  # pruned models were measured, not only estimated
    for c in results["candidates"]:
        assert c["why"], c  # every candidate says why it is (not) the one
    # accuracy and latency of a candidate come from one bench of its own file
    for c in measured:
        bench = ws.resolve(c["bench"])
        assert bench.manifest["config"]["exports"] == [c["export"]]
        row = json.loads((bench.path / "results.json").read_text())["rows"][1]
        assert row["artifact"] == c["export"] and row["p50_ms"] == c["p50_ms"] and row["top1"] == c["test_top1"]
    # the chosen file is in the tune artifact, named, and its lineage leads to the trained model
    tune = ws.resolve(doc["artifact"])
    shipped = [p for p in tune.path.iterdir() if p.suffix in (".onnx", ".xml")]
    assert len(shipped) == 1 and chosen["target"] in shipped[0].name and chosen["precision"] in shipped[0].name
    assert results["lineage"][0]["id"] == chosen["export"] and results["lineage"][-1]["kind"] == "train"
    assert (tune.path / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_killed_search_resumes_without_redoing(searches):
    ws, first, before, doc, log = searches
    results = doc["results"]
    name = first.split(":")[0].removeprefix("candidate ")
    again = next(c for c in results["candidates"] if c["name"] == name)
    assert again["reused"] is True and f"candidate {name}: reused" in log
    finished = set().union(*(before.get(k, set()) for k in ("prune", "quantize", "export", "bench")))
    assert finished and finished <= set(results["reused"]), (finished, results["reused"])
    assert not finished & set(results["made"])
    after = _kinds(ws)
    measured = [c for c in results["candidates"] if c["status"] == "measured"]
    assert len(after["bench"]) == len(measured)  # one bench per candidate: none measured twice
    assert len(after["export"]) == len(measured)


@pytest.mark.parametrize("args, says", [
    (["--device", "nosuchdevice", "--max-drop", "1"], "unknown device 'nosuchdevice'"),
    (["--max-drop", "-1"], "--max-drop -1.0: Input should be greater than or equal to 0"),
    (["--max-drop", "1", "--budget-minutes", "0"], "--budget-minutes 0.0: Input should be greater than 0"),
    ([], "missing option --max-drop"),
    (["--max-drop", "1", "--qat", "--precision", "fp32"], "qat makes int8 models"),
])
def test_bad_input_is_one_clear_error(tmp_path, args, says):
    result = run_cli("tune", "resnet20", *args, workspace=tmp_path / "ws")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and says in result.stderr, result.stderr
    assert result.stderr.startswith("error:") and not (tmp_path / "ws").exists()


def test_recipe_tune_step_reuses_the_search(searches, tmp_path):
    """A recipe's ``tune`` step with the same settings runs the same search: every piece is found again."""
    from edgeres import pipeline, recipe

    ws, _, _, doc, _ = searches
    path = tmp_path / "tune.yaml"
    path.write_text("name: tune-test\nmodel: resnet20\nsteps:\n  tune:\n    max_drop: 15\n    ratios: [0.25, 0.5]\n"
                    "    targets: [onnx, openvino]\n    precisions: [int8]\n    finetune_epochs: 1\n    limit: 1000\n"
                    "    val_limit: 300\n    eval_limit: 200\n    rounds: 1\n")
    outcome = pipeline.run(recipe.load(path), ws).outcomes
    assert [o.step for o in outcome] == ["tune"] and outcome[0].status == "ran"
    tune = ws.resolve(outcome[0].artifacts[0])
    results = json.loads((tune.path / "tune.json").read_text())
    assert results["made"] == [] and results["chosen"] == doc["results"]["chosen"]


QAT_SEARCH = ["--ratio", "0.5", "--target", "tflite", "--precision", "int8", "--precision", "fp16", "--qat",
              "--qat-epochs", "1", "--finetune-epochs", "0", "--limit", "500", "--val-limit", "200",
              "--eval-limit", "100", "--rounds", "1", "--max-drop", "5"]


def test_qat_fp16_tflite_and_an_interrupted_search(trained, tmp_path):
    """--qat adds a QAT int8 model beside the PTQ one, and TFLite fp16 files are searched too; Ctrl-C stops a
    search with one line and exit 130, and the next run goes on from the finished candidates."""
    import shutil

    _, model = trained
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(model.path, ws.root / model.path.name)
    env = {**os.environ, "EDGERES_WORKSPACE": str(ws.root), "COLUMNS": "200"}
    child = subprocess.Popen([sys.executable, "-m", "edgeres", "tune", model.id, *QAT_SEARCH], env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, preexec_fn=interruptible)
    lines = []
    for line in child.stderr:
        lines.append(line)
        if line.startswith("candidate "):
            child.send_signal(signal.SIGINT)  # Ctrl-C
            break
    lines += child.stderr.readlines()
    child.stderr.close()
    assert child.wait(timeout=120) == 130, "".join(lines[-20:])
    assert "Traceback" not in "".join(lines) and "interrupted" in lines[-1], lines[-3:]
    first = next(line for line in lines if line.startswith("candidate ")).split(":")[0].removeprefix("candidate ")

    done = run_cli("tune", model.id, *QAT_SEARCH, "--json", workspace=ws.root)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)["results"]
    by_name = {c["name"]: c for c in results["candidates"]}
    assert {"unpruned PTQ tflite int8", "unpruned QAT tflite int8", "unpruned tflite fp16"} <= set(by_name)
    assert by_name[first]["reused"] is True
    for name in ("unpruned PTQ tflite int8", "unpruned QAT tflite int8", "unpruned tflite fp16"):
        c = by_name[name]
        assert c["status"] == "measured" and c["p50_ms"] > 0 and 0 <= c["val_top1"] <= 100, c
        export = ws.resolve(c["export"])
        assert export.manifest["format"] == "tflite" and export.manifest["precision"] == c["precision"]
    qat = ws.parent_of(ws.resolve(by_name["unpruned QAT tflite int8"]["export"]))
    assert qat.kind == "quantize" and qat.manifest["method"] == "qat"
    ptq = ws.parent_of(ws.resolve(by_name["unpruned PTQ tflite int8"]["export"]))
    assert ptq.kind == "quantize" and ptq.manifest["method"] == "ptq" and ptq.id != qat.id
