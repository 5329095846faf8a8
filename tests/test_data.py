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


def test_test_split_validation_keeps_decisions_off_the_reported_images(tmp_path):
    _write_cifar(tmp_path)
    prep = Preprocessing(32, 3, data.CIFAR10.mean, data.CIFAR10.std)
    val = data.load_split("cifar10", "val", prep, tmp_path, validation="test-split").tensors[0]
    test = data.load_split("cifar10", "test", prep, tmp_path, validation="test-split").tensors[0]
    whole = data.load_split("cifar10", "test", prep, tmp_path).tensors[0]
    assert len(val) == 4 and len(test) == 16  # 20 % decide, 80 % report
    rows = {tuple(x.flatten()[:64].tolist()) for x in whole}
    assert {tuple(x.flatten()[:64].tolist()) for x in val} | {tuple(x.flatten()[:64].tolist()) for x in test} == rows
    assert not {tuple(x.flatten()[:64].tolist()) for x in val} & {tuple(x.flatten()[:64].tolist()) for x in test}
    train = data.load_split("cifar10", "train", prep, tmp_path, validation="test-split")
    assert len(train) == 100  # the imported model may have seen them all: nothing held out


def _folder(root, classes_by_split, size=(32, 32)):
    from PIL import Image

    for split, classes in classes_by_split.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", size, (40, 80, 120)).save(root / split / cls / "0.png")


@pytest.mark.parametrize("layout,needle", [
    ({"train": ["a", "b", "c"], "val": ["a", "c"]}, "missing in val/: b"),
    ({"train": ["a", "b"], "val": ["a", "b", "z"]}, "only in val/: z"),
    ({"train": ["only"], "val": ["only"]}, "a classifier needs at least two"),
])
def test_imagefolder_splits_must_hold_the_same_classes(layout, needle, tmp_path):
    _folder(tmp_path, layout)
    with pytest.raises(EdgeresError, match=needle):
        data.dataset_info("imagefolder", tmp_path)


def test_imagefolder_bad_files_are_named(tmp_path):
    _folder(tmp_path, {"train": ["a", "b"], "val": ["a", "b"]})
    (tmp_path / "val" / "b" / "0.png").unlink()
    prep = Preprocessing(32, 3, (0.5,), (0.5,))
    with pytest.raises(EdgeresError, match=r"class folder .*val/b holds no images"):
        data.load_split("imagefolder", "test", prep, tmp_path)
    (tmp_path / "val" / "b" / "broken.png").write_text("<html>not a png</html>")
    with pytest.raises(EdgeresError, match=r"cannot decode image .*broken.png"):
        data.as_tensors(data.load_split("imagefolder", "test", prep, tmp_path))


def test_images_at_the_input_size_are_untouched_and_others_resized_and_cropped():
    import torch

    prep = Preprocessing(32, 3, (0.0,), (1.0,))
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(data.to_input(image, prep), image.float() / 255)  # never resampled
    wide = data.to_input(torch.randint(0, 256, (1, 3, 40, 80), dtype=torch.uint8), prep.override(resize=36))
    assert wide.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="resize must lie"):
        prep.override(resize=16)


@pytest.mark.parametrize("batch,needle", [
    (["not", "a", "dict"], "not a dict"),
    ({"data": np.zeros((20, 3072), np.uint8), "labels": [0] * 19}, "20 images but 19 labels"),
    ({"data": np.zeros((20, 3072), np.uint8), "labels": [12] * 20}, r"labels must lie in \[0, 9\]"),
    ({"data": np.zeros((20, 100), np.uint8), "labels": [0] * 20}, "N x 3072 uint8"),
])
def test_malformed_cifar_batches_are_one_clear_error(batch, needle, tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump(batch, fh)
    with pytest.raises(EdgeresError, match=needle):
        data.load_split("cifar10", "test", Preprocessing(32, 3, (0.5,), (0.5,)), tmp_path)


def test_source_of_follows_the_lineage_and_refuses_switches(tmp_path):
    _write_cifar(tmp_path)
    source = data.open_source("cifar10", tmp_path)
    manifest = {"id": "train-x", "dataset": "cifar10", "data": source.to_manifest(), "classes": list(data.CIFAR10.classes)}
    assert data.source_of(manifest) == source
    with pytest.raises(EdgeresError, match="was made with cifar10, not fashion-mnist"):
        data.source_of(manifest, dataset="fashion-mnist")
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)
    with pytest.raises(EdgeresError) as err:
        data.source_of(manifest)
    assert str(tmp_path) in str(err.value) and "--data" in err.value.hint
    assert data.source_of(manifest, data_dir=moved).root == moved.resolve()


