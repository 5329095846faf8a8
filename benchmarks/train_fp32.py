"""FP32 training with the default recipe: wall time and test top-1, plus the CLI's start-up time.

    python benchmarks/train_fp32.py --workspace WS [--models resnet18,resnet20] [--epochs N]

Trains each model the way `edgeres train MODEL` does (the same `run_train`, full Fashion-MNIST,
55,000 train / 5,000 val / 10,000 test images) into WS, then times `edgeres --help` five times.
Prints a Markdown table; JSON to benchmarks/out/train_fp32.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from edgeres.train import TrainConfig, TrainRequest, run_train
from edgeres.workspace import Workspace


def help_seconds(runs: int = 5) -> list[float]:
    edgeres = Path(sys.executable).with_name("edgeres")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(edgeres), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--models", default="resnet18,resnet20")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's own")
    args = parser.parse_args()

    workspace = Workspace(args.workspace)
    rows = []
    for name in args.models.split(","):
        config = TrainConfig() if args.epochs is None else replace(TrainConfig(), epochs=args.epochs)
        start = time.perf_counter()
        artifact = run_train(TrainRequest(model=name, config=config), workspace)
        wall = time.perf_counter() - start
        metrics = artifact.manifest["metrics"]
        val = metrics["history"][-1].get("val_top1") if metrics["history"] else None
        rows.append({"model": name, "epochs": config.epochs, "label_smoothing": config.label_smoothing,
                     "val_top1": val, "test_top1": metrics["test"]["top1"],
                     "train_seconds": metrics["train_seconds"], "wall_seconds": round(wall, 1),
                     "artifact": artifact.id})
    helps = help_seconds()
    result = {"machine": platform.processor() or platform.machine(), "rows": rows,
              "help_seconds": [round(t, 3) for t in helps]}
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train_fp32.json").write_text(json.dumps(result, indent=2))

    print("| model | epochs | val top-1 | test top-1 | train min | wall min (load + train + test) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['epochs']} | {r['val_top1']:.2f} % | **{r['test_top1']:.2f} %** | "
              f"{r['train_seconds'] / 60:.1f} | {r['wall_seconds'] / 60:.1f} |")
    print(f"\n`edgeres --help`: median {statistics.median(helps):.2f} s over {len(helps)} runs "
          f"(max {max(helps):.2f} s)")


if __name__ == "__main__":
    main()
