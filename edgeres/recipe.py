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
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeres.data_choices import DATASETS, VALIDATIONS
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.yamlfile import read_mapping

MAX_EPOCHS = 10_000
STEP_ORDER = ("import", "train", "prune", "quantize", "export", "bench", "tune")


# "all": every format (export: every one whose extra is installed, the others named; a recipe needs them all)
Targets = list[Literal[(*FORMATS, "all")]]
Precisions = Annotated[list[Literal[(*PRECISIONS, "all")]], AfterValidator(
    lambda chosen: list(PRECISIONS) if "all" in chosen else list(dict.fromkeys(chosen)))]


def formats(targets: list[str]) -> list[str]:
    """Target names with ``all`` spelled out."""
    return list(FORMATS) if "all" in targets else targets


EvalLimit = Annotated[Optional[int], Field(ge=1, description="Evaluate on a seeded subset of this many test images.")]
ValLimit = Annotated[Optional[int], Field(ge=1, description="Validation images that make the step's "
                                          "decisions (best epoch, accuracy budget, sensitivity).")]
Epochs = Annotated[Optional[int], Field(ge=0, le=MAX_EPOCHS)]
CalibImages = Annotated[int, Field(ge=1, le=100000)]
# Each timed run and second is spent once per variant and round, in a process bench gives 900 s.
MinRuns = Annotated[Optional[int], Field(ge=1, le=100000, description="Timed batch-1 runs, at least.")]
MinSeconds = Annotated[Optional[float], Field(ge=0, le=600, description="Seconds of timed runs, at least.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Origin(_Strict):
    """Where the FP32 model comes from: its data, its preprocessing and a checkpoint (``train``, ``import``)."""

    dataset: Literal[DATASETS] = Field("fashion-mnist", description="fashion-mnist (embedded), cifar10 or "
                                       "imagefolder.")
    data: Optional[Path] = Field(None, description="Dataset directory: required for cifar10 and imagefolder "
                                 "(fashion-mnist: /usr/share/datasets/fashion-mnist).")
    weights: Optional[str] = Field(None, description="'imagenet' or an FP32 checkpoint file: fine-tuned from "
                                   "(a classifier of another size starts fresh), or imported as it is.")
    trust_pickle: bool = Field(False, description="Load a weights checkpoint even if it holds pickled Python "
                               "objects. Unpickling runs the file's code: only for files you trust.")
    num_classes: Optional[int] = Field(None, ge=2, le=100000, description="Classifier size; default: the "
                                       "dataset's.")
    input_size: Optional[int] = Field(None, ge=8, le=4096, description="Input size; default: the model family's "
                                      "for the dataset.")
    resize: Optional[int] = Field(None, ge=0, le=8192, description="Images not already at the input size: "
                                  "shorter side resized to this, then center-cropped; default: input size / 0.875 "
                                  "for ImageNet-layout models on image folders, else the input size; 0: the "
                                  "input size.")
    mean: Optional[list[float]] = Field(None, min_length=1, max_length=3, description="Normalization mean: one "
                                        "value, or one per channel (repeat the option).")
    std: Optional[list[float]] = Field(None, min_length=1, max_length=3, description="Normalization std: one "
                                       "value, or one per channel (repeat the option).")
    validation: Optional[Literal[tuple(VALIDATIONS)]] = Field(
        None, description="Images for decisions: holdout (1/12 of the training images, kept out of training) or "
        "test-split (20 % of the test split; the other 80 % is reported); default: test-split for a checkpoint "
        "file, else holdout.")


class ImportStep(_Strict):
    """Implied by ``weights`` without a ``train`` step: the checkpoint registered as it is."""

    eval_limit: EvalLimit = None


class Training(_Strict):
    """How a network trains: the ``train`` step's options, which ``train.TrainConfig`` extends for the
    fine-tuning inside prune and QAT."""

    epochs: Epochs = Field(None, description="Training epochs; default: the model's (13 for the ImageNet layout, "
                           "8 for CIFAR ResNets).")
    batch_size: int = Field(128, ge=1, le=65536, description="Training batch size.")
    lr: float = Field(0.1, gt=0, le=10, description="Peak learning rate of the one-cycle schedule.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing; it also bounds the logits, "
                                   "which full-integer int8 quantizes.")
    erase: float = Field(0.0, ge=0, le=1, description="Probability of random erasing (one rectangle of each "
                         "training image set to 0).")
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="Mixed precision: bf16 autocast (weights stay "
                                                "float32); auto uses it where the device computes bf16 natively "
                                                "(CPUs with AVX512-BF16 or AMX, CUDA GPUs with bf16).")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the initialization, the shuffling and the subsets.")
    limit: Optional[int] = Field(None, ge=1, description="Train on a seeded subset of this many images.")


class TrainStep(Training):
    eval_limit: EvalLimit = None


class PruneStep(_Strict):
    ratio: Optional[float] = Field(None, gt=0, lt=1, description="Fraction of channels to remove; default 0.3. "
                                   "MACs fall roughly with the square of the kept fraction.")
    method: Literal["l1", "l2", "taylor", "bn-scale", "magnitude"] = Field(
        "l1", description="Channel importance: group L1 / L2 weight norm, first-order Taylor (loss gradient) or "
        "BatchNorm scale; magnitude zeroes single weights instead (needs sparsity).")
    sparsity: Optional[float] = Field(None, gt=0, lt=1, description="Method magnitude: fraction of weights to "
                                      "zero. Shrinks a compressed file, rarely latency.")
    scope: Literal["uniform", "global"] = Field("uniform", description="Remove the same fraction from every "
                                                "layer, or rank channels across all layers.")
    finetune_epochs: int = Field(3, ge=0, le=MAX_EPOCHS, description="Fine-tune epochs after each pruning step (the "
                                 "best by validation accuracy is kept).")
    iterative: int = Field(1, ge=1, le=100, description="Prune in this many equal steps, fine-tuning after each.")
    lr: float = Field(0.01, gt=0, le=10, description="Peak fine-tune learning rate (one-cycle).")
    round_to: Optional[int] = Field(None, ge=1, description="Keep channel counts multiples of this, which CPU "
                                    "kernels run without padding; default 8 for ImageNet-layout ResNets, none for "
                                    "CIFAR ones; 1 turns it off.")
    limit: Optional[int] = Field(None, ge=1, description="Fine-tune on a seeded subset of the training images.")
    val_limit: ValLimit = 2000
    eval_limit: EvalLimit = None

    @model_validator(mode="after")
    def _amount(self) -> "PruneStep":
        if self.method == "magnitude" and self.ratio is not None:
            raise ValueError("ratio removes channels; method magnitude takes sparsity instead")
        if self.method == "magnitude" and self.sparsity is None:
            raise ValueError("method magnitude needs sparsity: the fraction of weights to set to zero, e.g. 0.5")
        if self.method != "magnitude" and self.sparsity is not None:
            raise ValueError("sparsity is for method magnitude; the structured methods take ratio")
        return self


class QuantizeStep(_Strict):
    method: Literal["ptq", "qat"] = Field("ptq", description="Post-training quantization, or quantization-aware "
                                          "training after it.")
    calib_samples: CalibImages = Field(300, description="Calibration images from the training split.")
    estimator: Literal["default", "minmax", "mean-minmax", "percentile", "mse"] = Field(
        "default", description="Activation range estimator.")
    bias_correction: Literal["none", "fast"] = Field("none", description="NNCF's fast bias correction, or none "
                                                     "(fast cost accuracy on BN-folded ResNets here).")
    epochs: int = Field(1, ge=1, le=MAX_EPOCHS, description="QAT epochs (the best by validation accuracy is kept).")
    lr: float = Field(0.002, gt=0, le=10, description="QAT peak learning rate.")
    max_drop: Optional[float] = Field(None, ge=0, le=100, description="Accuracy budget in percentage points: keep "
                                      "the most sensitive layers in float until it holds.")
    keep_float: list[str] = Field(default_factory=list, json_schema_extra={"flag": "--keep-float"},
                                  description="A layer (Conv2d / Linear module name, repeatable) to keep in float, "
                                  "as the fix of `edgeres diagnose` names it.")
    strict: bool = Field(False, description="Fail when the budget cannot be met.")
    analyze: bool = Field(False, description="Save and print per-layer sensitivity.")
    train_limit: Optional[int] = Field(None, ge=1, description="QAT on a subset of the training images.")
    val_limit: ValLimit = 2000
    eval_limit: EvalLimit = None


class ExportStep(_Strict):
    targets: Targets = Field(default_factory=lambda: ["all"], min_length=1, json_schema_extra={"flag": "--target"},
                             description="Formats (repeatable).")
    precisions: Optional[Precisions] = Field(None, min_length=1, json_schema_extra={"flag": "--precision"},
                                             description="Precisions (repeatable); default: the model's own "
                                             "precision (a recipe: every precision, int8 alone with edgetpu).")
    io: Optional[Literal[FORMATS["tflite"].options["io"]]] = Field(None, description="TFLite int8 input/output "
                                                                   "tensors; default: int8.")
    edgetpu: bool = Field(False, description="Compile the TFLite int8 file for the Coral Edge TPU with "
                          "edgetpu_compiler (on PATH); the file it came from is kept and verified.")
    verify: bool = Field(True, description="Run and check every exported file.")
    verify_limit: int = Field(500, ge=1, description="Test images used for verification.")
    calib_samples: CalibImages = Field(200, description="Calibration images for the one range the "
                               "quantize artifact lacks: TFLite io=int8 logits.")

    @model_validator(mode="after")
    def _tflite_options(self) -> "ExportStep":
        if (self.io or self.edgetpu) and "tflite" not in formats(self.targets):
            raise ValueError("io and edgetpu are TFLite options: they take targets including tflite")
        if self.edgetpu and (self.precisions not in (None, ["int8"]) or self.io == "float"):
            raise ValueError("edgetpu compiles full-integer int8 TFLite files: it takes precisions [int8] and io "
                             "int8")
        return self


class Measuring(_Strict):
    """What bench measures and how, on any one device: the ``bench`` step's options less its devices."""

    targets: Optional[Targets] = Field(None, min_length=1, json_schema_extra={"flag": "--target"},
                                       description="Formats to measure (repeatable); default: all exported.")
    precisions: Optional[Precisions] = Field(None, min_length=1, json_schema_extra={"flag": "--precision"},
                                             description="Precisions to measure (repeatable); default: all "
                                             "exported.")
    eval_limit: Optional[int] = Field(None, ge=1, description="Test images for top-1 (a seeded subset); default "
                                      "1000, or the device's stated cap where its emulator is slow (this raises "
                                      "it).")
    baseline: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the FP32 PyTorch baseline runs: "
                                                     "auto (CUDA when available), cpu or cuda.")
    estimate: bool = Field(False, description="Estimate latency from the profile's figures instead of measuring "
                           "on the device (labelled estimated).")
    emulate: bool = Field(False, description="Run on the device's emulation here (aarch64 boards: qemu-user, after "
                          "`edgeres devices --setup DEVICE`): its accuracy on its own kernels, labelled emulated; "
                          "latency estimated.")
    threads: Optional[int] = Field(None, ge=1, le=1024, description="Threads per runtime; default: the profile's, "
                                   "else every core.")
    min_runs: MinRuns = None
    min_seconds: MinSeconds = None
    warmup: Optional[int] = Field(None, ge=0, le=10000, description="Untimed runs before timing.")
    rounds: Optional[int] = Field(None, ge=1, le=100, description="Latency rounds, each in fresh processes; p50 is "
                                  "the median of the rounds' (default 9).")

    def method(self) -> dict[str, float]:
        """The measurement settings given, as overrides of the runner's ``DEFAULT_METHOD``."""
        given = {"min_runs": self.min_runs, "min_seconds": self.min_seconds, "warmup": self.warmup,
                 "rounds": self.rounds}
        return {key: value for key, value in given.items() if value is not None}


