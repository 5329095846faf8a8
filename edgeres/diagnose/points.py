"""The matching points of a ResNet where every format's tensors are compared with torch's: the stem's
output, every residual block's output (in the order the network runs them) and the logits.

Why block outputs: they exist, under names or shapes that survive conversion, in every format. torch's
ONNX export names each node after the module that made it (``/layer2/layer2.1/relu2/Relu``), OpenVINO keeps
those names as its operators' friendly names, and the int8 quantizer that follows a block's last ReLU is
named in the same scope; so in ONNX and OpenVINO a block's output is the last tensor made inside its scope
that is read outside it (for int8 files, after the block's own quantizer). TFLite's converter loses the
names (``_taps_tflite`` matches by structure instead). Convolution outputs inside a block are not compared:
TFLite fuses them with their bias, activation and quantization, and no name leads back to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LOGITS = "logits"


@dataclass(frozen=True)
class Point:
    """A comparison point: ``name`` is the torch module whose output it is (``logits``: the model's)."""

    name: str
    kind: str  # "stem" | "block" | "logits"

    @property
    def scope(self) -> str:
        """The ONNX / OpenVINO name prefix of the module's nodes: ``layer2.1`` -> ``/layer2/layer2.1/``."""
        parts = self.name.split(".")
        return "/" + "/".join(".".join(parts[:i + 1]) for i in range(len(parts))) + "/"


def find_points(model: nn.Module) -> list[Point]:
    """Stem, blocks, logits of a torchvision or CIFAR ResNet (``layer1``.. ``layer4`` of blocks)."""
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if not stages:
        raise ValueError("the model has no layer1.. stages: not a ResNet")
    children = [name for name, _ in model.named_children()]
    before = [name for name in children[:children.index(stages[0])]
              if not any(True for _ in model.get_submodule(name).parameters())]
    points = [Point(before[-1], "stem")] if before else []
    for stage in stages:
        points += [Point(f"{stage}.{block}", "block") for block, _ in model.get_submodule(stage).named_children()]
    return points + [Point(LOGITS, "logits")]


@torch.no_grad()
def torch_taps(model: nn.Module, points: list[Point], x: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """Each point's tensor for images ``x`` (NCHW float32), from forward hooks on the points' modules."""
    found: dict[str, list[np.ndarray]] = {p.name: [] for p in points}
    hooks = []
    for p in points:
        if p.kind != "logits":
            hooks.append(model.get_submodule(p.name).register_forward_hook(
                lambda _m, _i, out, name=p.name: found[name].append(out.detach().float().numpy().copy())))
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
    """One operator of a converted graph, by the names its format gives it and its tensors."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def scoped_outputs(nodes: list[GraphNode], graph_outputs: set[str], points: list[Point]) -> dict[str, str]:
    """Point name -> the tensor that leaves its scope: the last one (in the graph's order) made by a node
    named inside the scope and read by a node outside it or by the graph's output. Points with no node
    in the graph are left out."""
    readers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.inputs:
            readers.setdefault(name, []).append(index)
    found = {}
    for p in points:
        if p.kind == "logits":
            continue
        inside = {i for i, node in enumerate(nodes) if node.name.startswith(p.scope)}
        leaving = [out for i in sorted(inside) for out in nodes[i].outputs
                   if out in graph_outputs or any(r not in inside for r in readers.get(out, ()))]
        if leaving:
            found[p.name] = leaving[-1]
    return found
