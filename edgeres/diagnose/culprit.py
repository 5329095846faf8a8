"""Which layers to blame, and what keeping them in float would buy.

A point's blame is the noise that appeared since the previous point (``metrics.added_noise``). For the
worst points of the quantization itself (the torch int8 model against FP32) the quantize step is re-run
with that point's layers kept in float (NNCF's ignored scope, as ``quantize --keep-float`` does), on the
quantize artifact's own calibration images and settings, and the result is measured on validation images:
top-1 and top-1 agreement with FP32, beside the int8 model's own. The point whose trial recovered most is
then tried layer by layer (each of its convolutions alone in float), so the fix names the layer itself
where one layer carries the loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeres.diagnose.metrics import agreement
from edgeres.diagnose.points import Point

NAMED = 3  # culprits named per comparison
NOISE_FLOOR_DB = 50.0  # a point that adds less noise than this (1e-5 of its signal's power) is not named


def culprits(rows: list[dict], count: int = NAMED) -> list[str]:
    """The points that added the most noise (lowest ``added_db``), worst first; only points that added
    noise above ``NOISE_FLOOR_DB`` (an fp16 file faithful to FP32 names none)."""
    ranked = sorted((r for r in rows if r["added_db"] < NOISE_FLOOR_DB), key=lambda r: r["added_db"])
    return [r["point"] for r in ranked[:count]]


def layers_of(point: Point, model: nn.Module) -> list[str]:
    """The quantizable layers (Conv2d / Linear module names) that make a point's tensor: a convolution itself, a
    block's own, the stem's convolutions, the classifier for the logits."""
    from edgeres.quantize.engine import quantizable_layers

    layers = quantizable_layers(model)
    if point.kind in ("conv", "shortcut"):
        return [point.name]
    if point.kind == "block":
        return [name for name in layers if name.startswith(point.name + ".")]
    if point.kind == "logits":
        return layers[-1:]
    return [name for name in layers if not name.startswith("layer")][:-1] or layers[:1]


def recover(*, float_model: nn.Module, points: list[Point], calibration: torch.Tensor, x: torch.Tensor,
            labels: np.ndarray, settings: dict, already_float: list[str]) -> list[dict]:
    """For each point, re-quantize with its layers (and ``already_float``) kept in float, then with each layer
    of the point that recovered most alone (rows marked ``alone``); val top-1 and agreement with FP32 of
    each, and of the int8 model re-made as it was (the baseline)."""
    from edgeres.console import progress
    from edgeres.quantize import engine
    from edgeres.quantize.sensitivity import logits_of, top1

    reference = logits_of(float_model, x)

    def trial(extra: list[str]) -> dict:
        model = engine.ptq(float_model, calibration, settings["estimator"], settings["bias_correction"],
                           list(dict.fromkeys([*already_float, *extra])))
        logits = logits_of(model, x)
        return {"top1": round(top1(logits, labels), 3), "agreement": round(agreement(logits, reference), 3)}

    with progress() as bar:
        task = bar.add_task("keep-float trials", total=len(points) + 1, status="as quantized")

        def row(point: str, layers: list[str], **extra) -> dict:
            bar.update(task, status=", ".join(layers) if extra else point)
            got = trial(layers)
            bar.update(task, advance=1)
            return {"point": point, "float_layers": layers, **extra, **got,
                    "recovery_pp": round(got["top1"] - base["top1"], 3),
                    "agreement_gain_pp": round(got["agreement"] - base["agreement"], 3)}

        base = trial([])
        bar.update(task, advance=1)
        rows = [row(point.name, layers_of(point, float_model)) for point in points]
        best = max(rows, key=gain, default=None)
        if best and len(best["float_layers"]) > 1:  # which of its layers carries the loss
            bar.update(task, total=len(points) + 1 + len(best["float_layers"]))
            rows += [row(best["point"], [layer], alone=True) for layer in best["float_layers"]]
    fp32 = round(top1(reference, labels), 3)
    return [{"point": "(as quantized)", "float_layers": list(already_float), **base, "fp32_top1": fp32}] + rows


def gain(row: dict) -> tuple[float, float, int]:
    """How a trial ranks as a fix: val top-1 recovered, then agreement gained, then fewer layers in float."""
    return row["recovery_pp"], row["agreement_gain_pp"], -len(row["float_layers"])
