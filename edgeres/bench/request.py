"""What ``edgeres bench`` asks for (``BenchRequest``) and what it gives back (``BenchResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeres.recipe import BenchStep
from edgeres.workspace import Artifact


@dataclass(kw_only=True)
class BenchRequest:
    """What ``edgeres bench`` asks for."""

    device: str = "cpu"
    model: str | None = None  # artifact id/path or model name; None: the lineage of the newest export
    exports: list[str] | None = None  # exactly these export artifacts (ids/paths); None: newest per format
    targets: list[str] | None = None  # formats (or "all"); None: every format
    precisions: list[str] | None = None  # fp32/fp16/int8 (or "all"); None: every precision
    eval_limit: int | None = None  # test images; None: DEFAULT_EVAL_IMAGES, or the profile's cap (stated)
    threads: int | None = None  # None: the profile's, else every core
    baseline: str = "auto"  # where the FP32 baseline runs: auto (CUDA if available), cpu or cuda
    estimate: bool = False  # estimated latency instead of measuring on the device
    method: dict[str, float] = field(default_factory=dict)  # overrides of the runner's DEFAULT_METHOD
    devices_dir: Path | None = None
    data_dir: Path | None = None
    timeout: float = 900.0  # per variant, seconds
    emulate: bool = False  # run on the device's emulation here (qemu-user for aarch64 boards), accuracy only
    trust_new_host: bool = False  # record an ssh host key not yet in known_hosts (a changed one is refused)

    @classmethod
    def of(cls, options: BenchStep, **where) -> BenchRequest:
        """What a bench step's declared options ask for, on the one device ``where`` names (``edgeres bench``,
        recipes)."""
        measured = {"targets", "precisions", "eval_limit", "threads", "baseline", "estimate", "emulate"}
        return cls(**options.model_dump(include=measured), method=options.method(), **where)


@dataclass
class BenchResult:
    """The saved ``bench`` artifact and its results (what ``results.json`` holds)."""

    artifact: Artifact
    results: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.results["rows"]

    def file(self, name: str) -> Path:
        return self.artifact.path / name
