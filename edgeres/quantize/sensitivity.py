"""Per-layer sensitivity to int8, and the accuracy budget that keeps the fewest layers in float.

A layer's sensitivity is measured the direct way: quantize the whole model except that one layer (its
weights and inputs stay float) and see how much validation accuracy comes back, and how close the logits
get to FP32 (SQNR). The budget search then keeps layers in float, most sensitive first, re-quantizing each
time, until the drop against FP32 fits. Accuracy is measured on the held-out validation split, never on
the test split that the final numbers are reported on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeres.console import progress
from edgeres.runtimes.numerics import sqnr_db
from edgeres.quantize import engine


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean() * 100)


@dataclass
class Evaluator:
    """Validation images, labels and the FP32 reference logits."""

    x: torch.Tensor
    y: np.ndarray
    reference: np.ndarray

    def score(self, model: nn.Module) -> dict[str, float]:
        logits = logits_of(model, self.x)
        return {"top1": top1(logits, self.y), "sqnr_db": sqnr_db(logits, self.reference)}


def analyze(float_model: nn.Module, calibration: torch.Tensor, evaluator: Evaluator, int8_top1: float,
            estimator: str, bias_correction: str, already_float: list[str] = ()) -> list[dict]:
    """One row per quantizable layer: val top-1 and logit SQNR with that layer left in float (beside
    ``already_float``, which get no row)."""
    rows = []
    layers = [layer for layer in engine.quantizable_layers(float_model) if layer not in already_float]
    with progress() as bar:
        task = bar.add_task("sensitivity", total=len(layers), status="")
        for layer in layers:
            model = engine.ptq(float_model, calibration, estimator, bias_correction, [*already_float, layer])
            score = evaluator.score(model)
            rows.append({"layer": layer, "top1_with_layer_float": round(score["top1"], 3),
                         "recovery_pp": round(score["top1"] - int8_top1, 3), "sqnr_db": round(score["sqnr_db"], 2)})
            bar.update(task, advance=1, status=layer)
    return sorted(rows, key=lambda r: (r["recovery_pp"], r["sqnr_db"]), reverse=True)


def fit_budget(float_model: nn.Module, calibration: torch.Tensor, evaluator: Evaluator, fp32_top1: float,
               max_drop: float, sensitivity: list[dict], estimator: str, bias_correction: str,
               max_float_layers: int | None = None,
               already_float: list[str] = ()) -> tuple[nn.Module, list[str], list[dict], bool]:
    """Keep the most sensitive layers in float (after ``already_float``), one more at a time, until the val drop
    is within ``max_drop`` pp. Returns (model, float layers, the search's trail, whether the budget was met);
    when it cannot be met, the model with the smallest drop found."""
    limit = len(sensitivity) if max_float_layers is None else min(max_float_layers, len(sensitivity))
    trail: list[dict] = []
    best: tuple[float, nn.Module, list[str]] | None = None
    kept: list[str] = list(already_float)
    for row in sensitivity[:limit]:
        kept = kept + [row["layer"]]
        model = engine.ptq(float_model, calibration, estimator, bias_correction, kept)
        score = evaluator.score(model)
        drop = fp32_top1 - score["top1"]
        trail.append({"float_layers": list(kept), "val_top1": round(score["top1"], 3), "drop_pp": round(drop, 3)})
        if best is None or drop < best[0]:
            best = (drop, model, list(kept))
        if drop <= max_drop:
            return model, kept, trail, True
    assert best is not None
    return best[1], best[2], trail, False
