"""A fleet of two real loopback sshd devices (two ports) benched in one run, one of them cut mid-run."""

from __future__ import annotations

import getpass
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from edgeres.workspace import Workspace
from test_ssh_backend import running_sshd

FAST = ("--eval-limit", "50", "--warmup", "1", "--min-runs", "3", "--min-seconds", "1", "--rounds", "2")


@pytest.fixture(scope="module")
def onnx_workspace(tmp_path_factory) -> Path:
    """A briefly trained resnet20 exported to ONNX fp32."""
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.train import TrainConfig, TrainRequest, run_train

    ws = Workspace(tmp_path_factory.mktemp("fleet") / "ws")
    train = run_train(TrainRequest(model="resnet20", eval_limit=100, config=TrainConfig(epochs=1, limit=256)), ws)
    run_export(ExportRequest(targets=["onnx"], precisions=["fp32"], model=train.id, verify_limit=20), ws)
    return ws.root


def _device(directory: Path, name: str, server) -> Path:
    """A device profile for a loopback sshd, written as a user would."""
    remote = directory / f"{name}-remote"
    remote.mkdir()
    connection = {"type": "ssh", "host": "127.0.0.1", "user": getpass.getuser(), "port": server.port,
                  "key": str(server.client_key), "python": sys.executable, "workdir": str(remote),
                  "known_hosts": str(server.known_hosts), "connect_timeout": 5, "retries": 1}
    (directory / f"{name}.yaml").write_text(yaml.safe_dump({
        "description": f"loopback sshd {name}", "arch": "native", "connection": connection,
        "runtimes": {"onnxruntime": {}}}))
    return remote


def _cut_when_busy(server, remote: Path) -> threading.Thread:
    """Stop the whole sshd (listener and sessions) once a runner is at work under ``remote``: a device
    that drops off the network mid-run and stays away."""
    import psutil

    def cut():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(remote.glob("edgeres-*/job.json")):
            time.sleep(0.05)
        time.sleep(0.5)
        listener = psutil.Process(server.pid)
        sessions = listener.children(recursive=True)  # the connections, and the runner under them
        listener.kill()
        for session in sessions:
            try:
                session.kill()
            except psutil.Error:
                pass

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    return thread


def test_a_fleet_of_two_devices_is_one_report_and_a_cut_device_does_not_stop_the_other(tmp_path, onnx_workspace):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_sshd(tmp_path / "a") as a, running_sshd(tmp_path / "b") as b:
        assert a.port != b.port
        profiles = tmp_path / "devices"
        profiles.mkdir()
        remote_a, remote_b = _device(profiles, "board-a", a), _device(profiles, "board-b", b)
        cutter = _cut_when_busy(b, remote_b)
        # the cut device first: the fleet must go on after it
        proc = run_cli("bench", "--devices-dir", str(profiles), "--device", "board-b", "--device", "board-a",
                       "--model", "resnet20", *FAST, workspace=onnx_workspace)
        cutter.join(timeout=5)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "failed device board-b" in proc.stderr
    benches = Workspace(onnx_workspace).artifacts("bench")
    fleet = benches[0]  # the newest: the fleet's one report
    results = fleet.manifest
    assert results["device"]["name"] == "fleet" and (fleet.path / "results.md").is_file()
    status = {f["device"]: f for f in results["fleet"]}
    assert status["board-b"]["status"] == "failed" and status["board-b"]["error"]
    assert status["board-a"]["status"] == "measured" and status["board-a"]["failed_rows"] == 0
    assert any("device board-b failed" in w for w in results["warnings"])
    # one row group per device benched: the baseline, then board-a's rows, all complete
    base, *rows = results["rows"]
    assert base["role"] == "baseline" and base["status"] == "measured"
    assert rows and {r["group"] for r in rows} == {"board-a"} and {r["where"] for r in rows} == {"board-a"}
    for row in rows:
        assert row["status"] == "measured" and row["rounds"] == 2 and row["n"] == 50, row
        assert row["top1"] == base["top1"]  # the same network on the same kind of CPU
    # board-a also has its own bench artifact, the one the fleet quotes; board-b none
    own = [b for b in benches[1:] if b.manifest["device"]["name"] == "board-a"]
    assert [b.id for b in own] == [status["board-a"]["artifact"]]
    assert not [b for b in benches if b.manifest["device"]["name"] == "board-b"]
    assert "@ board-a" in proc.stdout  # the table shows each row's device
    assert list(remote_a.iterdir()) == []  # nothing left on the device that stayed


def test_a_fleet_with_an_unknown_device_stops_before_any_work(tmp_path, onnx_workspace):
    before = len(Workspace(onnx_workspace).artifacts("bench"))
    proc = run_cli("bench", "--device", "cpu", "--device", "no-such-board", "--model", "resnet20", *FAST,
                   workspace=onnx_workspace)
    assert proc.returncode != 0 and "no-such-board" in proc.stderr and "Traceback" not in proc.stderr
    assert "measuring" not in proc.stderr
    assert len(Workspace(onnx_workspace).artifacts("bench")) == before
