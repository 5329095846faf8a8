"""A user's own checkpoint and data through the whole road: import, PTQ int8, export to three targets.

    python benchmarks/own_data.py [--workdir DIR] [--epochs 8]

Real CIFAR-10 is not packaged here, so the data is the real Fashion-MNIST (60,000 train / 10,000 test)
written as CIFAR-10 python batches and as an ImageFolder tree of PNGs, 3-channel 32x32 (the 28x28 image
centred, grey repeated). The checkpoint is a CIFAR ResNet-20 trained here by a plain loop, outside any
edgeres artifact, and saved in the layout of the widely used public CIFAR checkpoints (older torch's
non-zip file, ``{"state_dict": {"module.": ...}, "best_prec1": ...}``, no ``num_batches_tracked``).

Measured through the real CLI: the imported FP32 top-1 on the whole test split in both containers
against the same figure computed here without edgeres (must be 0.00 pp apart), and the top-1 of each
int8 file (ONNX, OpenVINO, TFLite) on the reported 80 % of the test split against FP32 on the same
images. JSON to benchmarks/results/own_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def rgb32(images: np.ndarray) -> np.ndarray:
    out = np.zeros((len(images), 3, 32, 32), np.uint8)
    out[:, :, 2:30, 2:30] = images
    return out


def write_containers(root: Path) -> tuple[Path, Path, tuple]:
    from PIL import Image

    from edgeres import data

    (train_x, train_y), (test_x, test_y) = (data._load_fashion(None, t) for t in (True, False))
    train_x, test_x = rgb32(train_x), rgb32(test_x)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        part = slice(12000 * i, 12000 * (i + 1))
        with open(cifar / f"data_batch_{i + 1}", "wb") as fh:
            pickle.dump({"data": train_x[part].reshape(-1, 3072), "labels": train_y[part].tolist()}, fh)
    with open(cifar / "test_batch", "wb") as fh:
        pickle.dump({"data": test_x.reshape(-1, 3072), "labels": test_y.tolist()}, fh)
    tree = root / "imagefolder"
    for split, (x, y) in {"train": (train_x, train_y), "val": (test_x, test_y)}.items():
        for label, name in enumerate(CLASSES):
            (tree / split / f"{label}-{name}").mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image.transpose(1, 2, 0)).save(tree / split / f"{label}-{CLASSES[label]}" / f"{i:05d}.png")
    return cifar, tree, (train_x, train_y, test_x, test_y)


def normalized(x: np.ndarray) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (torch.from_numpy(x).float() / 255 - mean) / std


def train_public_checkpoint(arrays: tuple, epochs: int, path: Path) -> float:
    """A ResNet-20 trained by a plain loop (not an edgeres artifact), saved in the public CIFAR layout;
    returns its top-1 on the whole test split, computed here."""
    from torch.utils.data import TensorDataset

    from edgeres import models
    from edgeres.train import TrainConfig, fit

    train_x, train_y, test_x, test_y = arrays
    model = models.build("resnet20", 10, 3)
    fit(model, TensorDataset(normalized(train_x), torch.from_numpy(train_y)), TrainConfig(epochs=epochs))
    model = model.eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        predicted = torch.cat([model(normalized(test_x[i:i + 1000])).argmax(1) for i in range(0, len(test_x), 1000)])
    top1 = float((predicted.numpy() == test_y).mean() * 100)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state, "best_prec1": top1, "epoch": epochs}, path, _use_new_zipfile_serialization=False)
    return top1


def cli(*args: str, workspace: Path) -> tuple[dict, float]:
    """Run ``edgeres``; returns the manifest of the artifact it printed last, and the wall time."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgeres", *args], capture_output=True, text=True,
                            env=dict(os.environ, EDGERES_WORKSPACE=str(workspace), COLUMNS="200"))
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"edgeres {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    last = Path(result.stdout.strip().splitlines()[-1])
    return (json.loads((last / "manifest.json").read_text()) if (last / "manifest.json").is_file() else {}), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out" / "own_data")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    cifar, tree, arrays = write_containers(args.workdir)
    print(f"containers written in {time.perf_counter() - start:.0f} s", flush=True)
    checkpoint = args.workdir / "resnet20-public.th"
    reference = train_public_checkpoint(arrays, args.epochs, checkpoint)
    print(f"checkpoint trained: {reference:.2f} % on the whole test split (computed without edgeres)", flush=True)
    norm = [a for m in MEAN for a in ("--mean", str(m))] + [a for s in STD for a in ("--std", str(s))]
    result: dict = {"model": "resnet20 (CIFAR layout)", "data": "Fashion-MNIST as 3-channel 32x32, 60,000 train / "
                    "10,000 test", "input_size": 32, "threads": os.cpu_count(),
                    "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                    "cpu": _cpu_name(), "reference_top1_full_test": reference, "imports": {}}
    workspaces = {}
    for kind, dataset, path in (("cifar-batches", "cifar10", cifar), ("imagefolder", "imagefolder", tree)):
        ws = args.workdir / f"ws-{kind}"
        workspaces[kind] = ws
        manifest, seconds = cli("import", "resnet20", "--weights", str(checkpoint), "--dataset", dataset,
                                "--data", str(path), *norm, workspace=ws)
        full = manifest["metrics"]["test_full"]["top1"]
        result["imports"][kind] = {"top1_full_test": full, "diff_pp_vs_reference": round(full - reference, 4),
                                   "top1_reported_split": manifest["metrics"]["test"]["top1"],
                                   "reported_images": manifest["metrics"]["test"]["n"], "seconds": round(seconds, 1)}
        print(f"import ({kind}): {full:.2f} % whole test split ({full - reference:+.2f} pp vs reference)", flush=True)
    ws = workspaces["cifar-batches"]
    quantized, seconds = cli("quantize", "resnet20", "--int8", workspace=ws)
    fp32 = quantized["metrics"]["fp32"]["test_top1"]
    result["fp32_top1_reported_split"] = fp32
    result["torch_int8_top1"] = quantized["metrics"]["int8"]["test_top1"]
    result["quantize_seconds"] = round(seconds, 1)
    _, seconds = cli("export", "--target", "all", "--precision", "int8", "--verify-limit", "10000", workspace=ws)
    result["export_seconds"] = round(seconds, 1)
    result["int8_files"] = {}
    for entry in sorted(ws.iterdir()):
        manifest_path = entry / "manifest.json"
        if not manifest_path.is_file():
            continue
        m = json.loads(manifest_path.read_text())
        if m["kind"] == "export":
            v = m["metrics"]["verify"]
            result["int8_files"][m["format"]] = {"top1": v["top1"], "n": v["n"], "drop_pp_vs_fp32": round(fp32 - v["top1"], 3),
                                                 "agreement_with_reference": v["agreement"], "reference": v["reference"]}
    out = Path(__file__).parent / "results" / "own_data.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
