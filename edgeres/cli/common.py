"""Options shared by several commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.data_choices import DATASETS
from edgeres.export.formats import FORMATS, PRECISIONS

# Closed choices, from the format table: checked as the command line is parsed and listed in --help.
Target = Enum("Target", [(name, name) for name in (*FORMATS, "all")], type=str)
Precision = Enum("Precision", [(name, name) for name in (*PRECISIONS, "all")], type=str)
Dataset = Enum("Dataset", [(name, name) for name in DATASETS], type=str)


def values(choices: list[Enum] | None) -> list[str] | None:
    """The strings behind parsed choices (None stays None)."""
    return None if choices is None else [c.value for c in choices]

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", envvar="EDGERES_WORKSPACE",
                                            help="Workspace directory of artifacts.")]
DEFAULT_WORKSPACE = Path("edgeres-runs")
DatasetOpt = Annotated[Optional[Dataset], typer.Option(help="Dataset; default: the model's own (fashion-mnist when "
                                                      "one must be trained first).")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data", help="Dataset directory. Training: required for "
                                                                    "cifar10 and imagefolder (fashion-mnist: "
                                                                    "/usr/share/datasets/fashion-mnist). Later steps: "
                                                                    "the one recorded in the model's lineage; --data "
                                                                    "points them at another copy.")]
EvalLimitOpt = Annotated[Optional[int], typer.Option("--eval-limit", min=1,
                                                     help="Evaluate on a seeded subset of this many test images.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else "
                                        "(status lines and progress go to stderr); its keys are listed "
                                        "above.")]
TrustPickleOpt = Annotated[bool, typer.Option("--trust-pickle", help="Load a --weights checkpoint even if it holds "
                                              "pickled Python objects. Unpickling runs the file's code: only for "
                                              "files you trust.")]


def workspace(path: Path):
    from edgeres.workspace import Workspace

    return Workspace(path)


NprocOpt = Annotated[Optional[int], typer.Option(help="Train in N processes on this machine: PyTorch DDP under "
                                                 "torchrun, one per core (CPU) or GPU. For several machines run "
                                                 "the same command without --nproc under `torchrun --nnodes ...` "
                                                 "on each.")]


def spread(nproc: int | None) -> None:
    """With ``--nproc N`` (N > 1): run this very command line in N processes under torchrun, then exit with its
    status. A bad N is one error; 1 (or none) runs here."""
    if nproc is None:
        return
    import sys

    from edgeres import distributed

    distributed.check_nproc(nproc)
    if nproc > 1:
        raise typer.Exit(distributed.launch(distributed.without_nproc(sys.argv[1:]), nproc))
