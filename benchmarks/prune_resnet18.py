"""Structured pruning of ResNet-18 on Fashion-MNIST: MACs, accuracy, and latency against the unpruned model.

    python benchmarks/prune_resnet18.py --workspace WS [--ratios 0.3,0.5] [--finetune-epochs 3] [--size 224]
                                        [--scope uniform|global] [--round-to N] [--reuse]

Accuracy: the FP32 ResNet-18 in WS (trained first when there is none: ``--train-epochs``, default the model's) is
pruned at each ratio through ``edgeres prune`` (L1, uniform by default), fine-tuned for at most
``--finetune-epochs``, then quantized through ``edgeres quantize --int8``; top-1 on the Fashion-MNIST test
set (all 10,000 images unless ``--eval-limit``) before pruning, after pruning, and pruned + int8. ``--reuse``
takes the pruned and int8 artifacts an earlier run left in WS with the same settings (latency only then).

Latency: the unpruned ResNet-18 and, per ratio, the pruned artifact's exact channel widths (stem widened to
3 input channels and a 1,000-class head, so the numbers compare with the usual ImageNet-size figures) at
``--size`` x ``--size``, batch 1, random weights (latency does not depend on them), BN folded, exported the
way ``edgeres export`` does: fp32 ONNX, and int8 NNCF PTQ as QDQ ONNX with int8 weights; OpenVINO IR
converted from those. Every file runs in edgeres' runtime sessions, one session at a time, in blocks of
consecutive runs taken in five passes over all files so that load from other processes hits all of them
alike; the table gives medians. Prints Markdown; JSON to
benchmarks/out/prune_resnet18.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeres import models
from edgeres.export import onnx as onnx_export
from edgeres.export import openvino as openvino_export
from edgeres.export.formats import ExportJob
from edgeres.preprocessing import Preprocessing
from edgeres.prune import PruneRequest, run_prune
from edgeres.quantize import engine
from edgeres.quantize.fold import fold_batchnorm
from edgeres.quantize.step import QuantizeRequest, run_quantize
from edgeres.runtimes import open_session
from edgeres.train import TrainConfig, TrainRequest, run_train, set_threads
from edgeres.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402

RUNTIMES = {"onnxruntime": ".onnx", "openvino": ".xml"}


def accuracy_rows(ws: Workspace, args) -> list[dict]:
    """Prune (and quantize) the trained ResNet-18 at every ratio; one row of metrics per ratio."""
    source = ws.latest("train", model="resnet18", dataset="fashion-mnist") or run_train(
        TrainRequest(model="resnet18", eval_limit=args.eval_limit,
                     config=TrainConfig(epochs=args.train_epochs, limit=args.limit)), ws)
    rows = []
    for ratio in args.ratios:
        config = {"ratio": ratio, "method": args.method, "scope": args.scope,
                  "finetune_epochs": args.finetune_epochs, "round_to": args.round_to}
        pruned = ws.latest("prune", where=lambda m: m["parent"] == source.id and all(
            m["config"].get(k) == v for k, v in config.items() if v is not None)) if args.reuse else None
        int8 = pruned and ws.latest("quantize", where=lambda m: m["parent"] == pruned.id)
        if pruned is None or int8 is None:
            pruned = run_prune(PruneRequest(model=source.id, limit=args.limit, eval_limit=args.eval_limit,
                                            **config), ws)
            int8 = run_quantize(QuantizeRequest(model=pruned.id, eval_limit=args.eval_limit), ws)
        m = pruned.manifest["metrics"]
        before = m["fp32_before"]["test_top1"]
        rows.append({"ratio": ratio, "artifact": pruned.id, "architecture": pruned.manifest["architecture"],
                     "macs_before": m["macs_before"], "macs_after": m["macs_after"], "macs_ratio": m["macs_ratio"],
                     "params_before": m["params_before"], "params_after": m["params_after"],
                     "top1_before": before, "top1_pruned": m["test"]["top1"], "drop_pp": m["drop_pp"],
                     "top1_pruned_int8": int8.manifest["metrics"]["int8"]["test_top1"],
                     "combined_drop_pp": before - int8.manifest["metrics"]["int8"]["test_top1"],
                     "finetune_epochs": m["finetune_epochs_total"], "finetune_minutes": m["finetune_seconds"] / 60,
                     "test_images": m["test"]["n"]})
    return rows


def imagenet_shaped(arch: dict) -> dict:
    """The pruned widths on a 3-channel, 1,000-class ResNet-18 (the layers in between are unchanged)."""
    channels = {name: dict(width) for name, width in arch["channels"].items()}
    if "conv1" in channels:
        channels["conv1"]["in"] = 3
    if "fc" in channels:
        channels["fc"]["out"] = 1000
    return {"name": "resnet18", "num_classes": 1000, "in_channels": 3, "channels": channels}


def export_files(label: str, model: torch.nn.Module, prep: Preprocessing, tmp: Path) -> dict[tuple, Path]:
    """fp32 and int8 files of one (random-weight) model for every runtime, made as ``edgeres export`` makes them."""
    folded = fold_batchnorm(model.eval())
    calib = torch.randn(32, *prep.input_shape(1)[1:])
    fp32_onnx = onnx_export.torch_to_onnx(folded, tmp / f"{label}-fp32.onnx", prep.input_shape(1))
    int8_torch = engine.ptq(folded, calib)
    files = {}
    for precision in ("fp32", "int8"):
        for runtime, suffix in RUNTIMES.items():
            path = tmp / f"{label}-{precision}{suffix}"
            job = ExportJob(precision=precision, out_path=path, preprocessing=prep,
                            torch_model=int8_torch if precision == "int8" else folded,
                            float_onnx=lambda: fp32_onnx, calibration=lambda: calib.numpy(), metadata={})
            exporter = onnx_export if suffix == ".onnx" else openvino_export
            files[(label, runtime, precision)] = fp32_onnx if path == fp32_onnx else exporter.export(job)
    return files


def p50_ms(files: dict[tuple, Path], x: np.ndarray, threads: int, runs: int, passes: int = 5) -> dict[tuple, float]:
    """Median batch-1 latency (ms) of every file. The runs are split into ``passes`` over all files so that
    load from other processes hits every file alike; in a pass each file gets a fresh session, three warm-up
    runs and a block of timed runs, and its session is closed before the next file's opens (live thread
    pools of other sessions would otherwise spin beside it)."""
    times: dict[tuple, list[float]] = {key: [] for key in files}
    for _ in range(passes):
        for key, path in files.items():
            session = open_session(path, key[1], threads=threads)
            for _ in range(3):
                session.run(x)
            for _ in range(max(1, runs // passes)):
                start = time.perf_counter()
                session.run(x)
                times[key].append((time.perf_counter() - start) * 1000)
            del session
    return {key: float(np.median(t)) for key, t in times.items()}


def latency_rows(accuracy: list[dict], args, tmp: Path) -> list[dict]:
    import torch_pruning as tp

    torch.manual_seed(0)
    prep = Preprocessing(args.size, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    example = torch.zeros(prep.input_shape(1))
    variants = {"unpruned": models.build("resnet18", 1000, 3)}
    for row in accuracy:
        variants[f"pruned {row['ratio']}"] = models.build_from_architecture(imagenet_shaped(row["architecture"]))
    files, macs = {}, {}
    for label, model in variants.items():
        for m in model.modules():  # torchvision's init everywhere, so resized layers hold like-sized numbers
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        macs[label] = tp.utils.count_ops_and_params(model.eval(), example)[0]
        files.update(export_files(label.replace(" ", "-"), model, prep, tmp))
    x = np.random.default_rng(0).standard_normal(prep.input_shape(1)).astype(np.float32)
    p50 = p50_ms(files, x, args.threads, args.runs)
    rows = []
    for label in variants:
        for runtime in RUNTIMES:
            for precision in ("fp32", "int8"):
                ms = p50[(label.replace(" ", "-"), runtime, precision)]
                rows.append({"model": label, "macs": macs[label], "runtime": runtime, "precision": precision,
                             "p50_ms": ms, "vs_unpruned_same_precision": p50[("unpruned", runtime, precision)] / ms,
                             "vs_unpruned_fp32": p50[("unpruned", runtime, "fp32")] / ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--ratios", type=lambda s: [float(r) for r in s.split(",")], default=[0.3, 0.5])
    parser.add_argument("--method", default="l1")
    parser.add_argument("--scope", choices=("uniform", "global"), default="uniform")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--round-to", type=int, default=None,
                        help="keep channel counts multiples of this (default: the model's, 8 for ResNet-18)")
    parser.add_argument("--reuse", action="store_true",
                        help="take the workspace's pruned (and int8) artifacts made with these settings, if any")
    parser.add_argument("--train-epochs", type=int, default=None, help="if the workspace has no FP32 ResNet-18")
    parser.add_argument("--limit", type=int, help="train and fine-tune on this many images (smoke runs)")
    parser.add_argument("--eval-limit", type=int, help="test images (default: all 10,000)")
    parser.add_argument("--size", type=int, default=224, help="latency input size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    set_threads(args.threads)
    accuracy = accuracy_rows(Workspace(args.workspace), args)
    with tempfile.TemporaryDirectory() as tmp:
        latency = latency_rows(accuracy, args, Path(tmp))

    print(f"\nResNet-18 / Fashion-MNIST (32x32, 1 channel), {args.method} {args.scope} pruning, "
          f"{accuracy[0]['test_images']} test images; {platform.processor() or platform.machine()}, "
          f"{args.threads} threads\n")
    print("| ratio | MACs before -> after | MACs reduction | params before -> after | FP32 top-1 % | pruned % "
          "| drop (pp) | fine-tune epochs / min | pruned int8 % | pruned int8 drop vs FP32 (pp) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in accuracy:
        print(f"| {r['ratio']} | {r['macs_before'] / 1e6:.1f} M -> {r['macs_after'] / 1e6:.1f} M | "
              f"{r['macs_ratio']:.2f}x | {r['params_before'] / 1e6:.2f} M -> {r['params_after'] / 1e6:.2f} M | "
              f"{r['top1_before']:.2f} | {r['top1_pruned']:.2f} | {r['drop_pp']:+.2f} | {r['finetune_epochs']} / "
              f"{r['finetune_minutes']:.1f} | {r['top1_pruned_int8']:.2f} | {r['combined_drop_pp']:+.2f} |")
    print(f"\nLatency, batch 1, {args.size}x{args.size}x3, 1,000 classes, random weights, BN folded, median of "
          f"{args.runs} runs in 5 passes\n")
    print("| model | GMACs | runtime | precision | p50 ms | speedup vs unpruned, same precision "
          "| speedup vs unpruned FP32 |")
    print("|---|---|---|---|---|---|---|")
    for r in latency:
        print(f"| {r['model']} | {r['macs'] / 1e9:.2f} | {r['runtime']} | {r['precision']} | {r['p50_ms']:.2f} | "
              f"{r['vs_unpruned_same_precision']:.2f}x | {r['vs_unpruned_fp32']:.2f}x |")
    results_file.write("prune_resnet18", {"model": "resnet18", "data": "fashion-mnist (accuracy rows)",
                                          "input_size": {"accuracy": "the model's own (32)", "latency": args.size},
                                          "threads": args.threads, "args": {k: str(v) for k, v in vars(args).items()},
                                          "accuracy": accuracy, "latency": latency})


if __name__ == "__main__":
    main()
