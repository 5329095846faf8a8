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
    env["COLUMNS"] = "200"  # wide, so that no line wraps (an xdist worker has COLUMNS=80 set)
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


FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def fashion_as_rgb32(train: bool, count: int):
    """A seeded subset of real Fashion-MNIST images as 3-channel 32x32 uint8 (CIFAR's shape: the 28x28
    image centred with a 2-pixel black border, grey repeated), and their labels."""
    import numpy as np

    from edgeres import data

    images, labels = data._load_fashion(None, train)
    pick = np.sort(np.random.default_rng(7 if train else 8).permutation(len(images))[:count])
    rgb = np.zeros((count, 3, 32, 32), np.uint8)
    rgb[:, :, 2:30, 2:30] = images[pick]
    return rgb, labels[pick]


@pytest.fixture(scope="session")
def containers(tmp_path_factory) -> dict[str, Path]:
    """The same real Fashion-MNIST images in the two other containers edgeres reads: CIFAR-10 python
    batches (``cifar``: data_batch_1..5 of 400 images, test_batch of 1,000) and an ImageFolder tree
    (``imagefolder``: train/ and val/ PNGs, class folders sorted in label order)."""
    import pickle

    from PIL import Image

    root = tmp_path_factory.mktemp("containers")
    train_x, train_y = fashion_as_rgb32(True, 2000)
    test_x, test_y = fashion_as_rgb32(False, 1000)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    batches = {f"data_batch_{i + 1}": slice(400 * i, 400 * (i + 1)) for i in range(5)}
    for name, part in batches.items():
        with open(cifar / name, "wb") as fh:
            pickle.dump({"data": train_x[part].reshape(-1, 3072), "labels": train_y[part].tolist()}, fh)
    with open(cifar / "test_batch", "wb") as fh:
        pickle.dump({"data": test_x.reshape(-1, 3072), "labels": test_y.tolist()}, fh)
    tree = root / "imagefolder"
    for split, (x, y) in {"train": (train_x, train_y), "val": (test_x, test_y)}.items():
        for label, name in enumerate(FASHION_CLASSES):
            (tree / split / f"{label}-{name}").mkdir(parents=True)
        for i, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image.transpose(1, 2, 0)).save(tree / split / f"{label}-{FASHION_CLASSES[label]}" / f"{i:05d}.png")
    return {"cifar": cifar, "imagefolder": tree}


@pytest.fixture(scope="session")
def public_checkpoint(containers, tmp_path_factory) -> Path:
    """A CIFAR ResNet-20 trained briefly on the CIFAR-layout images, saved as the widely used public
    CIFAR checkpoints are: an older torch's (non-zip) file, a dict with ``state_dict`` and ``best_prec1``,
    DataParallel ``module.`` prefixes, no BatchNorm ``num_batches_tracked`` buffers."""
    import torch

    from edgeres import data, models
    from edgeres.preprocessing import Preprocessing
    from edgeres.train import TrainConfig, fit

    prep = Preprocessing(32, 3, CIFAR_MEAN, CIFAR_STD)
    model = models.build("resnet20", 10, 3)
    fit(model, data.load_split("cifar10", "train", prep, containers["cifar"]), TrainConfig(epochs=4, lr=0.05))
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("public") / "resnet20-public.th"
    torch.save({"state_dict": state, "best_prec1": 0.0, "epoch": 4}, path, _use_new_zipfile_serialization=False)
    return path
