"""The full-precision baseline every benchmark row is compared with: the FP32 PyTorch model.

It runs on this machine's CUDA GPU when torch sees one, else on its CPU, and is labelled so
(``torch fp32 (cuda)`` / ``torch fp32 (cpu)``). It is measured exactly as the variants are: by the runner
(``edgeres.runtimes.runner``), in a process of its own for every round, through the ``torch`` runtime
(``runtimes/torch_rt.py``), which opens a train or prune artifact's ``model.pt`` with this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeres.runtimes.base import Session


def device() -> str:
    """Where the baseline runs: ``cuda`` when available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def label(where: str) -> str:
    return f"torch fp32 ({where})"


class TorchSession(Session):
    """A torch module behind the runtime ``Session`` interface (NCHW float32 in, float32 logits out)."""

    runtime = "torch"

    def __init__(self, model: nn.Module, where: str):
        self.device = where
        self._model = model.to(where).eval()

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> np.ndarray:
        # .cpu() waits for the GPU, so a timed call covers the whole inference
        return self._model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)).float().cpu().numpy()

    def info(self) -> dict[str, Any]:
        info = {**super().info(), "version": torch.__version__}
        if self.device == "cuda":
            info["gpu"] = torch.cuda.get_device_name()
        return info


def open_session(model_file: Path, threads: int | None = None, where: str | None = None) -> TorchSession:
    """The model of the artifact that holds ``model_file``, on ``where`` (default: ``device()``)."""
    from edgeres.evaluate import load_model
    from edgeres.workspace import Workspace

    if threads:
        torch.set_num_threads(threads)
    artifact_dir = Path(model_file).resolve().parent
    return TorchSession(load_model(Workspace(artifact_dir.parent).resolve(str(artifact_dir))), where or device())
