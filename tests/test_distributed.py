"""Training under DDP with real torchrun processes and gloo on the CPU, its fault tolerance (an epoch
checkpoint in the pending artifact: torchrun's elastic restart and ``--resume``), and its bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from edgeres.workspace import Workspace

# a small, real run: ResNet-20 on 512 Fashion-MNIST images, global batch 64 (8 steps an epoch)
SMALL = ("train", "resnet20", "--limit", "512", "--batch-size", "64", "--lr", "0.05", "--eval-limit", "200")


def _only_artifact(root: Path):
    artifacts = Workspace(root).artifacts()
    assert len(artifacts) == 1, [a.id for a in artifacts]
    assert not list(root.glob(".pending-*")) and not list(root.glob(".tmp-*")), list(root.iterdir())
    return artifacts[0]


def _start(args: list[str], workspace: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "EDGERES_WORKSPACE": str(workspace), "COLUMNS": "200"}
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_for_checkpoint(workspace: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not list(workspace.glob(".pending-*/checkpoint.pt")):
        assert proc.poll() is None, "the run ended before its first epoch checkpoint"
        assert time.monotonic() < deadline, "no epoch checkpoint appeared"
        time.sleep(0.1)


def _history(artifact) -> list[dict]:
    return [r for r in artifact.manifest["metrics"]["history"] if r["epoch"] > 0]


def test_two_gloo_processes_write_one_artifact_that_matches_one_process(tmp_path):
    one = run_cli(*SMALL, "--epochs", "2", workspace=tmp_path / "one")
    two = run_cli(*SMALL, "--epochs", "2", "--nproc", "2", workspace=tmp_path / "two")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a1, a2 = _only_artifact(tmp_path / "one"), _only_artifact(tmp_path / "two")  # written once, by rank 0
    assert two.stdout.strip() == str(a2.path)  # only rank 0 prints the path
    assert two.stderr.count("epoch 2/2") == 1  # and the progress lines
    m1, m2 = a1.manifest["metrics"], a2.manifest["metrics"]
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["train_images"] == m2["train_images"] == 512
    # the same global batch, steps and schedule from the same seeded weights: the loss follows the one
    # process's (they differ by BatchNorm's per-process statistics and the augmentation's draws)
    for r1, r2 in zip(_history(a1), _history(a2), strict=True):
        assert abs(r1["loss"] - r2["loss"]) < 0.15, (r1, r2)
    # both learn (chance is 10 %), and within the noise of 2 short epochs and 200 test images
    top1 = m1["test"]["top1"], m2["test"]["top1"]
    assert min(top1) > 20 and abs(top1[0] - top1[1]) < 20, top1


def _worker_of_rank(launcher: int, rank: int) -> int:
    """The pid of torchrun's worker process of ``rank`` (a child of the launcher, RANK in its environment)."""
    import psutil

    for child in psutil.Process(launcher).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "edgeres" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no worker of rank {rank}")


def test_a_rank_killed_mid_run_is_restarted_by_torchrun_and_resumes_from_the_last_epoch(tmp_path):
    ws = tmp_path / "ws"
    log = tmp_path / "log"
    proc = _start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                   "--max-restarts", "1", "-m", "edgeres", *SMALL, "--epochs", "2"], ws, log)
    try:
        _wait_for_checkpoint(ws, proc)
        os.kill(_worker_of_rank(proc.pid, 1), signal.SIGKILL)
        assert proc.wait(timeout=600) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    artifact = _only_artifact(ws)
    metrics = artifact.manifest["metrics"]
    resumed = metrics["resumed_after_epochs"]
    assert resumed == [1], (resumed, text)  # from the epoch checkpoint, not from zero
    assert "resuming after epoch 1/2" in text
    assert [r["epoch"] for r in _history(artifact)] == [1, 2]
    assert metrics["processes"] == 2 and metrics["test"]["top1"] > 20


