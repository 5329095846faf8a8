"""Recipes: the road (import or train) -> prune -> quantize -> export -> bench stated once, in YAML, validated.

A recipe says everything the command line can: the model, the data and the preprocessing a checkpoint
was trained with (``weights``, ``mean``, ``std``, ``input_size``, ...), and each step's options.
``weights`` without a ``train`` step imports the checkpoint as it is; with one, training starts from it.
``edgeres run R --set train.epochs=1`` changes a key for one run (step names stand for ``steps.NAME``;
``--set bench=null`` drops a step), so a shipped recipe is shrunk or redirected without editing it.

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

STEP_ORDER = ("import", "train", "prune", "quantize", "export", "bench")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ImportStep(_Strict):
    """Implied by ``weights`` without a ``train`` step: the checkpoint registered as it is."""

    eval_limit: Optional[int] = Field(None, ge=1)


class TrainStep(_Strict):
    epochs: Optional[int] = Field(None, ge=0, le=10000, description="None: the model's default")
    batch_size: int = Field(128, ge=1, le=65536)
    lr: float = Field(0.1, gt=0, le=10)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    erase: float = Field(0.0, ge=0, le=1, description="probability of random erasing per training image")
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="bf16 autocast; auto: where the CPU has it")
    seed: int = Field(0, ge=0, lt=2**32)
    limit: Optional[int] = Field(None, ge=1, description="train on a seeded subset of this many images")
    eval_limit: Optional[int] = Field(None, ge=1)


class PruneStep(_Strict):
    ratio: Optional[float] = Field(None, gt=0, lt=1, description="structured methods; None: 0.3")
    method: Literal["l1", "l2", "taylor", "bn-scale", "magnitude"] = "l1"
    sparsity: Optional[float] = Field(None, gt=0, lt=1, description="method magnitude: fraction of weights zeroed")
    scope: Literal["uniform", "global"] = Field("uniform", description="the same fraction from every layer, "
                                                "or channels ranked across all layers")
    finetune_epochs: int = Field(3, ge=0)
    iterative: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0)
    round_to: Optional[int] = Field(None, ge=1, description="channel counts kept multiples of this")
    limit: Optional[int] = Field(None, ge=1)
    val_limit: Optional[int] = Field(2000, ge=1)
    eval_limit: Optional[int] = Field(None, ge=1)


class QuantizeStep(_Strict):
    method: Literal["ptq", "qat"] = "ptq"
    calib_samples: int = Field(300, ge=1)
    estimator: Literal["default", "minmax", "mean-minmax", "percentile", "mse"] = "default"
    bias_correction: Literal["none", "fast"] = "none"
    epochs: int = Field(1, ge=1, description="QAT epochs")
    lr: float = Field(0.002, gt=0)
    max_drop: Optional[float] = Field(None, ge=0, le=100, description="accuracy budget, percentage points")
    strict: bool = Field(False, description="fail when the budget cannot be met")
    analyze: bool = Field(False, description="save per-layer sensitivity")
    train_limit: Optional[int] = Field(None, ge=1)
    val_limit: Optional[int] = Field(2000, ge=1)
    eval_limit: Optional[int] = Field(None, ge=1)


class ExportStep(_Strict):
    targets: list[Literal["onnx", "openvino", "tflite"]] = Field(default_factory=lambda: ["onnx", "openvino", "tflite"],
                                                                 min_length=1)
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default_factory=lambda: ["fp32", "fp16", "int8"],
                                                               min_length=1)
    io: Literal["int8", "float"] = "int8"
    edgetpu: bool = Field(False, description="compile the TFLite int8 file with edgetpu_compiler")
    verify: bool = True
    verify_limit: int = Field(500, ge=1)
    calib_samples: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _edgetpu_is_full_integer(self) -> "ExportStep":
        if self.edgetpu and ("tflite" not in self.targets or self.precisions != ["int8"] or self.io != "int8"):
            raise ValueError("edgetpu compiles full-integer int8 TFLite files: it takes targets including tflite, "
                             "precisions [int8] and io int8")
        return self


class BenchStep(_Strict):
    devices: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    targets: Optional[list[Literal["onnx", "openvino", "tflite"]]] = Field(None, min_length=1,
                                                                          description="None: this run's exports")
    precisions: Optional[list[Literal["fp32", "fp16", "int8"]]] = Field(None, min_length=1)
    eval_limit: Optional[int] = Field(None, ge=1, description="None: 1000, or the device's emulation cap")
    estimate: bool = False
    emulate: bool = False
    threads: Optional[int] = Field(None, ge=1, le=1024)
    min_runs: Optional[int] = Field(None, ge=1, le=100000)
    min_seconds: Optional[float] = Field(None, ge=0, le=600)
    warmup: Optional[int] = Field(None, ge=0, le=10000)
    rounds: Optional[int] = Field(None, ge=1, le=100)


class Steps(_Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    import_: Optional[ImportStep] = Field(None, alias="import")
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
    weights: Optional[str] = Field(None, description="'imagenet' or an FP32 checkpoint file: imported as it is, "
                                                     "or trained from with a train step")
    trust_pickle: bool = Field(False, description="the weights file may hold pickled objects (runs their code)")
    num_classes: Optional[int] = Field(None, ge=2, le=100000)
    input_size: Optional[int] = Field(None, ge=8, le=4096)
    resize: Optional[int] = Field(None, ge=0, le=8192, description="shorter side before the center crop; 0: none")
    mean: Optional[list[float]] = Field(None, min_length=1, max_length=3)
    std: Optional[list[float]] = Field(None, min_length=1, max_length=3)
    validation: Optional[Literal["holdout", "test-split"]] = None
    steps: Steps

    @model_validator(mode="after")
    def _combinations(self) -> "Recipe":
        s = self.steps
        if self.weights and self.weights != "imagenet" and not s.train and not s.import_:
            s.import_ = ImportStep()  # a checkpoint without training: import it as it is
        if s.import_ and s.train:
            raise ValueError("steps: import and train both make the FP32 model; keep one")
        if s.import_ and (not self.weights or self.weights == "imagenet"):
            raise ValueError("steps.import needs weights: a checkpoint file")
        if not any(self.step(name) for name in STEP_ORDER):
            raise ValueError("steps: name at least one of " + ", ".join(STEP_ORDER[1:]))
        if s.export and "int8" in s.export.precisions and not s.quantize:
            raise ValueError("steps.export.precisions has int8 but there is no quantize step")
        if s.bench and not s.export:
            raise ValueError("steps.bench needs an export step to measure")
        return self

    def step(self, name: str):
        """A step's options, None when the recipe does not have it."""
        return getattr(self.steps, "import_" if name == "import" else name)

    def enabled_steps(self) -> list[str]:
        return [name for name in STEP_ORDER if self.step(name) is not None]


