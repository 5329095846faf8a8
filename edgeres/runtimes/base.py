"""What every runtime session offers."""

from __future__ import annotations

from typing import Any

import numpy as np


class RuntimeUnavailable(Exception):
    """The runtime, its delegate / execution provider / device, or the model file cannot be used here."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``edgeres.errors.first_line``, here too because this package runs on devices without edgeres: the
    first non-blank line of ``exc``'s text, cut to ``limit``; its type name when the text is empty."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


class Session:
    """A loaded model. ``run`` maps an NCHW float32 batch to float32 logits."""

    runtime: str = "?"
    device: str = "?"

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "device": self.device}

    def run_batched(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Run a large array in chunks (sessions with a static batch size override ``run``)."""
        return np.concatenate([self.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
