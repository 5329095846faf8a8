"""Datasets: Fashion-MNIST (the embedded default), CIFAR-10 python batches and ImageFolder trees.

Each dataset gives ``train``, ``val`` and ``test`` splits as torch datasets of already preprocessed
tensors (``Preprocessing``: one transform for every container). ``val`` serves every decision (best
epoch, accuracy budget, QAT epoch, sensitivity) and ``test`` every reported accuracy, never the same
images: with ``holdout`` validation ``val`` is a seeded slice held out of the training images; with
``test-split`` (for imported weights, which may have seen every training image) it is a seeded part of
the test split, and ``test`` is the rest. ``DataSource`` records all of it in a model's lineage.
Fashion-MNIST and CIFAR-10 are small enough to hold in memory as one tensor; ImageFolder is streamed.
"""

from __future__ import annotations

import copy
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

from edgeres import distributed
from edgeres.data_choices import DATASETS as DATASET_NAMES, VALIDATIONS
from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "val", "test")
VAL_FRACTION = 1 / 12  # 5,000 of Fashion-MNIST's 60,000 training images
SEED = 0
TEST_VAL_FRACTION = 0.2  # test-split validation: 2,000 of 10,000 test images decide, 8,000 report


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
    images, labels = _read_idx(images_file), _read_idx(labels_file).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1:
        raise EdgeresError(f"Fashion-MNIST in {root}: {images_file.name} must hold NxHxW images and "
                           f"{labels_file.name} N labels")
    _check_labels(labels, len(images), FASHION_MNIST.num_classes, root)
    return images[:, None, :, :], labels


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
            raise EdgeresError(f"CIFAR-10 batch {name} not found in {root}", hint=_cifar_hint(root))
        try:
            with open(path, "rb") as fh:
                # The CIFAR batches are plain pickles of dicts of arrays; restrict what may be unpickled.
                batch = _SafeCifarUnpickler(fh, encoding="latin1").load()
            if not isinstance(batch, dict):
                raise ValueError(f"a {type(batch).__name__}, not a dict with 'data' and 'labels'")
            pixels = np.asarray(batch["data"])
            if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
                raise ValueError(f"'data' must be N x 3072 uint8 pixels, got {pixels.shape} {pixels.dtype}")
            batch_labels = np.asarray(batch["labels"], np.int64).reshape(-1)
        except (pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError) as exc:
            raise EdgeresError(f"cannot read CIFAR-10 batch {path}: {exc}") from None
        _check_labels(batch_labels, len(pixels), CIFAR10.num_classes, path)
        images.append(pixels.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
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
def to_input(images: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 NCHW images (one size) -> the float tensor the model expects, as ``prep`` says: images
    already at the input size are kept as they are, others resized (shorter side to ``prep.resize``,
    bilinear, antialiased) and center-cropped; then channels adapted and normalized. The one transform of
    every container, so the same image gives the same tensor whether it came from a batch file or a PNG."""
    x = adapt_channels(images.float() / 255.0, prep.channels)
    size = prep.input_size
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        short = prep.resize or size
        scale = short / min(h, w)
        nh, nw = max(short, round(h * scale)), max(short, round(w * scale))
        x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False,
                                            antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    return (x - mean) / std


def available_memory() -> int:
    """Bytes of memory still available on this machine (``MemAvailable``; else all of it)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


WORK_BYTES = 1 << 28  # the resize of one batch of images works in at most this much memory (256 MB)


def check_memory(images: int, prep: Preprocessing) -> None:
    """Refuse, before allocating, a dataset whose preprocessed tensors would not fit in this machine's memory."""
    need = images * prep.channels * prep.input_size ** 2 * 4
    have = available_memory()
    if need > 0.8 * have:
        raise EdgeresError(f"{images} images at {prep.input_size}x{prep.input_size} need {need / 1e9:.1f} GB of "
                           f"memory; this machine has {have / 1e9:.1f} GB available",
                           hint="a smaller --input-size, or fewer images (--limit, --eval-limit, --calib-samples)")


def preprocess_uint8(images: np.ndarray, prep: Preprocessing, batch: int = 4096) -> torch.Tensor:
    """uint8 NCHW images (one size) -> preprocessed float tensors, in batches to bound memory (checked to
    fit first)."""
    check_memory(len(images), prep)
    side = max(prep.resize or prep.input_size, prep.input_size)
    batch = max(1, min(batch, WORK_BYTES // (3 * images.shape[1] * side * side * 4)))
    out = torch.empty((len(images), prep.channels, prep.input_size, prep.input_size))
    for start in range(0, len(images), batch):
        out[start:start + batch] = to_input(torch.from_numpy(np.ascontiguousarray(images[start:start + batch])), prep)
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


def _test_val_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``test-split`` validation: (the test images reported on, the ones set aside for decisions)."""
    order = np.random.default_rng(SEED + 2).permutation(n)
    n_val = max(1, int(round(n * TEST_VAL_FRACTION)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _split_indices(split: str, n_train: int, n_test: int, validation: str) -> tuple[str, np.ndarray | None]:
    """Which raw split (``train`` or ``test``) a split reads, and which of its images (None: all)."""
    if validation == "test-split":
        if split == "train":
            return "train", None
        report, decide = _test_val_indices(n_test)
        return "test", decide if split == "val" else report
    if split == "test":
        return "test", None
    train_idx, val_idx = _train_val_indices(n_train)
    return "train", val_idx if split == "val" else train_idx


# -- public API ----------------------------------------------------------------------------------
def dataset_info(name: str, data_dir: Path | None = None) -> DatasetInfo:
    if name == "fashion-mnist":
        return FASHION_MNIST
    if name == "cifar10":
        return CIFAR10
    if name == "imagefolder":
        root = _imagefolder_root(data_dir)
        classes = _imagefolder_classes(root)
        return DatasetInfo("imagefolder", classes, 3, 224, IMAGENET_MEAN, IMAGENET_STD)
    raise EdgeresError(f"unknown dataset {name!r}", hint=f"choose one of: {', '.join(DATASET_NAMES)}")


def resolve_dir(name: str, data_dir: Path | None = None) -> Path:
    """The absolute directory a dataset is read from, checked to hold the dataset (install hint if not)."""
    check_available(name, data_dir)
    if name == "fashion-mnist":
        return _fashion_dir(data_dir).resolve()
    if name == "cifar10":
        return _cifar_root(data_dir).resolve()
    return _imagefolder_root(data_dir).resolve()


def check_available(name: str, data_dir: Path | None = None) -> None:
    """Fail early, with the install hint, when a dataset's files are not where they should be."""
    if name == "fashion-mnist":
        for prefix in ("train", "t10k"):
            _fashion_files(_fashion_dir(data_dir), prefix)
    elif name == "cifar10":
        root = _cifar_root(data_dir)
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            if not (root / batch).is_file():
                raise EdgeresError(f"CIFAR-10 batch {batch} not found in {root}", hint=_cifar_hint(root))
    else:
        dataset_info(name, data_dir)


def _cifar_hint(root: Path) -> str:
    if (root / "train").is_dir() and (root / "val").is_dir():
        return f"{root} looks like an ImageFolder tree (train/, val/): use --dataset imagefolder"
    return "extract cifar-10-python.tar.gz and pass --data to its cifar-10-batches-py directory"


def _imagefolder_root(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise EdgeresError("imagefolder needs --data DIR", hint="DIR must hold train/ and val/ with one "
                           "subfolder of images per class")
    root = Path(data_dir)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise EdgeresError(f"imagefolder directory {root} {state}", hint="pass --data DIR holding train/ "
                           "and val/ with one subfolder of images per class")
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            hint = "DIR must hold train/ and val/ with one subfolder of images per class"
            if (root / "test_batch").is_file() or (root / "cifar-10-batches-py").is_dir():
                hint = f"{root} holds CIFAR-10 python batches: use --dataset cifar10"
            elif any(root.glob("t10k-images-idx3-ubyte*")):
                hint = f"{root} holds Fashion-MNIST idx files: use --dataset fashion-mnist"
            raise EdgeresError(f"imagefolder {root} has no {sub}/ folder", hint=hint)
    return root


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _imagefolder_classes(root: Path) -> tuple[str, ...]:
    """The class names (train/'s subfolders), checked: at least two, the same in val/."""
    classes = tuple(p.name for p in _class_dirs(root / "train"))
    if len(classes) < 2:
        raise EdgeresError(f"imagefolder {root / 'train'} has {len(classes)} class folder(s); a classifier needs "
                           f"at least two", hint="one subfolder of images per class under train/ and val/")
    other = tuple(p.name for p in _class_dirs(root / "val"))
    if other != classes:
        missing, extra = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
        detail = "; ".join(filter(None, [f"missing in val/: {', '.join(missing)}" if missing else "",
                                         f"only in val/: {', '.join(extra)}" if extra else ""]))
        raise EdgeresError(f"imagefolder {root}: train/ and val/ hold different classes ({detail})",
                           hint="both splits need the same class folders, or the labels would not match")
    return classes


class UnreadableImage(EdgeresError):
    """An image file that cannot be decoded. Raised in DataLoader workers too: the loader re-raises it with
    the worker's traceback as the message, which is cut back to the original message here."""

    def __init__(self, message: str, hint: str | None = "remove or replace the file"):
        marker = f"{__name__}.UnreadableImage: "
        if message.startswith("Caught ") and marker in message:
            message = message[message.rindex(marker) + len(marker):].splitlines()[0]
        super().__init__(message, hint=hint)


class ImageFolderSplit(Dataset):
    """The images of one folder of class subfolders, labelled by the class order of ``classes``, decoded one
    at a time (in DataLoader workers while training). Paths and labels are kept in numpy arrays: a worker
    reading a Python list of paths would copy it page by page (reference counts), so memory would grow with
    the dataset. ``augment``: the training view (``training_view``), a random resized crop and flip."""

    def __init__(self, folder: Path, classes: tuple[str, ...], prep: Preprocessing, augment: bool = False):
        self.prep, self.augment = prep, augment
        paths, labels = [], []
        for label, name in enumerate(classes):
            files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise EdgeresError(f"class folder {folder / name} holds no images",
                                   hint=f"image files end in {', '.join(IMAGE_SUFFIXES)}")
            paths += [str(p) for p in files]
            labels += [label] * len(files)
        self.paths, self.labels = np.array(paths), np.array(labels, np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path = str(self.paths[index])
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "RGB"):
                    img = img.convert("RGB")
                pixels = np.array(img, dtype=np.uint8)  # a writable copy, for torch
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise UnreadableImage(f"cannot decode image {path}: {exc}") from None
        image = torch.from_numpy(np.ascontiguousarray(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)))
        if self.augment:
            image = _random_resized_crop(image, self.prep.input_size)
        return to_input(image[None], self.prep)[0], int(self.labels[index])

    def augmented(self) -> ImageFolderSplit:
        view = copy.copy(self)
        view.augment = True
        return view


def _random_resized_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """ImageNet training's augmentation (torchvision's reference recipe): a crop of 8-100 % of the area at an
    aspect ratio of 3/4-4/3, resized to ``size`` (bilinear, antialiased), flipped horizontally half the time."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])(image)


def training_view(ds: Dataset) -> Dataset | None:
    """``ds`` as training reads it, where its container augments its own images: an image folder whose
    images are resized and center-cropped for evaluation (the ImageNet habit, ``resize`` set) is trained on
    random resized crops instead. None where training augments the batches itself (shift and flip)."""
    base, indices = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, None)
    if not isinstance(base, ImageFolderSplit) or not base.prep.resize:
        return None
    view = base.augmented()
    return view if indices is None else Subset(view, indices)


def loader_workers() -> int:
    """DataLoader worker processes that decode images beside training: the cores this process has, less
    the one that trains, at most 8 (none on a single core)."""
    return min(8, max(0, (os.cpu_count() or 1) // distributed.local_world_size() - 1))


def loader_options() -> dict:
    """A DataLoader's worker settings: ``loader_workers()`` of them. Forked workers share this process's
    memory until something writes to it; the garbage collector's passes write to every object they visit,
    so objects that exist now are frozen out of them (``gc.freeze``): the workers do not copy the trainer's
    memory page by page over an epoch."""
    import gc

    workers = loader_workers()
    if workers:
        gc.collect()
        gc.freeze()
    return {"num_workers": workers}


def _imagefolder(root: Path, split: str, prep: Preprocessing, validation: str) -> Dataset:
    classes = _imagefolder_classes(root)
    folders = {"train": root / "train", "test": root / "val"}
    n_train = len(ImageFolderSplit(folders["train"], classes, prep)) if validation == "holdout" else 0
    n_test = len(ImageFolderSplit(folders["test"], classes, prep)) if validation == "test-split" else 0
    raw, idx = _split_indices(split, n_train, n_test, validation)
    folder = ImageFolderSplit(folders[raw], classes, prep)
    return folder if idx is None else Subset(folder, idx.tolist())


def _check_labels(labels: np.ndarray, n_images: int, classes: int, where: Path) -> None:
    if len(labels) != n_images:
        raise EdgeresError(f"{where}: {n_images} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise EdgeresError(f"{where}: labels must lie in [0, {classes - 1}], found {labels.min()}..{labels.max()}")


def load_split(name: str, split: str, prep: Preprocessing, data_dir: Path | None = None,
               limit: int | None = None, validation: str = "holdout") -> Dataset:
    """One split of a dataset, preprocessed. ``validation`` says where ``val`` comes from (``VALIDATIONS``).
    ``limit`` takes a seeded, class-balanced-in-expectation random subset (for quick tests and
    calibration), the same one every time."""
    if split not in SPLITS:
        raise EdgeresError(f"unknown split {split!r}; choose one of {SPLITS}")
    if validation not in VALIDATIONS:
        raise EdgeresError(f"unknown validation {validation!r}", hint=f"choose one of: {', '.join(VALIDATIONS)}")
    if name == "imagefolder":
        ds = _imagefolder(_imagefolder_root(data_dir), split, prep, validation)
    else:
        loader: Callable = {"fashion-mnist": _load_fashion, "cifar10": _load_cifar10}.get(name)  # type: ignore
        if loader is None:
            raise EdgeresError(f"unknown dataset {name!r}", hint=f"choose one of: {', '.join(DATASET_NAMES)}")
        raw = "test" if split == "test" or (validation == "test-split" and split == "val") else "train"
        images, labels = loader(data_dir, raw == "train")
        _, idx = _split_indices(split, len(images), len(images), validation)
        if idx is not None:
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


@dataclass(frozen=True)
class DataSource:
    """Where a model's images come from, recorded in every artifact of its lineage: the dataset, its
    resolved directory and which images serve which role (``validation``)."""

    dataset: str
    root: Path | None
    validation: str = "holdout"

    def load(self, split: str, prep: Preprocessing, limit: int | None = None) -> Dataset:
        return load_split(self.dataset, split, prep, self.root, limit, self.validation)

    def info(self) -> DatasetInfo:
        return dataset_info(self.dataset, self.root)

    def to_manifest(self) -> dict:
        return {"dataset": self.dataset, "dir": str(self.root) if self.root else None,
                "validation": self.validation, "roles": VALIDATIONS[self.validation]}

    @classmethod
    def from_manifest(cls, record: dict) -> "DataSource":
        root = record.get("dir")
        return cls(record["dataset"], Path(root) if root else None, record.get("validation", "holdout"))


def open_source(dataset: str, data_dir: Path | None = None, validation: str = "holdout") -> DataSource:
    """A checked ``DataSource``: the dataset is known and on disk; its directory is made absolute."""
    if dataset not in DATASET_NAMES:
        raise EdgeresError(f"unknown dataset {dataset!r}", hint=f"choose one of: {', '.join(DATASET_NAMES)}")
    if validation not in VALIDATIONS:
        raise EdgeresError(f"unknown validation {validation!r}", hint=f"choose one of: {', '.join(VALIDATIONS)}")
    return DataSource(dataset, resolve_dir(dataset, data_dir), validation)


def as_tensors(ds: Dataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole (small) dataset as one input tensor and one label tensor."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[0], ds.tensors[1]
    xs, ys = [], []
    for x, y in torch.utils.data.DataLoader(ds, batch_size=batch_size):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def source_of(manifest: dict, *, dataset: str | None = None, data_dir: Path | None = None) -> DataSource:
    """The data a model artifact was made with (its manifest's ``data`` record), checked to be still
    there; ``data_dir`` points it elsewhere (the same classes required). A ``dataset`` other than the
    recorded one is an error: the lineage knows its data, a silent switch would mislabel every image."""
    record = manifest.get("data") or {"dataset": manifest.get("dataset"), "dir": None}  # before records
    recorded = DataSource.from_manifest(record)
    name = manifest.get("id", "the model")
    if dataset is not None and dataset != recorded.dataset:
        raise EdgeresError(f"{name} was made with {recorded.dataset}, not {dataset}",
                           hint="leave out --dataset: every step reads the data recorded in the model's lineage "
                                "(--data points it at another copy)")
    if data_dir is not None:
        source, where = open_source(recorded.dataset, data_dir, recorded.validation), f"--data {data_dir}"
        hint = "point --data at the dataset the model was trained on"
    else:
        if recorded.root is not None and not recorded.root.exists():
            raise EdgeresError(f"the {recorded.dataset} data of {name} is no longer at {recorded.root}",
                               hint="pass --data DIR where it is now")
        source = open_source(recorded.dataset, recorded.root, recorded.validation)
        where, hint = f"its data ({source.root})", "its manifest or its data changed since: re-run its step"
    classes = manifest.get("classes")
    found = source.info().classes
    if classes and (len(found) != len(classes) or (recorded.dataset == "imagefolder" and list(found) != classes)):
        raise EdgeresError(f"{where} holds {len(found)} classes ({', '.join(found[:5])}"
                           f"{' ...' if len(found) > 5 else ''}) but {name} classifies {len(classes)} "
                           f"({', '.join(classes[:5])}{' ...' if len(classes) > 5 else ''})", hint=hint)
    return source
