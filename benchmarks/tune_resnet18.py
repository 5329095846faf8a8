"""``edgeres tune`` on ResNet-18 / Fashion-MNIST for ``--device cpu`` within 0.5 pp (issue 20): the chosen
variant against the best single-step variant (PTQ int8 of the unpruned model on its fastest runtime).

    python benchmarks/tune_resnet18.py --workspace WS [--max-drop 0.5] [--budget-minutes 60]
                                       [--ratios 0.25,0.5] [--targets onnx,openvino,tflite]
                                       [--shrunk] [--limit N] [--val-limit N] [--eval-limit N]
                                       [--train-epochs N] [--train-limit N]

The FP32 ResNet-18 in WS is used (trained first with the model's defaults when there is none). Both
figures come from one search, measured by the same bench machinery in the same way: the single-step
variant is one of the search's own candidates (ratio 0, PTQ int8, every target). Every decision (the
budget, the choice) is taken on validation images; test top-1 is reported only. ``--shrunk`` marks the
result as a shrunk run (subsets, fewer rounds) in its JSON and file name: not the issue's figure.
Raw output: benchmarks/results/tune_resnet18.json (or tune_resnet18_shrunk.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgeres.train import TrainConfig, TrainRequest, run_train
from edgeres.tune import TuneRequest, run_tune
from edgeres.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--max-drop", type=float, default=0.5)
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--ratios", default="0.25,0.5")
    p.add_argument("--targets", default="onnx,openvino,tflite")
    p.add_argument("--precisions", default="fp32,fp16,int8")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="fine-tune images (default: all)")
    p.add_argument("--val-limit", type=int, default=2000)
    p.add_argument("--eval-limit", type=int, default=None, help="test images (default: bench's 1,000)")
    p.add_argument("--train-epochs", type=int, default=None, help="if WS has no ResNet-18 (default: the model's)")
    p.add_argument("--train-limit", type=int, default=None, help="if WS has no ResNet-18: training images")
    p.add_argument("--shrunk", action="store_true", help="label the result as a shrunk run")
    args = p.parse_args()

    ws = Workspace(args.workspace)
    if ws.latest("train", model="resnet18", dataset="fashion-mnist") is None:
        run_train(TrainRequest(model="resnet18", config=TrainConfig(epochs=args.train_epochs, limit=args.train_limit)), ws)
    request = TuneRequest(model="resnet18", device="cpu", max_drop=args.max_drop,
                          budget_minutes=args.budget_minutes, ratios=[float(r) for r in args.ratios.split(",")],
                          targets=args.targets.split(","), precisions=args.precisions.split(","),
                          finetune_epochs=args.finetune_epochs, rounds=args.rounds, limit=args.limit,
                          val_limit=args.val_limit, eval_limit=args.eval_limit)
    start = time.perf_counter()
    result = run_tune(request, ws)
    seconds = time.perf_counter() - start
    r = result.results
    by_name = {c["name"]: c for c in r["candidates"]}
    keep = ("name", "status", "val_top1", "val_drop_pp", "test_top1", "test_n", "p50_ms", "latency_kind",
            "size_bytes", "macs", "why")
    name = "tune_resnet18_shrunk" if args.shrunk else "tune_resnet18"
    path = results_file.write(name, {
        "shrunk": args.shrunk, "model": "resnet18", "dataset": "fashion-mnist", "device": "cpu",
        "input_size": 32, "threads": "every core (bench's default for cpu)", "settings": vars(args) | {
            "workspace": str(args.workspace)},
        "max_drop_pp": r["max_drop_pp"], "fp32_val_top1": r["fp32_val_top1"], "search_seconds": round(seconds, 1),
        "stopped_by_budget": r["stopped"], "artifacts_reused": len(r["reused"]), "artifacts_made": len(r["made"]),
        "chosen": by_name.get(r["chosen"]), "single_step": by_name.get(r["single_step"]),
        "speedup_vs_single_step": r["speedup_vs_single_step"], "front": r["front"],
        "candidates": [{k: c.get(k) for k in keep} for c in r["candidates"]], "tune_artifact": result.artifact.id,
    })
    print(f"chosen {r['chosen']}; single-step {r['single_step']}; speedup {r['speedup_vs_single_step']}; "
          f"{seconds / 60:.1f} min; {path}")


if __name__ == "__main__":
    main()