class BenchStep(Measuring):
    devices: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1, json_schema_extra={"flag": "--device"},
                               description="Device profile name (see `edgeres devices`) or a profile .yaml; "
                               "repeat it for a fleet: each device benched in turn, one report with a row group "
                               "per device.")


class DiagnoseOptions(_Strict):
    """What ``edgeres diagnose`` compares, profiles and gates on."""

    targets: Optional[Targets] = Field(None, min_length=1, json_schema_extra={"flag": "--target"},
                                       description="Formats (repeatable); default: all.")
    precisions: Optional[Precisions] = Field(None, min_length=1, json_schema_extra={"flag": "--precision"},
                                             description="Precisions (repeatable); default: all.")
    # every point's tensor of every image is held in memory, for every file
    images: int = Field(64, ge=1, le=2000, description="Test images compared layer by layer.")
    recover: int = Field(3, ge=0, le=10, description="Keep-float trials: re-quantize with each of this many of the "
                         "worst layers kept in float and measure what comes back (0: none).")
    device: str = Field("cpu", description="Device profile (see `edgeres devices`) or a profile .yaml to run the "
                        "files on: its runner profiles them operator by operator there (here, or over ssh) and, "
                        "off this host, sets their outputs and their tensors at every point against this host's; "
                        "an ssh device that cannot be reached runs its emulation, as bench does.")
    emulate: bool = Field(False, description="Run on the device's emulation here (aarch64 boards: qemu-user, after "
                          "`edgeres devices --setup DEVICE`): each file's outputs and tensors on the device's own "
                          "kernels; no operator times, since the speed is the emulator's.")
    latency: bool = Field(True, description="Profile every file operator by operator on the device.")
    placement: bool = Field(False, description="Say what an accelerator (or its emulator) found here would run of "
                            "each file: the QNN HTP for int8 ONNX (Qualcomm's emulator off a Snapdragon: slow), "
                            "OpenVINO's NPU/GPU, the Edge TPU.")
    threads: Optional[int] = Field(None, ge=1, le=1024, description="Threads per runtime; default: every core.")
    min_sqnr: Optional[float] = Field(None, ge=-200, le=200, description="Gate: exit non-zero when any point of any "
                                      "file is further than this many dB SQNR from the torch model it came from.")
    max_fallback: Optional[int] = Field(None, ge=0, description="Gate: exit non-zero when an int8 file runs more "
                                        "than this many compute operators in float, or an accelerator leaves more "
                                        "operators than this to the CPU.")


