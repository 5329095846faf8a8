"""What channel widths a pruned ResNet-18 runs fast at: fp32 latency of chosen per-stage widths vs the original.

    python benchmarks/prune_widths.py 44-89-179-358 40-88-176-352 [--size 224] [--runs 100]

Each argument gives the widths of the four stages (the stem takes the first stage's). The models are
ResNet-18s at 3 x SIZE x SIZE with 1,000 classes and random weights (latency does not depend on them), BN
folded, exported to fp32 ONNX and OpenVINO IR as ``edgeres export`` does, and timed side by side with
``prune_resnet18.p50_ms`` (interleaved passes, a fresh session per pass). It shows why ``edgeres prune``
rounds channel counts for the ImageNet-layout ResNets (benchmarks/RESULTS.md). Prints Markdown.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from prune_resnet18 import p50_ms
from torch import nn

from edgeres import models
from edgeres.export import onnx as onnx_export
from edgeres.export import openvino as openvino_export
from edgeres.export.formats import ExportJob
from edgeres.preprocessing import Preprocessing
from edgeres.quantize.fold import fold_batchnorm

STAGES = ("layer1", "layer2", "layer3", "layer4")


def architecture(widths: tuple[int, ...]) -> dict:
    """ResNet-18's layers at the given stage widths: a block's convolutions and the residual stream of a stage
    take its width, a stage's first convolution and shortcut read the previous stage's."""
    model = models.build("resnet18", 1000, 3)
    width = dict(zip(STAGES, widths))

    def stage(name: str) -> str:
        return name.split(".")[0] if name.startswith("layer") else "layer1"  # the stem feeds layer1

    def input_width(name: str) -> int:
        s = stage(name)
        first = name.startswith(f"{s}.0.") and (name.endswith("conv1") or ".downsample." in name)
        return width[STAGES[max(STAGES.index(s) - 1, 0)]] if first else width[s]

    channels: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            channels[name] = {"in": 3 if name == "conv1" else input_width(name), "out": width[stage(name)]}
        elif isinstance(module, nn.BatchNorm2d):
            channels[name] = {"features": width[stage(name)]}
        elif isinstance(module, nn.Linear):
            channels[name] = {"in": width["layer4"], "out": 1000}
    return {"name": "resnet18", "num_classes": 1000, "in_channels": 3, "channels": channels}


def main() -> None:
    import torch_pruning as tp

    parser = argparse.ArgumentParser()
    parser.add_argument("widths", nargs="+", help="stage widths, e.g. 40-88-176-352")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    prep = Preprocessing(args.size, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    variants = {"64-128-256-512 (unpruned)": (64, 128, 256, 512)}
    variants.update({w: tuple(int(v) for v in w.split("-")) for w in args.widths})
    files, macs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, widths in variants.items():
            model = models.build_from_architecture(architecture(widths)).eval()
            macs[label] = tp.utils.count_ops_and_params(model, torch.zeros(prep.input_shape(1)))[0]
            folded = fold_batchnorm(model)
            stem = Path(tmp) / "-".join(map(str, widths))
            onnx_file = onnx_export.torch_to_onnx(folded, stem.with_suffix(".onnx"), prep.input_shape(1))
            files[(label, "onnxruntime")] = onnx_file
            files[(label, "openvino")] = openvino_export.export(ExportJob(
                precision="fp32", out_path=stem.with_suffix(".xml"), preprocessing=prep, torch_model=folded,
                float_onnx=lambda f=onnx_file: f, calibration=lambda: None, metadata={}))
        x = np.random.default_rng(0).standard_normal(prep.input_shape(1)).astype(np.float32)
        p50 = p50_ms(files, x, args.threads, args.runs)
    base = next(iter(variants))
    print(f"\nResNet-18 fp32, batch 1, {args.size}x{args.size}x3, {args.threads} threads, median of {args.runs} "
          f"runs in 5 passes; {platform.processor() or platform.machine()}\n")
    print("| stage widths | MACs reduction | onnxruntime ms | speedup | OpenVINO ms | speedup |")
    print("|---|---|---|---|---|---|")
    for label in variants:
        ort, ov = p50[(label, "onnxruntime")], p50[(label, "openvino")]
        print(f"| {label} | {macs[base] / macs[label]:.2f}x | {ort:.2f} | {p50[(base, 'onnxruntime')] / ort:.2f}x "
              f"| {ov:.2f} | {p50[(base, 'openvino')] / ov:.2f}x |")


if __name__ == "__main__":
    main()
