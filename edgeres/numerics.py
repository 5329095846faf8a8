"""How far values are from their reference, measured one way everywhere (export verification, quantization
sensitivity, diagnose): the signal-to-quantization-noise ratio."""

from __future__ import annotations

import math

import numpy as np


def sqnr_db(values: np.ndarray, reference: np.ndarray) -> float:
    """SQNR of ``values`` against ``reference`` in dB: the reference's power over the power of the difference,
    both over all elements, in float64. ``inf`` when they are equal, ``-inf`` when the difference is not finite."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.mean((np.asarray(values, np.float64) - ref) ** 2)) if ref.size else 0.0
    if not math.isfinite(noise):
        return float("-inf")
    if noise == 0:
        return float("inf")
    return 10 * math.log10(max(float(np.mean(ref ** 2)), 1e-30) / noise)
