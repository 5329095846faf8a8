"""Artifacts are atomic: complete and findable, or not there at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace


def test_create_writes_manifest_with_hashes(tmp_path):
    ws = Workspace(tmp_path)
    with ws.create("train", model="resnet20", dataset="fashion-mnist", config={"epochs": 1}) as art:
        (art.dir / "model.pt").write_bytes(b"weights")
    manifest = json.loads((art.artifact.path / "manifest.json").read_text())
    assert manifest["kind"] == "train" and manifest["config"] == {"epochs": 1}
    assert set(manifest["files"]) == {"model.pt"} and len(manifest["files"]["model.pt"]) == 64
    assert ws.latest("train", model="resnet20").id == art.artifact.id


def test_failure_leaves_nothing(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(RuntimeError):
        with ws.create("train", model="resnet20", dataset="fashion-mnist") as art:
            (art.dir / "half.pt").write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [] and ws.latest() is None


def test_killed_writer_leaves_no_artifact_and_is_cleaned(tmp_path):
    code = (
        "import os, sys\nfrom edgeres.workspace import Workspace\n"
        f"with Workspace({str(tmp_path)!r}).create('train', model='m', dataset='d') as a:\n"
        "    (a.dir / 'model.pt').write_bytes(b'x')\n    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code])
    leftovers = [p for p in tmp_path.iterdir()]
    assert leftovers and all(p.name.startswith(".tmp-") for p in leftovers)
    ws = Workspace(tmp_path)
    assert ws.latest() is None
    with ws.create("train", model="m", dataset="d"):
        pass
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_latest_is_newest_and_resolve_takes_prefixes(tmp_path):
    ws = Workspace(tmp_path)
    ids = []
    for _ in range(3):
        with ws.create("train", model="resnet20", dataset="fashion-mnist") as art:
            pass
        ids.append(art.artifact.id)
    assert ws.latest("train").id == ids[-1]
    assert ws.resolve(ids[0][:-1]).id == ids[0]
    with pytest.raises(EdgeresError, match="no artifact"):
        ws.resolve("nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_workspace_is_a_clear_error(tmp_path):
    tmp_path.chmod(0o500)
    with pytest.raises(EdgeresError, match="not writable"):
        with Workspace(tmp_path / "ws").create("train", model="m", dataset="d"):
            pass


def test_workspace_on_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeresError, match="not writable"):
        with Workspace(tmp_path / "file" / "ws").create("train", model="m", dataset="d"):
            pass


def _writer(root: str, index: int) -> str:
    """One of many processes: read the workspace, write an artifact of a few files, read again."""
    ws = Workspace(root)
    ws.artifacts()
    with ws.create("train", model=f"m{index}", dataset="d", config={"index": index}) as art:
        for name in ("model.pt", "notes.txt"):
            (art.dir / name).write_bytes(os.urandom(4096) + str(index).encode())
    ws.artifacts()
    return art.artifact.id


def test_twenty_concurrent_writers_corrupt_nothing(tmp_path):
    import multiprocessing

    from edgeres.workspace import MANIFEST, sha256

    with multiprocessing.get_context("spawn").Pool(20) as pool:
        ids = pool.starmap(_writer, [(str(tmp_path), i) for i in range(20)])
    assert len(set(ids)) == 20
    ws = Workspace(tmp_path)
    found = ws.artifacts("train")
    assert sorted(a.id for a in found) == sorted(ids)
    for artifact in found:
        manifest = json.loads((artifact.path / MANIFEST).read_text())
        assert manifest["config"]["index"] == int(manifest["model"][1:])
        assert {name: sha256(artifact.path / name) for name in manifest["files"]} == manifest["files"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _recorder(root: str, index: int) -> None:
    from edgeres.pipeline import _State
    from edgeres.recipe import Recipe

    recipe = Recipe.model_validate({"name": "r", "model": "resnet20", "steps": {"train": {}}})
    state = _State(Workspace(root), recipe)
    with Workspace(root).create("train", model="m", dataset="d") as art:
        pass
    state.record(f"key{index}", [art.artifact])


def test_concurrent_runs_of_one_recipe_keep_every_record(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.starmap(_recorder, [(str(tmp_path), i) for i in range(8)])
    state = json.loads((tmp_path / ".pipeline" / "r.json").read_text())
    assert sorted(state) == sorted(f"key{i}" for i in range(8))


def test_full_disk_during_a_write_keeps_nothing(tmp_path):
    """A file-size limit makes writes fail with EFBIG, as a full disk fails them with ENOSPC."""
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))\n"
        "from edgeres.cli.app import main\nmain()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "train", "resnet20", "--epochs", "0", "--eval-limit", "10",
                           "--workspace", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "could not write model.pt" in proc.stderr and "disk full" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_kill_9_during_training_leaves_no_artifact(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "edgeres", "train", "resnet20", "--epochs", "3", "--limit", "20000",
                             "--workspace", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir()):
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert Workspace(tmp_path).latest() is None  # the half-trained model is not an artifact
    info = subprocess.run([sys.executable, "-m", "edgeres", "info", "--workspace", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "train-" not in info.stdout
