"""What ``edgeres tune`` searches: the request, its checks, and the candidates it spans."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.recipe import CalibImages, MinRuns, MinSeconds, TuneStep
from edgeres.request import Request

QUANTS = ("ptq", "qat")  # how an int8 model is made
# A pruned model's file is measured only when its estimated p50 is within this factor of the fastest
# estimate among the files of the same model at the same precision class (float or int8): files of one
# model agree with it to within rounding (export verification), so the slower ones cannot win on accuracy.
ESTIMATE_SLACK = 1.25


class TuneRequest(Request, TuneStep):
    """What ``edgeres tune`` asks for: a tune step's search, from one FP32 model."""

    model: str  # model name (its latest FP32 train artifact) or an artifact id / path
    calib_samples: CalibImages = 300  # PTQ calibration images
    min_runs: MinRuns = None  # timed runs per latency round; None: bench's default
    min_seconds: MinSeconds = None
    data_dir: Optional[Path] = None
    devices_dir: Optional[Path] = None
    output: Optional[Path] = None  # also copy the chosen file here


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
    """What the request's own validation cannot see: the extras its candidates need."""
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
