"""FP32 training as a recipe's train step does it: test top-1 and wall time over several runs.

    python benchmarks/train_fp32.py --workspace WS [--recipe R] [--runs 3] [--set train.epochs=12 ...]
        [--threads N] [--name train_fp32]

Each run trains the recipe's model on its data with its train step (`edgeres run R` would train the
same), seed 0, 1, 2, ... for the runs. Decisions (the best epoch, a recipe's settings) belong on the
validation images (the held-out 1/12 of the training images); the test top-1 is reported, never used to
choose. Prints a Markdown table; raw output to benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import edgeres.train
from edgeres import pipeline, recipe
from edgeres.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402

MAIN_RECIPE = Path(__file__).parents[1] / "recipes" / "resnet18-fashion-int8-all.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, default=MAIN_RECIPE)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    parser.add_argument("--name", default="train_fp32", help="results/NAME.json")
    args = parser.parse_args()

    threads = args.threads or torch.get_num_threads()
    edgeres.train.set_threads = lambda _=None: torch.set_num_threads(threads)  # the runs' thread count
    spec = recipe.load(args.recipe, args.overrides)
    base = pipeline.train_request(spec)
    runs = []
    for run in range(args.runs):
        request = base.model_copy(update={"config": base.config.model_copy(update={"seed": base.config.seed + run})})
        start = time.perf_counter()
        artifact = edgeres.train.run_train(request, Workspace(args.workspace))
        wall = time.perf_counter() - start
        m = artifact.manifest["metrics"]
        val = [h["val_top1"] for h in m["history"] if "val_top1" in h]
        runs.append({"seed": request.config.seed, "val_top1_by_epoch": val, "val_top1": val[-1],
                     "test_top1": m["test"]["top1"], "test_images": m["test"]["n"],
                     "train_images": m["train_images"], "train_seconds": m["train_seconds"],
                     "wall_seconds": round(wall, 1), "artifact": artifact.id})
        print(f"run {run + 1}/{args.runs}: val {val[-1]:.2f} %, test {m['test']['top1']:.2f} %, "
              f"train {m['train_seconds'] / 60:.1f} min", flush=True)

    def summary(key: str) -> dict:
        values = [r[key] for r in runs]
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    manifest = Workspace(args.workspace).resolve(runs[-1]["artifact"]).manifest
    path = results_file.write(args.name, {
        "recipe": args.recipe.name, "overrides": args.overrides, "model": spec.model,
        "data": {"dataset": spec.dataset, "roles": manifest["data"].get("roles")},
        "input_size": manifest["preprocessing"]["input_size"], "threads": threads,
        "config": {k: v for k, v in manifest["config"].items() if k != "seed"},
        "runs": runs, "test_top1": summary("test_top1"), "val_top1": summary("val_top1"),
        "train_minutes": {k: round(v / 60, 2) for k, v in summary("train_seconds").items()}})

    print(f"\n{spec.model}, {args.recipe.name} {' '.join(args.overrides)}; {threads} threads; raw output {path}\n")
    print("| seed | val top-1 | test top-1 | train min |")
    print("|---|---|---|---|")
    for r in runs:
        print(f"| {r['seed']} | {r['val_top1']:.2f} % | {r['test_top1']:.2f} % | {r['train_seconds'] / 60:.1f} |")


if __name__ == "__main__":
    main()