def load(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read and validate a recipe file, with ``--set KEY=VALUE`` overrides applied first; every problem is
    one clear message naming the file and key. Relative paths in the file are relative to the file; in an
    override, to the working directory."""
    path = Path(path)
    raw = read_mapping(path, "recipe", "name, model, steps, ...")
    for key in ("data", "weights"):
        if isinstance(raw.get(key), str) and raw[key] != "imagenet" and not Path(raw[key]).is_absolute():
            raw[key] = str((path.parent / raw[key]).resolve())
    raw = apply_overrides(raw, overrides)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise EdgeresError(f"recipe {path}: {key}: {message}{more}") from None
    _check_references(recipe, path)
    return recipe


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """``KEY=VALUE`` items (VALUE in YAML: ``3``, ``[onnx, tflite]``, ``null`` to remove) set into the raw
    recipe; a first key that names a step stands for ``steps.STEP``."""
    import copy

    import yaml

    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise EdgeresError(f"--set {item!r}: expected KEY=VALUE", hint="e.g. --set train.epochs=1 or "
                               "--set data=/path/to/cifar-10-batches-py")
        if parts[0] in STEP_ORDER or parts[0] == "import_":
            parts = ["steps", *parts]
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise EdgeresError(f"--set {item!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if parts[-1] in ("data", "weights") and len(parts) == 1 and isinstance(value, str) and value != "imagenet":
            value = str(Path(value).expanduser().resolve())
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise EdgeresError(f"--set {item!r}: {part} is not a mapping in the recipe")
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return raw


def _check_references(recipe: Recipe, path: Path) -> None:
    """What the schema cannot see: the model, the dataset on disk, the devices and their runtimes."""
    from edgeres import data, devices, models
    from edgeres.export.formats import FORMATS

    try:
        models.get_spec(recipe.model)
        data.check_available(recipe.dataset, recipe.data)
        if recipe.weights and recipe.weights != "imagenet" and not Path(recipe.weights).is_file():
            raise EdgeresError(f"weights: checkpoint {recipe.weights} not found")
        if recipe.steps.bench and recipe.steps.export:
            wanted = {FORMATS[t].runtime: t for t in recipe.steps.bench.targets or recipe.steps.export.targets}
            for name in recipe.steps.bench.devices:
                runs = devices.get(name).runtimes.names()
                if not set(wanted) & set(runs):
                    raise EdgeresError(f"device {name} runs none of the export targets "
                                       f"{', '.join(recipe.steps.export.targets)} (its runtimes: {', '.join(runs)})")
    except EdgeresError as exc:
        raise EdgeresError(f"recipe {path}: {exc}") from None