class TuneStep(_Strict):
    """``edgeres tune``'s search, and a recipe's ``tune`` step: the fastest variant of the FP32 model within
    ``max_drop``."""

    device: str = Field("cpu", description="Device profile the candidates are measured on (see `edgeres devices`); "
                        "one that cannot be used now gives labelled estimates, as bench does.")
    max_drop: float = Field(ge=0, le=100, description="Accuracy budget: the val top-1 (percentage points) the "
                            "chosen variant may lose against the FP32 model.")
    budget_minutes: Optional[float] = Field(None, gt=0, le=100000, description="Start no new work after this many "
                                            "minutes; run again to go on (finished candidates are reused).")
    ratios: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.25, 0.5], json_schema_extra={"flag": "--ratio"},
        description="Pruning ratios to try besides the unpruned model (repeatable).")
    targets: Targets = Field(default_factory=lambda: list(FORMATS), min_length=1, json_schema_extra={"flag": "--target"},
                             description="Formats searched (repeatable).")
    precisions: Precisions = Field(default_factory=lambda: list(PRECISIONS), min_length=1,
                                   json_schema_extra={"flag": "--precision"},
                                   description="Precisions searched (repeatable).")
    qat: bool = Field(False, description="Also quantization-aware training for every int8 candidate's model.")
    qat_epochs: int = Field(1, ge=1, le=MAX_EPOCHS, description="QAT epochs.")
    finetune_epochs: int = Field(3, ge=0, le=MAX_EPOCHS, description="Fine-tune epochs after pruning (once per ratio).")
    limit: Optional[int] = Field(None, ge=1, description="Fine-tune and QAT on a seeded subset of the training images.")
    val_limit: ValLimit = 2000
    eval_limit: EvalLimit = None
    rounds: int = Field(3, ge=1, le=100, description="Latency rounds per candidate, each in a fresh process.")

    @model_validator(mode="after")
    def _search(self) -> "TuneStep":
        self.targets = formats(self.targets)
        if self.qat and "int8" not in self.precisions:
            raise ValueError("qat makes int8 models: add the precision int8")
        return self


