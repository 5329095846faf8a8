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
