"""Shared fixtures: real Fashion-MNIST data, small subsets, tiny epochs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("EDGERES_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
    pytest.exit(f"Fashion-MNIST is missing in {FASHION}: apt-get install dataset-fashion-mnist", returncode=4)


def run_cli(*args: str, workspace: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the real ``edgeres`` command in a subprocess (as a user would) and capture its output."""
    env = dict(os.environ)
    if workspace is not None:
        env["EDGERES_WORKSPACE"] = str(workspace)
    env.setdefault("COLUMNS", "200")
    return subprocess.run([sys.executable, "-m", "edgeres", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory) -> Path:
    """A workspace holding two small FP32 checkpoints trained on real Fashion-MNIST images:
    resnet20 (28x28) and resnet18 (32x32), each 3 epochs on 10,000 images (~85 % top-1: confident enough
    that int8 and exported files agree with them as they would with a fully trained model)."""
    from edgeres.train import TrainConfig, TrainRequest, run_train
    from edgeres.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("trained"))
    for name in ("resnet20", "resnet18"):
        run_train(TrainRequest(model=name, eval_limit=500, config=TrainConfig(epochs=3, limit=10000)), ws)
    return ws.root


def interruptible() -> None:
    """``preexec_fn`` for a child that a test stops with SIGINT: a shell that runs the tests in the
    background leaves SIGINT ignored, and Python keeps it so, which would make Ctrl-C a no-op."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
