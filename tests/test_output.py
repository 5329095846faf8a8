"""Output for people and for programs: --json documents, tables that never cut a value, one-line error summaries."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeres.errors import first_line


@pytest.mark.parametrize("exc, expected", [
    (RuntimeError(), "RuntimeError"),
    (ValueError("  \n\n"), "ValueError"),
    (OSError("\n  first  \nsecond"), "first"),
    (KeyError("k"), "'k'"),
])
def test_first_line_is_never_empty(exc, expected):
    from edgeres.runtimes.base import first_line as runtimes_first_line  # its twin shipped to devices

    assert first_line(exc) == expected == runtimes_first_line(exc)
    assert first_line(RuntimeError("x" * 500), 200) == "x" * 200


def test_an_empty_error_message_is_reported_not_a_traceback(tmp_path):
    """A model whose export raises an exception without text still ends in one EdgeresError naming it."""
    import torch

    from edgeres.errors import EdgeresError
    from edgeres.export.onnx import torch_to_onnx

    class Silent(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError()

    with pytest.raises(EdgeresError, match="ONNX export failed: RuntimeError"):
        torch_to_onnx(Silent(), tmp_path / "m.onnx", (1, 1, 8, 8))
    assert not (tmp_path / "m.onnx").exists()


# -- --json: one document on stdout, nothing else -------------------------------------------------------
def invoke(*args: str, workspace=None):
    """The edgeres command in this process: exit code, stdout and stderr apart."""
    from typer.testing import CliRunner

    from edgeres.cli.app import app

    extra = ["--workspace", str(workspace)] if workspace is not None else []
    result = CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "80"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_models_json():
    code, out, _ = invoke("models", "resnet2*", "--json")
    models = json.loads(out)["models"]
    assert code == 0 and [m["name"] for m in models] == ["resnet20"]
    assert models[0] == {"name": "resnet20", "family": "cifar", "depth": 20, "default_epochs": 8,
                         "description": models[0]["description"], "imagenet_weights": None}
    assert json.loads(invoke("models", "resnet18", "--json")[1])["models"][0]["imagenet_weights"].endswith(".pth")


def test_devices_json():
    code, out, _ = invoke("devices", "--json")
    devices = {d["name"]: d for d in json.loads(out)["devices"]}
    assert code == 0 and {"cpu", "raspberrypi"} <= set(devices)
    cpu, pi = devices["cpu"], devices["raspberrypi"]
    assert cpu["usable"] is True and {"runtime": "onnxruntime", "detail": "CPUExecutionProvider"} in cpu["runtimes"]
    assert pi["arch"] == "aarch64" and pi["verified_on_hardware"] is False and isinstance(pi["usable"], bool)
    assert pi["emulation"] is not None and set(pi["emulation"]) == {"usable", "why"} and pi["user"] is False


def _workspace(root) -> dict[str, str]:
    """small_workspace's artifacts (train, export, bench), the train one with a test top-1 of its own."""
    from test_workspace import MODEL, small_workspace

    from edgeres.workspace import Workspace

    ids = small_workspace(root)
    with Workspace(root).create("train", model="resnet110", dataset="fashion-mnist", metrics={"test": {"top1": 92.3456}},
                                **MODEL) as art:
        (art.dir / "model.pt").write_bytes(b"weights")
    return {**ids, "scored": art.artifact.id}


def test_info_json_lists_and_shows(tmp_path):
    ids = _workspace(tmp_path)
    code, out, _ = invoke("info", "--json", workspace=tmp_path)
    listing = json.loads(out)
    assert code == 0 and listing["workspace"] == str(tmp_path)
    by_id = {a["id"]: a for a in listing["artifacts"]}
    assert set(by_id) == set(ids.values())
    assert by_id[ids["scored"]]["top1"] == 92.3456 and by_id[ids["scored"]]["model"] == "resnet110"
    assert by_id[ids["export"]]["format"] == "openvino" and by_id[ids["export"]]["parent"] == ids["train"]

    code, out, _ = invoke("info", ids["export"], "--json", workspace=tmp_path)
    one = json.loads(out)
    assert code == 0 and one["id"] == ids["export"] and one["files_ok"] is True and one["problem"] is None
    assert set(one["manifest"]["files"]) == {"model.xml", "model.bin"}

    (tmp_path / ids["export"] / "model.bin").write_bytes(b"changed")  # still shown, and the exit says so
    code, out, err = invoke("info", ids["export"], "--json", workspace=tmp_path)
    one = json.loads(out)
    assert code == 1 and one["files_ok"] is False and "model.bin" in one["problem"] and "model.bin" in err


def test_report_json(tmp_path):
    from test_workspace import BENCH_RESULTS

    ids = _workspace(tmp_path)
    code, out, err = invoke("report", "--json", workspace=tmp_path)
    doc = json.loads(out)
    assert code == 0 and doc["artifact"] == ids["bench"] and doc["path"] == str(tmp_path / ids["bench"])
    assert [r["variant"] for r in doc["results"]["rows"]] == [r["variant"] for r in BENCH_RESULTS["rows"]]
    assert doc["results"]["rows"][0]["p50_ms"] == 65.613 and doc["results"]["device"]["name"] == "raspberrypi"
    assert set(doc["files"]) == {"json", "csv", "md", "png"} and all(Path(p).is_file() for p in doc["files"].values())
    assert "re-wrote the reports" in err


