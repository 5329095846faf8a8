"""The README's main job timed three ways, then `edgeres bench` repeated for its stability and wall time.

    python benchmarks/pipeline_bench.py --workspace WS [--recipe recipes/resnet18-fashion-int8-all.yaml]

1. cold: `edgeres run RECIPE` in an empty WS (trains the FP32 model);
2. cached checkpoint: every artifact but the FP32 checkpoint deleted, `edgeres run` again;
3. unchanged: `edgeres run` a third time (every step skipped);
then `edgeres bench --device cpu --target all --precision fp32 --precision int8` three times on the
result (1,000 test images each): wall time per run and the spread of each variant's p50 across the runs.
Each command runs as its own process, as a user runs it. Prints Markdown; JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed(*args: str, workspace: Path) -> float:
    env = dict(os.environ, EDGERES_WORKSPACE=str(workspace), COLUMNS="160")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgeres", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"`edgeres {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")
    sys.stderr.write(proc.stdout[-4000:])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "resnet18-fashion-int8-all.yaml")
    parser.add_argument("--skip-cold", action="store_true", help="WS already holds a cold run")
    args = parser.parse_args()

    from edgeres.workspace import Workspace

    ws = args.workspace
    result: dict = {"recipe": str(args.recipe)}
    if not args.skip_cold:
        if ws.exists() and any(ws.iterdir()):
            raise SystemExit(f"{ws} is not empty: the cold run needs an empty workspace")
        result["cold_seconds"] = timed("run", str(args.recipe), workspace=ws)
    for artifact in Workspace(ws).artifacts():
        if artifact.kind != "train":
            shutil.rmtree(artifact.path)
    result["cached_checkpoint_seconds"] = timed("run", str(args.recipe), workspace=ws)
    result["unchanged_seconds"] = timed("run", str(args.recipe), workspace=ws)

    bench_args = ("bench", "--device", "cpu", "--target", "all", "--precision", "fp32", "--precision", "int8",
                  "--eval-limit", "1000")
    walls, p50s = [], {}
    for _ in range(3):
        walls.append(timed(*bench_args, workspace=ws))
        for row in Workspace(ws).latest("bench").manifest["rows"]:
            if row["p50_ms"] is not None:
                p50s.setdefault(row["variant"], []).append(row["p50_ms"])
    result["bench_wall_seconds"] = walls
    result["bench_p50_ms"] = p50s
    results_file.write("pipeline_bench", {"recipe": args.recipe.name, "model": "resnet18",
                                          "data": "fashion-mnist (the recipe's)", "input_size": 32,
                                          "threads": "every core (edgeres's default)", **result})

    print("| `edgeres run` of the main recipe | wall |")
    print("|---|---|")
    if "cold_seconds" in result:
        print(f"| cold (trains the FP32 model) | {result['cold_seconds'] / 60:.1f} min |")
    print(f"| FP32 checkpoint cached | {result['cached_checkpoint_seconds'] / 60:.1f} min |")
    print(f"| nothing changed | {result['unchanged_seconds']:.1f} s |")
    print("\n| variant | p50 run 1 / 2 / 3 (ms) | max deviation from their median |")
    print("|---|---|---|")
    for variant, values in p50s.items():
        median = statistics.median(values)
        spread = max(abs(v - median) / median for v in values) * 100
        print(f"| {variant} | {' / '.join(f'{v:.3g}' for v in values)} | {spread:.1f} % |")
    print(f"\nbench wall per run: {', '.join(f'{w:.0f} s' for w in walls)}")


if __name__ == "__main__":
    main()
