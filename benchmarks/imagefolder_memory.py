"""Peak memory of a training epoch on an image folder, at two dataset sizes (issue 19: memory that does not
grow with the dataset). Real Fashion-MNIST training images, upscaled to 64x64 PNGs (larger than the input,
as photos are), in two ImageFolder trees; `edgeres train resnet18` runs one epoch on each in its own process,
ImageNet-layout preprocessing (resize, center crop; training on random resized crops, decoded in DataLoader
workers). The peak is the largest sum of the proportional set sizes (PSS: shared pages split between the
processes) of the training process and its workers, sampled every 0.1 s; the two sizes alternate over
the repeats and each size's median peak is compared.

    python benchmarks/imagefolder_memory.py [--sizes 1000 4000] [--input-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402


def write_tree(root: Path, count: int, size: int) -> Path:
    """``count`` training images and 100 validation images, a seeded random choice."""
    from PIL import Image

    from edgeres import data

    images, labels = data._load_fashion(None, True)
    order = np.random.default_rng(0).permutation(len(images))
    for split, picked in (("train", order[:count]), ("val", order[-100:])):
        for label in range(10):
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)
        for i in picked:
            Image.fromarray(images[i, 0]).resize((size, size)).save(root / split / str(labels[i]) / f"{i}.png")
    return root


def peak_pss_mb(command: list[str]) -> tuple[dict[str, float], float, int]:
    """Run ``command``; the peak PSS (MB) of it with its children, of it alone and of its children
    together, its seconds and its exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(proc.pid)
    peak = {"total": 0.0, "trainer": 0.0, "workers": 0.0}
    while proc.poll() is None:
        try:
            trainer = main.memory_full_info().pss / 2**20
            workers = sum(p.memory_full_info().pss for p in main.children(recursive=True)) / 2**20
        except psutil.Error:  # a worker (or the run) that just ended
            continue
        for key, value in (("total", trainer + workers), ("trainer", trainer), ("workers", workers)):
            peak[key] = max(peak[key], value)
        time.sleep(0.1)
    if proc.returncode:
        print(proc.stderr.read()[-2000:], file=sys.stderr)
    return {k: round(v, 1) for k, v in peak.items()}, time.perf_counter() - start, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000])
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per size, interleaved (the peak is noisy)")
    args = parser.parse_args()
    resize = round(args.input_size / 0.875)
    runs = []
    with tempfile.TemporaryDirectory(prefix="edgeres-imagefolder-") as tmp:
        trees = {count: write_tree(Path(tmp) / f"n{count}", count, args.image_size) for count in args.sizes}
        for repeat, count in [(r, c) for r in range(args.repeats) for c in args.sizes]:
            command = [sys.executable, "-m", "edgeres", "train", "resnet18", "--dataset", "imagefolder",
                       "--data", str(trees[count]), "--epochs", "1", "--input-size", str(args.input_size),
                       "--resize", str(resize), "--validation", "test-split", "--eval-limit", "100",
                       "--workspace", str(Path(tmp) / f"ws{count}-{repeat}")]
            peak, seconds, code = peak_pss_mb(command)
            if code:
                raise SystemExit(f"training on {count} images failed (exit {code})")
            runs.append({"train_images": count, "peak_pss_mb": peak["total"], "peak_trainer_pss_mb": peak["trainer"],
                         "peak_workers_pss_mb": peak["workers"], "seconds": round(seconds, 1)})
            print(f"{count} images: peak PSS {peak['total']:.0f} MB (trainer {peak['trainer']:.0f}, workers "
                  f"{peak['workers']:.0f}), {seconds:.0f} s", flush=True)
    median = {count: float(np.median([r["peak_pss_mb"] for r in runs if r["train_images"] == count]))
              for count in args.sizes}
    growth = median[args.sizes[1]] / median[args.sizes[0]] - 1
    path = results_file.write("imagefolder_memory", {
        "model": "resnet18", "data": f"Fashion-MNIST training images upscaled to {args.image_size}x{args.image_size} "
                                     "PNGs in ImageFolder trees, 100 validation images",
        "input_size": args.input_size, "resize": resize, "threads": "torch default (all cores), "
        "DataLoader workers: edgeres.data.loader_workers()", "epochs": 1, "runs": runs,
        "median_peak_pss_mb": {str(k): v for k, v in median.items()}, "peak_growth_pct": round(growth * 100, 1), "target": "peak within 10 % across the two sizes",
        "met": abs(growth) <= 0.10,
        "note": "memory, not speed: the machine may be loaded; seconds are not a speed claim"})
    print(f"growth {growth * 100:+.1f} % -> {path}")


if __name__ == "__main__":
    main()
