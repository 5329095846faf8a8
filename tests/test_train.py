"""FP32 training reaches a sane accuracy on real data, and eval agrees with the manifest."""

from __future__ import annotations

from edgeres.evaluate import run_eval
from edgeres.workspace import Workspace


def test_trained_checkpoints_learn(trained_workspace):
    ws = Workspace(trained_workspace)
    for name in ("resnet20", "resnet18"):
        artifact = ws.latest("train", model=name)
        top1 = artifact.manifest["metrics"]["test"]["top1"]
        assert top1 > 80, f"{name} reached only {top1:.1f}% after 3 short epochs"  # chance is 10 %
        assert artifact.manifest["preprocessing"]["channels"] == 1
        again = run_eval(artifact.id, ws, limit=500)
        assert abs(again["top1"] - top1) < 1e-6


def test_train_config_refuses_nan_infinite_and_unbounded_values():
    import pytest

    from edgeres.errors import EdgeresError
    from edgeres.train import TrainConfig

    for kwargs, needle in [({"lr": float("nan")}, "--lr nan: Input should be a finite number"),
                           ({"lr": float("inf")}, "--lr inf"), ({"lr": 0}, "--lr 0: Input should be greater than 0"),
                           ({"label_smoothing": float("nan")}, "--label-smoothing nan"),
                           ({"epochs": 10**6}, "--epochs 1000000: Input should be less than or equal to 10000"),
                           ({"amp": "fp8"}, "--amp 'fp8': Input should be 'auto', 'bf16' or 'off'")]:
        with pytest.raises(EdgeresError, match=needle):
            TrainConfig(**kwargs)
