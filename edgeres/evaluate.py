"""Load any model artifact as a torch module and evaluate it on the test split of its data."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgeres import data
from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing
from edgeres.workspace import Artifact, Workspace

MODEL_KINDS = ("quantize", "prune", "train")


def load_model(artifact: Artifact) -> nn.Module:
    """The torch module of a train, prune or quantize artifact, in eval mode."""
    kind = artifact.kind
    if kind in ("train", "prune"):
        from edgeres.train import load_fp32

        return load_fp32(artifact)
    if kind == "quantize":
        from edgeres.quantize.step import load_quantized

        return load_quantized(artifact)
    raise EdgeresError(f"artifact {artifact.id} is a {kind} artifact, not a torch model")


def test_split(artifact: Artifact, dataset: str | None = None, data_dir: Path | None = None,
               limit: int | None = None):
    """The reported test images of the artifact's data (``data_dir``: another copy of the same data)."""
    prep = Preprocessing.from_dict(artifact.manifest["preprocessing"])
    return data.source_of(artifact.manifest, dataset=dataset, data_dir=data_dir).load("test", prep, limit)


def run_eval(ref: str, workspace: Workspace, *, dataset: str | None = None, data_dir: Path | None = None,
             limit: int | None = None) -> dict:
    from edgeres.train import evaluate, set_threads

    set_threads()
    artifact = workspace.pick(ref, MODEL_KINDS)
    return evaluate(load_model(artifact), test_split(artifact, dataset, data_dir, limit))