def test_resume_after_a_killed_process_continues_exactly_where_it_stopped(tmp_path):
    args = [*SMALL, "--limit", "256", "--epochs", "2"]  # the later --limit wins: 4 steps an epoch
    whole = run_cli(*args, workspace=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    ws = tmp_path / "ws"
    proc = _start([sys.executable, "-m", "edgeres", *args], ws, tmp_path / "log")
    try:
        _wait_for_checkpoint(ws, proc)
        proc.send_signal(signal.SIGKILL)  # a machine-level interruption: nothing runs after it
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert Workspace(ws).artifacts() == []  # nothing a later step would pick up
    again = run_cli(*args, "--resume", workspace=ws)
    assert again.returncode == 0, again.stderr
    resumed, reference = _only_artifact(ws), _only_artifact(tmp_path / "whole")
    assert resumed.manifest["metrics"]["resumed_after_epochs"] == [1]
    assert "resuming after epoch 1/2" in again.stderr
    # model, optimizer, schedule and random generators restored: the very same run as one without a kill
    for r, w in zip(_history(resumed), _history(reference), strict=True):
        assert r["loss"] == pytest.approx(w["loss"], rel=1e-4), (r, w)
        assert r["val_top1"] == pytest.approx(w["val_top1"], abs=1.0)
    assert resumed.manifest["metrics"]["test"]["top1"] == pytest.approx(
        reference.manifest["metrics"]["test"]["top1"], abs=1.0)


@pytest.mark.parametrize("args, needle", [
    (("--nproc", "0"), "--nproc 0: this machine runs 1 to"),
    (("--nproc", "100000"), "--nproc 100000: this machine runs 1 to"),
    (("--resume",), "nothing to resume"),
])
def test_bad_distributed_input_is_one_clear_message(tmp_path, args, needle):
    result = run_cli(*SMALL, "--epochs", "1", *args, workspace=tmp_path)
    assert result.returncode != 0
    assert needle in result.stderr and "hint:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not tmp_path.exists() or not any(p for p in tmp_path.iterdir() if p.name != ".cache"), \
        list(tmp_path.iterdir())


def test_prune_fine_tuning_and_qat_run_as_ddp_and_write_one_artifact(tmp_path):
    ws = tmp_path / "ws"
    assert run_cli(*SMALL, "--epochs", "1", workspace=ws).returncode == 0
    before = {a.id for a in Workspace(ws).artifacts()}
    ptq = run_cli("quantize", "resnet20", "--int8", "--nproc", "2", workspace=ws)
    assert ptq.returncode != 0 and "add --qat" in ptq.stderr and "Traceback" not in ptq.stderr
    steps = {"prune": ("prune", "resnet20", "--ratio", "0.5", "--finetune-epochs", "1", "--limit", "256",
                       "--val-limit", "100", "--eval-limit", "100", "--nproc", "2"),
             "quantize": ("quantize", "resnet20", "--int8", "--qat", "--epochs", "1", "--train-limit", "256",
                          "--calib-samples", "32", "--val-limit", "100", "--eval-limit", "100", "--nproc", "2")}
    for kind, args in steps.items():
        result = run_cli(*args, workspace=ws)
        assert result.returncode == 0, result.stderr[-2000:]
        new = [a for a in Workspace(ws).artifacts() if a.id not in before]
        assert [a.kind for a in new] == [kind], [a.id for a in new]  # written once, by rank 0
        assert result.stdout.strip() == str(new[0].path)  # printed once
        assert result.stderr.count("epoch 1/1") == 1  # rank 0's progress only
        before.add(new[0].id)
    assert not list(ws.glob(".pending-*")) and not list(ws.glob(".tmp-*"))


def test_an_image_folder_streams_to_two_processes(containers, tmp_path):
    """Images decoded as they train (not loaded whole), each rank reading its shard of every batch."""
    args = ("train", "resnet20", "--dataset", "imagefolder", "--data", str(containers["imagefolder"]), "--limit",
            "256", "--batch-size", "64", "--lr", "0.05", "--eval-limit", "100", "--epochs", "1")
    result = run_cli(*args, "--nproc", "2", workspace=tmp_path / "ws")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = _only_artifact(tmp_path / "ws").manifest["metrics"]
    assert metrics["processes"] == 2 and metrics["train_images"] == 256 and metrics["test"]["n"] == 100
