"""Recipes: the road train -> prune -> quantize -> export -> bench stated once, in YAML, validated.

Validation happens before any work: unknown keys, wrong types and impossible combinations (int8 export
without a quantize step, a device that runs none of the targets, a missing dataset) are refused with the
file, the key and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeres.errors import EdgeresError
from edgeres.yamlfile import read_mapping

STEP_ORDER = ("train", "prune", "quantize", "export", "bench")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainStep(_Strict):
    epochs: Optional[int] = Field(None, ge=0, description="None: the model's default")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    limit: Optional[int] = Field(None, ge=1, description="train on a seeded subset of this many images")
    eval_limit: Optional[int] = Field(None, ge=1)


class PruneStep(_Strict):
    ratio: float = Field(gt=0, lt=1)
    method: Literal["l1", "l2", "taylor", "bn-scale"] = "l1"
    scope: Literal["uniform", "global"] = Field("uniform", description="the same fraction from every layer, "
                                                "or channels ranked across all layers")
    finetune_epochs: int = Field(3, ge=0)
    iterative: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0)
    round_to: Optional[int] = Field(None, ge=1, description="channel counts kept multiples of this")
    limit: Optional[int] = Field(None, ge=1)
    eval_limit: Optional[int] = Field(None, ge=1)


class QuantizeStep(_Strict):
    method: Literal["ptq", "qat"] = "ptq"
    calib_samples: int = Field(300, ge=1)
    estimator: Literal["default", "minmax", "mean-minmax", "percentile", "mse"] = "default"
    bias_correction: Literal["none", "fast"] = "none"
    epochs: int = Field(1, ge=1, description="QAT epochs")
    lr: float = Field(0.002, gt=0)
    max_drop: Optional[float] = Field(None, ge=0, description="accuracy budget, percentage points")
    train_limit: Optional[int] = Field(None, ge=1)
    val_limit: Optional[int] = Field(2000, ge=1)
    eval_limit: Optional[int] = Field(None, ge=1)


class ExportStep(_Strict):
    targets: list[Literal["onnx", "openvino", "tflite"]] = Field(default_factory=lambda: ["onnx", "openvino", "tflite"],
                                                                 min_length=1)
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default_factory=lambda: ["fp32", "fp16", "int8"],
                                                               min_length=1)
    io: Literal["int8", "float"] = "int8"
    verify: bool = True
    verify_limit: int = Field(500, ge=1)
    calib_samples: int = Field(200, ge=1)


class BenchStep(_Strict):
    devices: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    eval_limit: Optional[int] = Field(1000, ge=1)
    estimate: bool = False
    threads: Optional[int] = Field(None, ge=1)
    min_runs: Optional[int] = Field(None, ge=1)
    min_seconds: Optional[float] = Field(None, ge=0)
    rounds: Optional[int] = Field(None, ge=1)


class Steps(_Strict):
    train: Optional[TrainStep] = None
    prune: Optional[PruneStep] = None
    quantize: Optional[QuantizeStep] = None
    export: Optional[ExportStep] = None
    bench: Optional[BenchStep] = None


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
    description: str = ""
    model: str
    dataset: Literal["fashion-mnist", "cifar10", "imagefolder"] = "fashion-mnist"
    data: Optional[Path] = None
    weights: Optional[str] = Field(None, description="'imagenet' or an FP32 checkpoint file to start from")
    steps: Steps

    @model_validator(mode="after")
    def _combinations(self) -> "Recipe":
        s = self.steps
        if not any(getattr(s, name) for name in STEP_ORDER):
            raise ValueError("steps: name at least one of " + ", ".join(STEP_ORDER))
        if s.export and "int8" in s.export.precisions and not s.quantize:
            raise ValueError("steps.export.precisions has int8 but there is no quantize step")
        if s.bench and not s.export:
            raise ValueError("steps.bench needs an export step to measure")
        return self

    def enabled_steps(self) -> list[str]:
        return [name for name in STEP_ORDER if getattr(self.steps, name) is not None]


def load(path: Path | str) -> Recipe:
    """Read and validate a recipe file; every problem is one clear message naming the file and key."""
    path = Path(path)
    raw = read_mapping(path, "recipe", "name, model, steps, ...")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise EdgeresError(f"recipe {path}: {key}: {message}{more}") from None
    if recipe.data is not None and not recipe.data.is_absolute():
        recipe.data = (path.parent / recipe.data).resolve()
    _check_references(recipe, path)
    return recipe


def _check_references(recipe: Recipe, path: Path) -> None:
    """What the schema cannot see: the model, the dataset on disk, the devices and their runtimes."""
    from edgeres import data, devices, models
    from edgeres.export.formats import FORMATS

    try:
        models.get_spec(recipe.model)
        data.check_available(recipe.dataset, recipe.data)
        if recipe.steps.bench and recipe.steps.export:
            wanted = {FORMATS[t].runtime: t for t in recipe.steps.export.targets}
            for name in recipe.steps.bench.devices:
                runs = devices.get(name).runtimes.names()
                if not set(wanted) & set(runs):
                    raise EdgeresError(f"device {name} runs none of the export targets "
                                       f"{', '.join(recipe.steps.export.targets)} (its runtimes: {', '.join(runs)})")
    except EdgeresError as exc:
        raise EdgeresError(f"recipe {path}: {exc}") from None