# -- tables never cut a name or a number --------------------------------------------------------------
def piped(*args: str, workspace=None) -> str:
    """stdout of the real command through a pipe, at the 80 columns a non-terminal gets."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = "80"
    if workspace is not None:
        env["EDGERES_WORKSPACE"] = str(workspace)
    proc = subprocess.run([sys.executable, "-m", "edgeres", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_piped_tables_hold_whole_values(tmp_path):
    ids = _workspace(tmp_path)
    lines = piped("info", workspace=tmp_path).splitlines()
    assert lines[0].split("\t") == ["kind", "model", "dataset", "precision", "top-1 %", "id"]
    rows = {line.split("\t")[-1]: line.split("\t") for line in lines[1:]}
    assert set(rows) == set(ids.values())  # whole ids, one row per line
    assert rows[ids["scored"]][1:5] == ["resnet110", "fashion-mnist", "", "92.35"]

    report = piped("report", workspace=tmp_path)
    assert "65.613" in report and "78.397" in report and "onnxruntime / CPUExecutionProvider" in report
    assert "…" not in report and "estimated (top-1 on this host)" in report

    devices = [line.split("\t") for line in piped("devices").splitlines()]
    pi = next(row for row in devices if row[0] == "raspberrypi")  # `edgeres devices | grep raspberrypi`
    assert pi[2] == "aarch64" and "onnxruntime (CPUExecutionProvider)" in pi[4]
    assert "…" not in json.dumps(devices)


def test_a_table_on_a_terminal_folds_rather_than_cuts():
    from rich.console import Console

    from edgeres import console

    shown = console.table("name", "top-1 %")
    shown.add_row("raspberrypi-with-a-long-name", "92.3456")
    terminal = Console(width=20, force_terminal=True, color_system=None, file=io.StringIO())
    saved, console.out = console.out, terminal
    try:
        console.show(shown)
    finally:
        console.out = saved
    rows = [line.split("│")[1:3] for line in terminal.file.getvalue().splitlines() if line.startswith("│")]
    assert len(rows) > 1  # folded onto more lines, every character kept
    assert ["".join(cell.strip() for cell in column) for column in zip(*rows)] == ["raspberrypi-with-a-long-name",
                                                                                  "92.3456"]


# -- status: lines in a log, silence under --quiet, warnings always ---------------------------------------
def test_progress_off_a_terminal_prints_a_line_per_step(capsys):
    from edgeres.console import progress, progress_line

    with progress() as bar:
        task = bar.add_task("sensitivity", total=2, status="")
        bar.update(task, advance=1, status="layer1.0.conv1")
        bar.advance(task)
    with progress(log=False) as bar:  # the caller prints its own lines (training: per epoch)
        bar.update(bar.add_task("train", total=3, status=""), advance=1, status="loss 2.3")
    progress_line("train: epoch 1/1")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["sensitivity: 1/2 layer1.0.conv1", "sensitivity: 2/2 layer1.0.conv1", "train: epoch 1/1"]


def test_quiet_keeps_warnings_and_results(tmp_path):
    ids = _workspace(tmp_path)
    code, out, err = invoke("--quiet", "report", workspace=tmp_path)
    assert code == 0 and "65.613" in out and "using " not in err  # Workspace.pick's status line is gone
    code, out, err = invoke("report", workspace=tmp_path)
    assert code == 0 and "using " + ids["bench"] in err  # and back without --quiet


def test_version_is_the_package_version():
    from edgeres import __version__

    code, out, _ = invoke("--version")
    assert code == 0 and out.strip() == f"edgeres {__version__}"


@pytest.mark.slow
def test_bench_json_and_piped_table(tmp_path):
    """A real (tiny) bench: --json is one document holding the rows the table shows in full."""
    piped("train", "resnet20", "--epochs", "0", "--eval-limit", "50", workspace=tmp_path)
    piped("export", "--target", "onnx", "--precision", "fp32", "--verify-limit", "50", workspace=tmp_path)
    args = ("bench", "--device", "cpu", "--eval-limit", "50", "--min-runs", "2", "--min-seconds", "0",
            "--warmup", "0", "--rounds", "1")
    doc = json.loads(piped(*args, "--json", workspace=tmp_path))
    rows = doc["results"]["rows"]
    assert [(r["variant"], r["role"], r["status"]) for r in rows] == [
        ("torch fp32 (cpu)", "baseline", "measured"), ("onnx fp32", "variant", "measured")]
    assert doc["artifact"].startswith("bench-resnet20-") and Path(doc["files"]["json"]).is_file()
    assert json.loads(Path(doc["files"]["json"]).read_text())["rows"] == rows
    table = [line.split("\t") for line in piped("report", doc["artifact"], workspace=tmp_path).splitlines()]
    onnx = next(row for row in table if row[0] == "onnx fp32")
    assert onnx[3] == f"{rows[1]['top1']:.2f}" and onnx[5] == f"{rows[1]['p50_ms']:.3f}"
