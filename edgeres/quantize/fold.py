"""Fold BatchNorm into the preceding convolution, keeping the module tree (and so layer names).

Quantizing after folding means the int8 weights are the ones the device runs: exported graphs carry no
BatchNormalization beside the QDQ convolutions, and the quantizer's scales apply to the final weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d (whose output nothing else reads), in place.

    The folded conv gains a bias and the BatchNorm becomes ``nn.Identity``. Works on the model's structure
    alone, so applying it to a freshly built model reproduces the folded architecture for loading."""
    model.eval()
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        prev = node.args[0]
        if (isinstance(prev, torch.fx.Node) and prev.op == "call_module"
                and isinstance(modules.get(prev.target), nn.Conv2d) and len(prev.users) == 1):
            _set_module(model, prev.target, fuse_conv_bn_eval(modules[prev.target], modules[node.target]))
            _set_module(model, node.target, nn.Identity())
    return model
