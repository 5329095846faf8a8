"""What ``edgeres tune`` searches: the request, its checks, and the candidates it spans."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS

DEFAULT_RATIOS = (0.25, 0.5)
QUANTS = ("ptq", "qat")  # how an int8 model is made
# A pruned model's file is measured only when its estimated p50 is within this factor of the fastest
# estimate among the files of the same model at the same precision class (float or int8): files of one
# model agree with it to within rounding (export verification), so the slower ones cannot win on accuracy.
ESTIMATE_SLACK = 1.25


@dataclass(kw_only=True)
class TuneRequest:
    """What ``edgeres tune`` asks for."""

    model: str  # model name (its latest FP32 train artifact) or an artifact id / path
    device: str = "cpu"
    max_drop: float  # accuracy budget: val top-1 drop from the FP32 model, percentage points
    budget_minutes: float | None = None  # stop starting new work after this; None: no limit
    ratios: list[float] = field(default_factory=lambda: list(DEFAULT_RATIOS))  # pruning ratios besides 0
    targets: list[str] = field(default_factory=lambda: list(FORMATS))
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    qat: bool = False  # also quantization-aware training for every int8 candidate's model
    qat_epochs: int = 1
    finetune_epochs: int = 3  # after pruning, once per ratio (shared by every candidate of that ratio)
    limit: int | None = None  # fine-tune (and QAT) on a seeded subset of the training images
    val_limit: int | None = 2000  # validation images: every decision is taken on them
    eval_limit: int | None = None  # test images the bench reports top-1 on
    calib_samples: int = 300
    rounds: int = 3  # latency rounds per candidate (bench's method; each a fresh process)
    min_runs: int | None = None  # timed runs per round (bench's default when None)
    min_seconds: float | None = None
    data_dir: Path | None = None
    devices_dir: Path | None = None
    output: Path | None = None  # also copy the chosen file here


@dataclass(frozen=True)
class Candidate:
    """One variant: the model (pruning ratio, how int8 was made), the format and the precision."""

    ratio: float  # 0: the unpruned model
    quant: str  # "none" for fp32/fp16 files, else "ptq" / "qat"
    target: str
    precision: str

    @property
    def name(self) -> str:
        model = "unpruned" if self.ratio == 0 else f"pruned {self.ratio:g}"
        how = f" {self.quant.upper()}" if self.quant != "none" else ""
        return f"{model}{how} {self.target} {self.precision}"

    @property
    def marker(self) -> str:
        """The plot's marker group: runtime and precision."""
        return f"{FORMATS[self.target].runtime} {self.precision}"

    @property
    def family(self) -> tuple[float, str, bool]:
        """Candidates expected to score alike: one model, one precision class (float or int8)."""
        return self.ratio, self.quant, self.precision == "int8"


def validate(req: TuneRequest) -> None:
    """One clear error for anything the search cannot take, before any work."""
    if not (isinstance(req.max_drop, (int, float)) and math.isfinite(req.max_drop) and 0 <= req.max_drop <= 100):
        raise EdgeresError(f"--max-drop must lie in [0, 100] percentage points, got {req.max_drop}",
                           hint="it is the val top-1 the chosen variant may lose against the FP32 model, e.g. 0.5")
    if req.budget_minutes is not None and not (math.isfinite(req.budget_minutes) and req.budget_minutes > 0):
        raise EdgeresError(f"--budget-minutes must be more than 0, got {req.budget_minutes}",
                           hint="leave it out for no limit")
    for ratio in req.ratios:
        if not (math.isfinite(ratio) and 0 < ratio < 1):
            raise EdgeresError(f"--ratio must lie strictly between 0 and 1, got {ratio}",
                               hint="the unpruned model is always searched; ratios add pruned ones")
    for target in req.targets:
        if target not in FORMATS:
            raise EdgeresError(f"unknown export target {target!r}", hint=f"choose from: {', '.join(FORMATS)}")
    for precision in req.precisions:
        if precision not in PRECISIONS:
            raise EdgeresError(f"unknown precision {precision!r}", hint=f"choose from: {', '.join(PRECISIONS)}")
    if not req.targets or not req.precisions:
        raise EdgeresError("tune needs at least one --target and one --precision")
    if req.qat and "int8" not in req.precisions:
        raise EdgeresError("--qat makes int8 models: add --precision int8")
    if req.rounds < 1 or req.finetune_epochs < 0 or req.qat_epochs < 1 or req.calib_samples < 1:
        raise EdgeresError("--rounds, --qat-epochs and --calib-samples must be at least 1, --finetune-epochs at "
                           "least 0")
    from edgeres import extras

    if "int8" in req.precisions:
        extras.require("quantize", "tune with int8 candidates")
    for target in req.targets:
        if FORMATS[target].extra:
            extras.require(FORMATS[target].extra, f"tune --target {target}")


def quants(req: TuneRequest, precision: str) -> list[str]:
    """How the model of a file at ``precision`` is made."""
    if precision != "int8":
        return ["none"]
    return ["ptq", "qat"] if req.qat else ["ptq"]


def candidates(req: TuneRequest, ratio: float) -> list[Candidate]:
    """Every candidate of one pruning ratio, in the format table's order."""
    return [Candidate(ratio, quant, target, precision) for target in FORMATS if target in req.targets
            for precision in PRECISIONS if precision in req.precisions for quant in quants(req, precision)]


def ratios(req: TuneRequest) -> list[float]:
    """0 (the unpruned model, measured in full: its files are the single-step variants and the latency
    table the pruned ones are estimated from), then the pruning ratios, smallest first."""
    return [0.0, *sorted(set(req.ratios))]