class Steps(_Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    import_: Optional[ImportStep] = Field(None, alias="import")
    train: Optional[TrainStep] = None
    prune: Optional[PruneStep] = None
    quantize: Optional[QuantizeStep] = None
    export: Optional[ExportStep] = None
    bench: Optional[BenchStep] = None
    tune: Optional[TuneStep] = None


class Recipe(Origin):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
    description: str = ""
    model: str
    steps: Steps

    @model_validator(mode="after")
    def _combinations(self) -> "Recipe":
        s = self.steps
        if s.export and s.export.precisions is None:  # a recipe exports its lineage in every precision it can
            s.export.precisions = ["int8"] if s.export.edgetpu else list(PRECISIONS)
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

    try:
        models.get_spec(recipe.model)
        data.check_available(recipe.dataset, recipe.data)
        if recipe.weights and recipe.weights != "imagenet" and not Path(recipe.weights).is_file():
            raise EdgeresError(f"weights: checkpoint {recipe.weights} not found")
        if recipe.steps.bench and recipe.steps.export:
            targets = formats(recipe.steps.bench.targets or recipe.steps.export.targets)
            wanted = {FORMATS[t].runtime: t for t in targets}
            for name in recipe.steps.bench.devices:
                runs = devices.get(name).runtimes.names()
                if not set(wanted) & set(runs):
                    raise EdgeresError(f"device {name} runs none of the export targets "
                                       f"{', '.join(recipe.steps.export.targets)} (its runtimes: {', '.join(runs)})")
    except EdgeresError as exc:
        raise EdgeresError(f"recipe {path}: {exc}") from None
