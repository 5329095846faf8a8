"""Datasets: Fashion-MNIST (the embedded default), CIFAR-10 and ImageNet-style image folders.

Each dataset gives ``train``, ``val`` and ``test`` splits as torch datasets of already preprocessed
tensors (``Preprocessing``). ``val`` is a fixed, seeded slice held out of the training images, used to
pick the best epoch; ``train`` is the rest; ``test`` is the official test split, used for every
reported accuracy. Fashion-MNIST and CIFAR-10 are small enough to hold in memory as one tensor.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "val", "test")
VAL_FRACTION = 1 / 12  # 5,000 of Fashion-MNIST's 60,000 training images
SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    channels: int
    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


FASHION_MNIST = DatasetInfo(
    "fashion-mnist",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    channels=1, native_size=28, mean=(0.2860,), std=(0.3530,),
)
CIFAR10 = DatasetInfo(
    "cifar10",
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    channels=3, native_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASET_NAMES = ("fashion-mnist", "cifar10", "imagefolder")


# -- raw readers ---------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte idx file")
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise EdgeresError(f"cannot read {path}: {exc}", hint="the file is corrupt; reinstall the dataset") from None


def _fashion_dir(data_dir: Path | None) -> Path:
    return Path(data_dir) if data_dir else Path(os.environ.get("EDGERES_FASHION_MNIST", FASHION_MNIST_DIR))


def _fashion_files(root: Path, prefix: str) -> list[Path]:
    """The images and labels idx files of one split (``train`` or ``t10k``), gzipped or not."""
    files = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        found = next((p for p in (root / f"{prefix}-{kind}.gz", root / f"{prefix}-{kind}") if p.is_file()), None)
        if found is None:
            raise EdgeresError(f"Fashion-MNIST not found: no {prefix}-{kind}.gz in {root}",
                               hint="install it with `sudo apt-get install dataset-fashion-mnist`, or pass "
                                    "--data DIR holding the four idx files")
        files.append(found)
    return files


def _load_fashion(data_dir: Path | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
    root = _fashion_dir(data_dir)
    images_file, labels_file = _fashion_files(root, "train" if train else "t10k")
    images, labels = _read_idx(images_file), _read_idx(labels_file)
    if len(images) != len(labels):
        raise EdgeresError(f"Fashion-MNIST in {root}: {len(images)} images but {len(labels)} labels")
    return images[:, None, :, :], labels.astype(np.int64)


def _cifar_root(data_dir: Path | None) -> Path:
    """The directory of the CIFAR-10 pickle batches: ``--data`` itself or its ``cifar-10-batches-py``."""
    if data_dir is None:
        raise EdgeresError("cifar10 needs --data DIR", hint="the directory of the python-pickle batches "
                           "(cifar-10-batches-py: data_batch_1..5, test_batch)")
    root = Path(data_dir)
    return root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root


def _load_cifar10(data_dir: Path | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
    root = _cifar_root(data_dir)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = root / name
        if not path.is_file():
            raise EdgeresError(f"CIFAR-10 batch {name} not found in {root}",
                               hint="extract cifar-10-python.tar.gz and pass --data to its directory")
        try:
            with open(path, "rb") as fh:
                # The CIFAR batches are plain pickles of dicts of arrays; restrict what may be unpickled.
                batch = _SafeCifarUnpickler(fh, encoding="latin1").load()
            images.append(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], np.int64))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise EdgeresError(f"cannot read CIFAR-10 batch {path}: {exc}") from None
    return np.concatenate(images), np.concatenate(labels)


class _SafeCifarUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and builtins, never arbitrary code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


# -- preprocessing -------------------------------------------------------------------------------
def preprocess_uint8(images: np.ndarray, prep: Preprocessing, batch: int = 4096) -> torch.Tensor:
    """uint8 NCHW images -> float tensors as the model expects them (resize, channels, normalize)."""
    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    out = torch.empty((len(images), prep.channels, prep.input_size, prep.input_size))
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch])).float() / 255.0
        x = adapt_channels(x, prep.channels)
        if x.shape[-1] != prep.input_size or x.shape[-2] != prep.input_size:
            x = torch.nn.functional.interpolate(x, size=(prep.input_size, prep.input_size), mode="bilinear",
                                                align_corners=False, antialias=True)
        out[start:start + batch] = (x - mean) / std
    return out


def adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by ITU-R 601 luma."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.repeat(1, 3, 1, 1)
    if x.shape[1] == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise EdgeresError(f"cannot adapt {x.shape[1]}-channel images to {channels} channels")


def _train_val_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SEED).permutation(n)
    n_val = max(1, int(round(n * VAL_FRACTION)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# -- public API ----------------------------------------------------------------------------------
def dataset_info(name: str, data_dir: Path | None = None) -> DatasetInfo:
    if name == "fashion-mnist":
        return FASHION_MNIST
    if name == "cifar10":
        return CIFAR10
    if name == "imagefolder":
        root = _imagefolder_root(data_dir)
        classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
        if not classes:
            raise EdgeresError(f"no class folders in {root / 'train'}")
        return DatasetInfo("imagefolder", classes, 3, 224, IMAGENET_MEAN, IMAGENET_STD)
    raise EdgeresError(f"unknown dataset {name!r}", hint=f"choose one of: {', '.join(DATASET_NAMES)}")


def check_available(name: str, data_dir: Path | None = None) -> None:
    """Fail early, with the install hint, when a dataset's files are not where they should be."""
    if name == "fashion-mnist":
        for prefix in ("train", "t10k"):
            _fashion_files(_fashion_dir(data_dir), prefix)
    elif name == "cifar10":
        root = _cifar_root(data_dir)
        if not (root / "test_batch").is_file():
            raise EdgeresError(f"CIFAR-10 batches not found in {root}",
                               hint="extract cifar-10-python.tar.gz and pass --data to its directory")
    else:
        dataset_info(name, data_dir)


