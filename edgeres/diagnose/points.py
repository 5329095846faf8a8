"""The matching points of a ResNet where every format's tensors are compared with torch's, in the order the
network makes them: the stem's output; in every residual block, each convolution's output (its folded batch
norm and, where one follows, its ReLU applied, as the formats fuse them) and then the block's output; the
logits.

Each point is a tensor that exists in every format, int8 ones too, where it is what a quantizer writes: torch's
ONNX export names each node after the module that made it (``/layer2/layer2.1/conv1/Conv``), OpenVINO keeps those
names as its operators' friendly names, and an int8 quantizer is named in the scope of the operator whose output
it quantizes. So in ONNX and OpenVINO a block's or a last convolution's output is the last tensor made inside its
scope and read outside it, and a convolution followed by a ReLU is the tensor the next convolution reads (the
shared ReLU module has no scope of its own). TFLite's converter loses the names (``taps_tflite`` matches by
structure instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeres.errors import EdgeresError

LOGITS = "logits"
BLOCK_LEVEL = ("stem", "block")  # the points that split a network into consecutive parts
SHORTCUT_SCOPES = ("downsample", "shortcut")  # a block's child that holds its shortcut's layers


def scope_of(module: str) -> str:
    """The ONNX / OpenVINO name prefix of a module's nodes, as torch's exporter writes it: each level is the
    module's name from its last non-numeric part (``layer2.0.downsample.0`` ->
    ``/layer2/layer2.0/downsample/downsample.0/``)."""
    parts = module.split(".")
    levels = []
    for i in range(len(parts)):
        start = i
        while start > 0 and parts[start].isdigit():
            start -= 1
        levels.append(".".join(parts[start:i + 1]))
    return "/" + "/".join(levels) + "/"


def block_of(name: str, blocks: list[str]) -> str:
    """The block (of ``blocks``, module names) an operator named ``name`` belongs to, by its scope found anywhere
    in the name (onnxruntime renames some nodes it rewrites: ``InsertedPrecisionFreeCast_/layer1/..``)."""
    return next((block for block in blocks if scope_of(block) in name), "(other)")


@dataclass(frozen=True)
class Point:
    """A comparison point: ``name`` is the torch module whose output it is (``logits``: the model's).
    ``feeds``: for a convolution whose ReLU follows, the next convolution, whose input the point is."""

    name: str
    kind: str  # "stem" | "conv" (a block's main path) | "shortcut" (its shortcut's convolution) | "block" | "logits"
    feeds: str | None = None

    @property
    def scope(self) -> str:
        return scope_of(self.name)

    @property
    def block(self) -> str:
        """The block a convolution's point lies in (a block's or the stem's: its own name)."""
        if self.kind not in ("conv", "shortcut"):
            return self.name
        parts = self.name.split(".")
        return ".".join(parts[:2])


def _block_points(name: str, block: nn.Module) -> list[Point]:
    """A residual block's convolutions, main path first (each but the last feeding the next through a
    ReLU), then its shortcut's, then the block itself."""
    convs = [f"{name}.{child}" for child, m in block.named_modules() if isinstance(m, nn.Conv2d)]
    shortcut = [c for c in convs if c[len(name) + 1:].split(".")[0] in SHORTCUT_SCOPES]
    main = [c for c in convs if c not in shortcut]
    points = [Point(conv, "conv", feeds=after) for conv, after in zip(main, main[1:])]
    points += [Point(main[-1], "conv")] if main else []
    return points + [Point(conv, "shortcut") for conv in shortcut] + [Point(name, "block")]


def find_points(model: nn.Module) -> list[Point]:
    """Stem, each block's convolutions and output, logits of a torchvision or CIFAR ResNet (``layer1``..
    stages of blocks)."""
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if not stages:
        raise ValueError("the model has no layer1.. stages: not a ResNet")
    children = [name for name, _ in model.named_children()]
    before = [name for name in children[:children.index(stages[0])]
              if not any(True for _ in model.get_submodule(name).parameters())]
    points = [Point(before[-1], "stem")] if before else []
    for stage in stages:
        for child, block in model.get_submodule(stage).named_children():
            points += _block_points(f"{stage}.{child}", block)
    return points + [Point(LOGITS, "logits")]


def block_level(points: list[Point]) -> list[Point]:
    """The stem and the blocks: the points that split the network into consecutive parts."""
    return [p for p in points if p.kind in BLOCK_LEVEL]


@torch.no_grad()
def torch_taps(model: nn.Module, points: list[Point], x: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Each point's tensor for images ``x`` (NCHW float32), from forward hooks on the points' modules (a
    convolution that feeds another: a pre-hook on that one, which reads its output after the ReLU). The model
    has its batch norms folded (``quantize.fold``), as the files do: a convolution's output is then its own."""
    found: dict[str, list[np.ndarray]] = {p.name: [] for p in points}

    def keep(name: str, tensor: torch.Tensor) -> None:
        found[name].append(tensor.detach().float().numpy().copy())

    hooks = []
    for p in points:
        if p.feeds:
            hooks.append(model.get_submodule(p.feeds).register_forward_pre_hook(
                lambda _m, args, name=p.name: keep(name, args[0])))
        elif p.kind != "logits":
            hooks.append(model.get_submodule(p.name).register_forward_hook(
                lambda _m, _i, out, name=p.name: keep(name, out)))
    model.eval()
    try:
        for i in range(0, len(x), batch):
            found[LOGITS].append(model(torch.from_numpy(x[i:i + batch])).float().numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return {name: np.concatenate(parts) for name, parts in found.items()}


@dataclass(frozen=True)
class GraphNode:
    """One operator of a converted graph, by the names its format gives it, its type and its tensors."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    op: str = ""


CONV_OPS = ("Conv", "Convolution")  # ONNX's, OpenVINO's


def point_tensors(nodes: list[GraphNode], graph_outputs: set[str], points: list[Point]) -> dict[str, str]:
    """Point name -> its tensor in a graph whose nodes are named after torch's modules (ONNX, OpenVINO): a
    convolution that feeds another is that one's data input; any other point is the tensor that leaves its
    scope, the last one (in the graph's order) made by a node named inside the scope and read by a node
    outside it or by the graph's output. Points with no node in the graph are left out."""
    readers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.inputs:
            readers.setdefault(name, []).append(index)
    found = {}
    for p in points:
        if p.kind == "logits":
            continue
        if p.feeds:
            conv = [node for node in nodes if node.name.startswith(scope_of(p.feeds)) and node.op in CONV_OPS]
            if conv:
                found[p.name] = conv[0].inputs[0]
            continue
        inside = {i for i, node in enumerate(nodes) if node.name.startswith(p.scope)}
        leaving = [out for i in sorted(inside) for out in nodes[i].outputs
                   if out in graph_outputs or any(r not in inside for r in readers.get(out, ()))]
        if leaving:
            found[p.name] = leaving[-1]
    return found


def require_found(found: dict, points: list[Point], *, file: str, nodes: str) -> None:
    """One clear error naming the points (the logits aside) that were not found in ``file``, whose ``nodes``
    (its ONNX nodes, its OpenVINO operators) should carry torch's module names."""
    missing = [p.name for p in points if p.kind != "logits" and p.name not in found]
    if missing:
        raise EdgeresError(f"{file}: no {nodes} named after module(s) {', '.join(missing)}",
                           hint=f"diagnose finds its points by the module names torch's ONNX exporter gives the "
                                f"{nodes}; this file was not exported by edgeres from that model")
