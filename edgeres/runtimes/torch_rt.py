"""PyTorch, for the FP32 baseline on the edgeres host (``edgeres.baseline``) and the ``gpu`` profile's fp16 row:
the file is a train or prune artifact's ``model.pt``. Unlike its siblings it needs torch and edgeres, so it
never runs on a device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import RuntimeUnavailable, Session


def check(device: str = "cpu", **_: Any) -> tuple[bool, str]:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return False, f"CUDA is not available here (torch {torch.__version__})"
    return True, f"torch ({device})"


def open_session(path: Path, threads: int | None = None, device: str | None = None, precision: str = "fp32",
                 **_: Any) -> Session:
    try:
        from edgeres import baseline
    except ImportError:
        raise RuntimeUnavailable("the torch baseline runs on the edgeres host only (torch and edgeres needed)") \
            from None
    try:
        return baseline.open_session(path, threads, device, precision)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable checkpoint, a CUDA fault: say which
        first_line = (str(exc).splitlines() or [""])[0][:300]
        raise RuntimeUnavailable(f"torch cannot load {Path(path).name}: {first_line}") from None
