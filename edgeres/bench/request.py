"""What ``edgeres bench`` asks for (``BenchRequest``) and what it gives back (``BenchResult``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from edgeres.recipe import Measuring
from edgeres.request import Request
from edgeres.workspace import Artifact


class BenchRequest(Request, Measuring):
    """What ``edgeres bench`` asks for on one device: a bench step's settings (its ``--min-runs``, ... as
    ``method()``), the device and the model."""

    device: str = "cpu"
    model: Optional[str] = None  # artifact id/path or model name; None: the lineage of the newest export
    exports: Optional[list[str]] = None  # exactly these export artifacts (ids/paths); None: newest per format
    devices_dir: Optional[Path] = None
    data_dir: Optional[Path] = None
    timeout: float = Field(900.0, gt=0)  # per variant, seconds
    trust_new_host: bool = False  # record an ssh host key not yet in known_hosts (a changed one is refused)

    @classmethod
    def of(cls, options: Measuring, **where) -> BenchRequest:
        """What a bench step's declared options ask for, on the one device ``where`` names (``edgeres bench``,
        recipes)."""
        return cls(**options.model_dump(include=set(Measuring.model_fields)), **where)


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
