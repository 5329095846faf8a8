"""Datasets: real Fashion-MNIST, CIFAR-10 in its pickle format, image folders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgeres import data
from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing

PREP = Preprocessing(32, 1, (0.286,), (0.353,))


def test_fashion_mnist_splits_are_disjoint_and_complete():
    images, _ = data._load_fashion(None, True)
    train_idx, val_idx = data._train_val_indices(len(images))
    assert len(train_idx) == 55000 and len(val_idx) == 5000
    assert not set(train_idx) & set(val_idx)
    test = data.load_split("fashion-mnist", "test", PREP)
    assert len(test) == 10000


def test_preprocessing_resizes_and_normalizes():
    x, y = data.as_tensors(data.load_split("fashion-mnist", "test", PREP, limit=256))
    assert x.shape == (256, 1, 32, 32) and y.shape == (256,)
    assert abs(float(x.mean())) < 0.3 and 0.6 < float(x.std()) < 1.4  # roughly standardized
    rgb = data.load_split("fashion-mnist", "test", Preprocessing(28, 3, (0.5,), (0.5,)), limit=4)
    assert rgb.tensors[0].shape == (4, 3, 28, 28)


def test_limit_is_seeded_and_repeatable():
    a = data.load_split("fashion-mnist", "train", PREP, limit=50).tensors[1]
    b = data.load_split("fashion-mnist", "train", PREP, limit=50).tensors[1]
    assert (a == b).all()


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(EdgeresError) as err:
        data.load_split("fashion-mnist", "test", PREP, tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)


def test_corrupt_idx_file_is_a_clear_error(tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(EdgeresError, match="cannot read"):
        data.load_split("fashion-mnist", "test", PREP, tmp_path)


def _write_cifar(root):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.integers(0, 10, 20)]}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_pickle_batches_load(tmp_path):
    _write_cifar(tmp_path)
    prep = Preprocessing(32, 3, data.CIFAR10.mean, data.CIFAR10.std)
    assert len(data.load_split("cifar10", "train", prep, tmp_path)) + len(data.load_split("cifar10", "val", prep, tmp_path)) == 100
    assert data.load_split("cifar10", "test", prep, tmp_path).tensors[0].shape == (20, 3, 32, 32)


def test_cifar10_refuses_pickled_code(tmp_path):
    _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({"data": Evil(), "labels": []}, fh)
    with pytest.raises(EdgeresError, match="refusing"):
        data.load_split("cifar10", "test", Preprocessing(32, 3, (0.5,), (0.5,)), tmp_path)


def test_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(tmp_path / split / cls / f"{i}.png")
    info = data.dataset_info("imagefolder", tmp_path)
    assert info.classes == ("cat", "dog")
    prep = Preprocessing(32, 3, data.IMAGENET_MEAN, data.IMAGENET_STD)
    x, y = data.as_tensors(data.load_split("imagefolder", "test", prep, tmp_path))
    assert x.shape == (12, 3, 32, 32) and sorted(set(y.tolist())) == [0, 1]
    assert len(data.load_split("imagefolder", "train", prep, tmp_path)) == 11


def test_imagefolder_without_val_is_refused(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(EdgeresError, match="no val/"):
        data.dataset_info("imagefolder", tmp_path)