def _imagefolder_root(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise EdgeresError("imagefolder needs --data DIR", hint="DIR must hold train/ and val/ with one "
                           "subfolder of images per class")
    root = Path(data_dir)
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise EdgeresError(f"imagefolder {root} has no {sub}/ folder",
                               hint="DIR must hold train/ and val/ with one subfolder of images per class")
    return root


def _imagefolder(root: Path, split: str, prep: Preprocessing) -> Dataset:
    from torchvision import datasets, transforms

    mode = "L" if prep.channels == 1 else "RGB"
    transform = transforms.Compose([
        transforms.Lambda(lambda img: img.convert(mode)),
        transforms.Resize(int(round(prep.input_size / 0.875))),
        transforms.CenterCrop(prep.input_size),
        transforms.ToTensor(),
        transforms.Normalize(prep.mean, prep.std),
    ])
    folder = datasets.ImageFolder(str(root / ("val" if split == "test" else "train")), transform=transform)
    if split == "test":
        return folder
    train_idx, val_idx = _train_val_indices(len(folder))
    return Subset(folder, (val_idx if split == "val" else train_idx).tolist())


def load_split(name: str, split: str, prep: Preprocessing, data_dir: Path | None = None,
               limit: int | None = None) -> Dataset:
    """One split of a dataset, preprocessed. ``limit`` takes a seeded, class-balanced-in-expectation
    random subset (for quick tests and calibration), the same one every time."""
    if split not in SPLITS:
        raise EdgeresError(f"unknown split {split!r}; choose one of {SPLITS}")
    if name == "imagefolder":
        ds = _imagefolder(_imagefolder_root(data_dir), split, prep)
    else:
        loader: Callable = {"fashion-mnist": _load_fashion, "cifar10": _load_cifar10}.get(name)  # type: ignore
        if loader is None:
            raise EdgeresError(f"unknown dataset {name!r}", hint=f"choose one of: {', '.join(DATASET_NAMES)}")
        images, labels = loader(data_dir, split != "test")
        if split != "test":
            train_idx, val_idx = _train_val_indices(len(images))
            idx = val_idx if split == "val" else train_idx
            images, labels = images[idx], labels[idx]
        if limit is not None and limit < len(images):
            pick = np.sort(np.random.default_rng(SEED + 1).permutation(len(images))[:limit])
            images, labels = images[pick], labels[pick]
            limit = None
        ds = TensorDataset(preprocess_uint8(images, prep), torch.from_numpy(labels))
    if limit is not None and limit < len(ds):
        pick = np.sort(np.random.default_rng(SEED + 1).permutation(len(ds))[:limit])
        ds = Subset(ds, pick.tolist())
    return ds


def as_tensors(ds: Dataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole (small) dataset as one input tensor and one label tensor."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[0], ds.tensors[1]
    xs, ys = [], []
    for x, y in torch.utils.data.DataLoader(ds, batch_size=batch_size):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)