def test_a_dataset_that_would_not_fit_in_memory_is_refused_before_allocating():
    huge = Preprocessing(4096, 1, (0.5,), (0.5,))  # 10,000 test images: 671 GB as float tensors
    with pytest.raises(EdgeresError, match=r"10000 images at 4096x4096 need 671\.1 GB of memory"):
        data.load_split("fashion-mnist", "test", huge)
    assert len(data.load_split("fashion-mnist", "test", huge, limit=2)) == 2  # a few of them fit


def test_imagefolder_data_that_is_a_file_says_so(tmp_path):
    (tmp_path / "imgs.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(EdgeresError, match="is not a directory"):
        data.dataset_info("imagefolder", tmp_path / "imgs.zip")


def _fashion_folder(root, per_class: int, size: int):
    """Real Fashion-MNIST training images, upscaled to ``size`` (as photos are larger than the input), in
    an ImageFolder tree of ten classes."""
    from PIL import Image

    images, labels = data._load_fashion(None, True)
    for split in ("train", "val"):
        for label in range(10):
            folder = root / split / str(label)
            folder.mkdir(parents=True)
            for i, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
                Image.fromarray(images[index, 0]).resize((size, size)).save(folder / f"{i}.png")
    return root


def test_an_imagenet_layout_folder_trains_on_random_resized_crops_and_evaluates_deterministically(tmp_path):
    import torch

    root = _fashion_folder(tmp_path, per_class=3, size=48)
    prep = Preprocessing(32, 1, (0.286,), (0.353,), resize=36)  # the ImageNet habit: resize, center crop
    train = data.load_split("imagefolder", "train", prep, root, validation="test-split")
    view = data.training_view(train)
    assert view is not None and len(view) == len(train)
    first, again = view[5][0], view[5][0]
    assert first.shape == train[5][0].shape == (1, 32, 32) and view[5][1] == train[5][1]
    assert not torch.equal(first, again)  # a new crop each time it is read
    assert torch.equal(train[5][0], train[5][0])  # evaluation, calibration: the center crop, always
    subset = data.load_split("imagefolder", "train", prep, root, limit=7, validation="test-split")
    assert len(data.training_view(subset)) == 7
    assert data.training_view(data.load_split("imagefolder", "train", prep.override(resize=0), root,
                                              validation="test-split")) is None  # used at its size: shifts
    assert data.training_view(data.load_split("fashion-mnist", "train", PREP, limit=10)) is None


def test_a_broken_image_met_by_a_loader_worker_is_one_clear_message(tmp_path, monkeypatch):
    from edgeres import models
    from edgeres.train import TrainConfig, fit

    root = _fashion_folder(tmp_path, per_class=2, size=32)
    (root / "train" / "3" / "broken.png").write_text("<html>not a png</html>")
    monkeypatch.setattr(data, "loader_workers", lambda: 1)  # a worker process even on one core
    train = data.load_split("imagefolder", "train", Preprocessing(32, 1, (0.5,), (0.5,)), root,
                            validation="test-split")
    with pytest.raises(data.UnreadableImage) as caught:
        fit(models.build("resnet20", 10, 1), train, TrainConfig(epochs=1, batch_size=8))
    message = str(caught.value)
    assert message.startswith("cannot decode image ") and "broken.png" in message
    assert "Traceback" not in message and "worker" not in message and "hint: remove or replace" in message
