"""The full-precision baseline every benchmark row is compared with: the FP32 PyTorch model.

It is the network the exports came from, with BatchNorm folded into the convolutions as in every exported
file (``edgeres.quantize.fold``), so that a row's speedup is the runtime's and the precision's, not
folding's. It runs on this machine's CUDA GPU or its CPU (``choose_device``: ``--baseline auto|cpu|cuda``)
and is labelled so (``torch fp32 (cuda)`` / ``torch fp32 (cpu)``). On CUDA, fp32 is fp32: TF32 is turned
off for matrix products and cuDNN convolutions (Ampere and later would use it by default for convolutions),
and ``info()`` says so. It is measured exactly as the variants are: by the runner
(``edgeres.runtimes.runner``), in a process of its own for every round, through the ``torch`` runtime
(``runtimes/torch_rt.py``), which opens a train or prune artifact's ``model.pt`` with this module. The
``gpu`` profile also runs it in fp16 (``precision``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeres.errors import EdgeresError
from edgeres.runtimes.base import Session


CHOICES = ("auto", "cpu", "cuda")  # --baseline; auto: CUDA when torch sees a GPU, else the CPU


def choose_device(choice: str = "auto", cuda_available: bool | None = None) -> str:
    """``cpu`` or ``cuda`` for ``choice`` (one of ``CHOICES``); CUDA asked for where there is none is an
    ``EdgeresError``. ``cuda_available`` defaults to what torch sees."""
    if choice not in CHOICES:
        raise EdgeresError(f"unknown baseline device {choice!r}", hint=f"choose {', '.join(CHOICES)}")
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if choice == "cuda" and not available:
        raise EdgeresError(f"--baseline cuda: CUDA is not available here (torch {torch.__version__}, "
                           f"built for CUDA {torch.version.cuda or 'none'})",
                           hint="use --baseline cpu (or auto), or run on a machine with an NVIDIA GPU and a CUDA "
                                "build of torch")
    if choice == "auto":
        return "cuda" if available else "cpu"
    return choice


def device() -> str:
    """Where the baseline runs by default: ``cuda`` when available, else ``cpu``."""
    return choose_device("auto")


def label(where: str, precision: str = "fp32") -> str:
    return f"torch {precision} ({where})"


class TorchSession(Session):
    """A torch module behind the runtime ``Session`` interface (NCHW float32 in, float32 logits out)."""

    runtime = "torch"

    def __init__(self, model: nn.Module, where: str, precision: str = "fp32"):
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"torch runs fp32 or fp16, not {precision}")
        self.device, self.precision = where, precision
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        if where == "cuda":  # fp32 means fp32: no TF32 in matrix products or convolutions
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.cuda.reset_peak_memory_stats()
        self._model = model.to(where, self._dtype).eval()

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> np.ndarray:
        logits = self._model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device, self._dtype))
        if self.device == "cuda":
            torch.cuda.synchronize()  # the GPU's work is done before the call returns, so its time is timed
        return logits.float().cpu().numpy()

    def info(self) -> dict[str, Any]:
        info = {**super().info(), "version": torch.__version__, "precision": self.precision,
                "batchnorm": "folded"}
        if self.device == "cuda":
            info.update(gpu=torch.cuda.get_device_name(), tf32=False,
                        peak_gpu_memory_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1))
        return info


def open_session(model_file: Path, threads: int | None = None, where: str | None = None,
                 precision: str = "fp32") -> TorchSession:
    """The model of the artifact that holds ``model_file``, BatchNorm folded, on ``where`` (default:
    ``device()``) in ``precision``."""
    from edgeres.evaluate import load_model
    from edgeres.quantize.fold import fold_batchnorm
    from edgeres.workspace import Workspace

    if threads:
        torch.set_num_threads(threads)
    artifact_dir = Path(model_file).resolve().parent
    model = fold_batchnorm(load_model(Workspace(artifact_dir.parent).resolve(str(artifact_dir))))
    return TorchSession(model, where or device(), precision)
