"""The ssh device backend end to end against a real sshd on 127.0.0.1, and the local backend beside it.

The sshd (Debian openssh-server) runs as a module fixture on a free high port with a throw-away host key,
a throw-away client key and its own known_hosts file, all in a temp dir; the "device's" Python is this
venv's. Tests check behaviour and results, never speed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from conftest import run_cli
from edgeres import devices
from edgeres.backends import local, run_variant, ssh
from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace

SSHD = Path("/usr/sbin/sshd")
FAST = {"warmup": 1, "min_runs": 3, "min_seconds": 0.0, "max_runs": 10, "throughput_batch": 4}


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeres-test", "-f", str(path)],
                   check=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_sshd(d: Path):
    """A real sshd on 127.0.0.1 and a free port, accepting only a throw-away key (files in ``d``)."""
    if not SSHD.is_file():
        pytest.skip(f"{SSHD} is missing: apt-get install openssh-server")
    privsep = Path("/run/sshd")  # Debian's sshd refuses to start without it; its service would create it
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except PermissionError:
            pytest.skip(f"{privsep} is missing and cannot be created without root")
    host_key, client_key, other_key = keygen(d / "host_key"), keygen(d / "client_key"), keygen(d / "other_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
""")
    host_line = " ".join((d / "host_key.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_line}\n")
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
    try:
        yield SimpleNamespace(port=port, dir=d, client_key=client_key, other_key=other_key,
                              known_hosts=d / "known_hosts", pid=proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1 accepting only a throw-away key; stopped after the module."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def fake_python(directory: Path, hide: str) -> Path:
    """A Python on the "device" that lacks the package ``hide`` (its import fails as if not installed)."""
    shadow = directory / f"without-{hide}"
    (shadow / hide).mkdir(parents=True)
    (shadow / hide / "__init__.py").write_text(f"raise ImportError({f'No module named {hide!r}'!r})\n")
    script = directory / f"python-without-{hide}"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={shadow} exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return script


def profile(tmp_path: Path, sshd, **connection) -> devices.Profile:
    """An ssh profile for the loopback sshd, written and read back like a user's file."""
    workdir = tmp_path / "remote"
    workdir.mkdir(exist_ok=True)
    settings = {"type": "ssh", "host": "127.0.0.1", "user": getpass.getuser(), "port": sshd.port,
                "key": str(sshd.client_key), "python": sys.executable, "workdir": str(workdir),
                "known_hosts": str(sshd.known_hosts), "connect_timeout": 5, **connection}
    data = {"description": "loopback sshd", "arch": "native", "connection": settings,
            "runtimes": {"onnxruntime": {}, "openvino": {}}}
    path = tmp_path / "loopback.yaml"
    path.write_text(yaml.safe_dump(data))
    return devices.load(path)


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory) -> Path:
    """A tiny resnet20 as ONNX and as OpenVINO IR (.xml + .bin), and 32 evaluation images."""
    import openvino as ov
    import torch

    from edgeres import models

    d = tmp_path_factory.mktemp("job")
    model = models.build("resnet20", 10, 1).eval()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(1, 1, 28, 28), str(d / "model.onnx"), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    ov.save_model(ov.convert_model(d / "model.onnx"), d / "model.xml")
    rng = np.random.default_rng(0)
    np.savez(d / "eval.npz", x=rng.standard_normal((32, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, 32))
    return d


def job(name: str, file: str, runtime: str, method: dict | None = None, **options) -> dict:
    return {"variant": {"name": name, "file": file, "runtime": runtime, "options": {"threads": 1, **options}},
            "data": "eval.npz", "method": method or FAST}


ONNX = job("onnx-fp32", "model.onnx", "onnxruntime")
OPENVINO = job("openvino-fp32", "model.xml", "openvino")


def test_ssh_measures_the_same_as_local(tmp_path, sshd, job_dir):
    device = profile(tmp_path, sshd)
    for variant in (ONNX, OPENVINO):
        here = local.run_variant(devices.get("cpu"), job_dir, variant, timeout=120)
        there = run_variant(device, job_dir, variant, timeout=120)
        assert here["result"]["ok"] and there["result"]["ok"], (here["result"], there["result"])
        assert there["backend"] == "ssh" and here["backend"] == "local"
        assert there["result"]["predictions"] == here["result"]["predictions"]
        assert there["result"]["top1"] == here["result"]["top1"] and there["result"]["n"] == 32
        assert set(there["result"]["latency_ms"]) == {"p50", "p90", "p99", "mean", "min", "std", "runs"}
        assert there["result"]["latency_ms"]["runs"] >= FAST["min_runs"]
        assert there["result"]["throughput_batch"] == 4 and there["result"]["peak_rss_mb"] > 0
        assert there["host"]["cores"] and there["host"]["python"]
    assert list((tmp_path / "remote").iterdir()) == []  # every run dir was removed
    assert not list(job_dir.glob(".job-*"))  # the local backend cleaned up too


def test_remote_run_dir_is_private(tmp_path, sshd):
    device = profile(tmp_path, sshd)
    remote_dir = ssh._prepare(device.connection, timeout=30)
    try:
        assert stat.S_IMODE(Path(remote_dir).stat().st_mode) == 0o700
        assert Path(remote_dir).parent == tmp_path / "remote"
    finally:
        ssh._remove(device.connection, remote_dir, timeout=30)
    assert not Path(remote_dir).exists()


def test_runtime_missing_on_device_fails_that_variant_only(tmp_path, sshd, job_dir):
    device = profile(tmp_path, sshd, python=str(fake_python(tmp_path, "onnxruntime")))
    missing = run_variant(device, job_dir, ONNX, timeout=120)["result"]
    assert not missing["ok"] and "onnxruntime is not installed" in missing["error"]
    no_provider = run_variant(device, job_dir, job("qnn", "model.onnx", "onnxruntime",
                                                   provider="QNNExecutionProvider"), timeout=120)["result"]
    assert not no_provider["ok"]
    unknown = run_variant(device, job_dir, job("trt", "model.onnx", "tensorrt"), timeout=120)["result"]
    assert not unknown["ok"] and "no runtime for model.onnx" in unknown["error"]
    measured = run_variant(device, job_dir, OPENVINO, timeout=120)["result"]
    assert measured["ok"] and len(measured["predictions"]) == 32
    assert list((tmp_path / "remote").iterdir()) == []


def test_refused_port_is_a_clear_error(tmp_path, sshd, job_dir):
    with pytest.raises(EdgeresError, match="connection refused") as info:
        run_variant(profile(tmp_path, sshd, port=free_port()), job_dir, ONNX, timeout=60)
    assert "hint:" in str(info.value)


def test_wrong_key_is_an_auth_error(tmp_path, sshd, job_dir):
    with pytest.raises(EdgeresError, match="authentication .* failed"):
        run_variant(profile(tmp_path, sshd, key=str(sshd.other_key)), job_dir, ONNX, timeout=60)
    with pytest.raises(EdgeresError, match="does not exist"):
        run_variant(profile(tmp_path, sshd, key=str(tmp_path / "no-such-key")), job_dir, ONNX, timeout=60)


def test_host_keys_are_checked(tmp_path, sshd, job_dir):
    changed = tmp_path / "known_hosts_changed"
    forged = " ".join((sshd.other_key.with_suffix(".pub")).read_text().split()[:2])
    changed.write_text(f"[127.0.0.1]:{sshd.port} {forged}\n")
    with pytest.raises(EdgeresError, match="has changed"):
        run_variant(profile(tmp_path, sshd, known_hosts=str(changed)), job_dir, ONNX, timeout=60)
    # A changed key is refused even when new hosts may be accepted.
    with pytest.raises(EdgeresError, match="has changed"):
        run_variant(profile(tmp_path, sshd, known_hosts=str(changed), accept_new_host_key=True), job_dir, ONNX,
                    timeout=60)
    unknown = tmp_path / "known_hosts_empty"
    unknown.write_text("")
    with pytest.raises(EdgeresError, match="not in known_hosts"):
        run_variant(profile(tmp_path, sshd, known_hosts=str(unknown)), job_dir, ONNX, timeout=60)
    accepted = run_variant(profile(tmp_path, sshd, known_hosts=str(unknown), accept_new_host_key=True),
                           job_dir, ONNX, timeout=120)
    host_key = (sshd.dir / "host_key.pub").read_text().split()[1]
    assert accepted["result"]["ok"] and host_key in unknown.read_text()  # recorded (host name maybe hashed)


def test_device_without_python_or_numpy(tmp_path, sshd, job_dir):
    with pytest.raises(EdgeresError, match="python '/no/such/python3' is not found"):
        run_variant(profile(tmp_path, sshd, python="/no/such/python3"), job_dir, ONNX, timeout=60)
    with pytest.raises(EdgeresError, match="numpy is not installed"):
        run_variant(profile(tmp_path, sshd, python=str(fake_python(tmp_path, "numpy"))), job_dir, ONNX,
                    timeout=60)
    assert list((tmp_path / "remote").iterdir()) == []


def test_timeouts_stop_the_variant(tmp_path, sshd, job_dir):
    endless = job("slow", "model.onnx", "onnxruntime", method={**FAST, "min_seconds": 600, "max_runs": 10**9})
    there = run_variant(profile(tmp_path, sshd), job_dir, endless, timeout=3)["result"]
    assert not there["ok"] and "timed out" in there["error"]
    assert list((tmp_path / "remote").iterdir()) == []
    here = local.run_variant(devices.get("cpu"), job_dir, endless, timeout=3)["result"]
    assert not here["ok"] and "timed out" in here["error"]


def test_local_runner_reports_a_rejected_file(tmp_path, job_dir):
    (job_dir / "broken.onnx").write_bytes(b"not a model")
    result = local.run_variant(devices.get("cpu"), job_dir, job("broken", "broken.onnx", "onnxruntime"),
                               timeout=60)["result"]
    assert not result["ok"] and "cannot load broken.onnx" in result["error"]
    missing = ssh.run_variant(devices.get("raspberrypi"), job_dir, job("gone", "gone.onnx", "onnxruntime"), 60)
    assert not missing["result"]["ok"] and "gone.onnx" in missing["result"]["error"]
    no_reference = {**job("taps", "model.onnx", "onnxruntime"), "taps": {"outputs": {"logits": "logits"},
                                                                         "logits": "logits"}}
    result = local.run_variant(devices.get("cpu"), job_dir, no_reference, timeout=60)["result"]
    assert not result["ok"] and "lacks its outputs or reference tensors" in result["error"]
    unknown = local.run_variant(devices.get("cpu"), job_dir, {**job("profile", "model.onnx", "tensorrt"),
                                                               "profile": True}, timeout=60)["result"]
    assert not unknown["ok"] and "no runtime for model.onnx" in unknown["error"]


def _cut_connections(sshd, remote: Path, times: int) -> threading.Thread:
    """Kill the sshd session processes ``times`` times, each once a runner is at work under ``remote``:
    the client sees its connection dropped mid-run, as with a device that loses its network."""
    import psutil

    def cut():
        for _ in range(times):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not list(remote.glob("edgeres-*/job.json")):
                time.sleep(0.05)
            time.sleep(0.5)
            for child in psutil.Process(sshd.pid).children():
                child.kill()
            while time.monotonic() < deadline and list(remote.glob("edgeres-*/job.json")):
                time.sleep(0.05)  # the cut run's dir is removed before the next cut

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    return thread


def _wait_empty(directory: Path, seconds: float = 30) -> list[Path]:
    deadline = time.monotonic() + seconds
    while list(directory.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return list(directory.iterdir())


def test_dropped_connection_is_retried_and_leaves_nothing(tmp_path, sshd, job_dir):
    slow = job("slow", "model.onnx", "onnxruntime", method={**FAST, "min_seconds": 3.0, "max_runs": 10**6})
    cutter = _cut_connections(sshd, tmp_path / "remote", times=1)
    report = run_variant(profile(tmp_path, sshd), job_dir, slow, timeout=120)
    cutter.join(timeout=5)
    assert report["result"]["ok"] and report["retries"] == 1, report["result"]
    assert _wait_empty(tmp_path / "remote") == []  # the cut run's dir went too


def test_connection_dropping_every_time_gives_up_after_the_retries(tmp_path, sshd, job_dir):
    slow = job("slow", "model.onnx", "onnxruntime", method={**FAST, "min_seconds": 3.0, "max_runs": 10**6})
    cutter = _cut_connections(sshd, tmp_path / "remote", times=2)
    with pytest.raises(EdgeresError, match="dropped 2 time") as info:
        run_variant(profile(tmp_path, sshd, retries=1), job_dir, slow, timeout=120)
    cutter.join(timeout=5)
    assert "connection.retries" in str(info.value)
    assert _wait_empty(tmp_path / "remote") == []


@pytest.fixture(scope="module")
def onnx_workspace(trained_workspace, tmp_path_factory) -> Path:
    """The trained resnet20 exported to ONNX fp32 (verified on 50 images)."""
    from edgeres.export.step import ExportRequest, run_export

    root = tmp_path_factory.mktemp("ssh-bench") / "ws"
    shutil.copytree(trained_workspace, root)
    train = Workspace(root).latest("train", model="resnet20")
    run_export(ExportRequest(targets=["onnx"], precisions=["fp32"], model=train.id, verify_limit=50), Workspace(root))
    return root


def test_bench_over_ssh_end_to_end(tmp_path, sshd, onnx_workspace):
    """`edgeres bench --device PROFILE.yaml` on the loopback device: measured there, reported here,
    no secret in any report, nothing left on the device."""
    device = profile(tmp_path, sshd)
    proc = run_cli("bench", "--device", str(device.path), "--model", "resnet20", "--eval-limit", "50",
                   "--warmup", "1", "--min-runs", "3", "--min-seconds", "0", "--rounds", "2", workspace=onnx_workspace)
    assert proc.returncode == 0, proc.stderr
    bench = Workspace(onnx_workspace).latest("bench")
    base, row = bench.manifest["rows"]
    assert base["role"] == "baseline" and base["status"] == "measured"
    assert row["variant"] == "onnx fp32" and row["status"] == "measured" and row["n"] == 50
    assert row["top1"] == base["top1"]  # the same file on the same kind of CPU
    assert row["rounds"] == 2 and len(row["p50_rounds_ms"]) == 2  # the second round ran over ssh too
    assert bench.manifest["device"]["connection"] == f"ssh {getpass.getuser()}@127.0.0.1:{sshd.port}"
    private_key = sshd.client_key.read_text().split("\n")[1]
    for path in bench.path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".md"):
            text = path.read_text()
            assert str(sshd.client_key) not in text and private_key not in text, path
    assert str(sshd.client_key) not in proc.stdout + proc.stderr
    assert list((tmp_path / "remote").iterdir()) == []


def test_bench_trust_new_host_records_the_key(tmp_path, sshd, onnx_workspace):
    empty = tmp_path / "known_hosts_new"
    empty.write_text("")
    device = profile(tmp_path, sshd, known_hosts=str(empty))
    args = ("bench", "--device", str(device.path), "--model", "resnet20", "--eval-limit", "20", "--warmup", "0",
            "--min-runs", "1", "--min-seconds", "0", "--rounds", "1")
    refused = run_cli(*args, workspace=onnx_workspace)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "not in known_hosts" in refused.stderr and "--trust-new-host" in refused.stderr
    trusted = run_cli(*args, "--trust-new-host", workspace=onnx_workspace)
    assert trusted.returncode == 0, trusted.stderr
    assert (sshd.dir / "host_key.pub").read_text().split()[1] in empty.read_text()
    json.loads((Workspace(onnx_workspace).latest("bench").path / "results.json").read_text())


@pytest.mark.parametrize("key, value", [("host", "-oProxyCommand=touch /tmp/pwned"), ("host", "pi; rm -rf ~"),
                                        ("user", "-l root"), ("workdir", "-rf"), ("python", "python3\nrm -rf /")])
def test_values_reaching_ssh_are_validated(tmp_path, sshd, key, value):
    with pytest.raises(EdgeresError, match=f"connection.{key}"):
        profile(tmp_path, sshd, **{key: value})


def test_diagnose_over_ssh_profiles_the_file_on_the_device(tmp_path, sshd, onnx_workspace):
    """`edgeres diagnose --device PROFILE.yaml`: the runner profiles the file operator by operator on the
    device and runs it there on the test images, whose classes and tensors at every point agree with this
    host's run of the same file; nothing is left on the device."""
    device = profile(tmp_path, sshd)
    proc = run_cli("diagnose", "--device", str(device.path), "--images", "8", "--recover", "0", "--threads", "1",
                   "--json", workspace=onnx_workspace)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["report"]
    assert report["device"] == "loopback" and report["where"] == f"ssh {getpass.getuser()}@127.0.0.1:{sshd.port}"
    [f] = report["files"]
    assert (f["format"], f["precision"]) == ("onnx", "fp32")
    on_device = f["on_device"]
    assert on_device["kind"] == "measured" and on_device["images"] == 8
    assert on_device["agreement_with_this_host"] == 100.0  # the same file on the same kind of CPU
    assert on_device["top1"] == f["top1"]
    # every point's tensor, taken there and set against this host's there: the same file on the same kernels
    assert [r["point"] for r in on_device["layers"]] == report["points"]
    assert on_device["layers_min_sqnr_db"] >= 100 and all(r["cosine"] > 0.999999 for r in on_device["layers"])
    latency = report["latency"]
    assert latency["device"] == "loopback" and latency["threads"] == 1 and isinstance(latency["cpu"]["fast_int8"], bool)
    [profiled] = latency["files"]
    assert profiled["ops_p50_ms"] > 0 and profiled["p50_ms"] > 0 and "layer1.0" in profiled["by_block"]
    assert profiled["e2e_source"].startswith("onnxruntime profiler")
    assert list((tmp_path / "remote").iterdir()) == []


def test_diagnose_over_ssh_taps_an_openvino_ir_on_the_device(tmp_path, sshd, onnx_workspace):
    """An OpenVINO IR's tensors at every point, computed on the device from the tapped copy diagnose saves
    there (its weights kept at fp32), agree with this host's; nothing is left on the device."""
    from edgeres.export.step import ExportRequest, run_export

    shutil.copytree(onnx_workspace, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    run_export(ExportRequest(targets=["openvino"], precisions=["fp32"], model=ws.latest("train", model="resnet20").id,
                             verify=False), ws)
    device = profile(tmp_path, sshd)
    proc = run_cli("diagnose", "--device", str(device.path), "--target", "openvino", "--images", "8", "--recover",
                   "0", "--threads", "1", "--json", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["report"]
    [f] = report["files"]
    assert (f["format"], f["runtime"]) == ("openvino", "openvino")
    on_device = f["on_device"]
    assert "layers_unavailable" not in on_device and on_device["agreement_with_this_host"] == 100.0
    assert [r["point"] for r in on_device["layers"]] == report["points"]
    assert on_device["layers_min_sqnr_db"] >= 100 and all(r["cosine"] > 0.999999 for r in on_device["layers"])
    assert list((tmp_path / "remote").iterdir()) == []


def test_diagnose_refuses_a_format_the_device_does_not_run(tmp_path, sshd, onnx_workspace):
    device = profile(tmp_path, sshd)
    before = Workspace(onnx_workspace).artifacts("diagnose")
    proc = run_cli("diagnose", "--device", str(device.path), "--target", "tflite", workspace=onnx_workspace)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "device loopback does not run tflite" in proc.stderr and "its runtimes: onnxruntime, openvino" in proc.stderr
    assert Workspace(onnx_workspace).artifacts("diagnose") == before
