"""How far values are from their reference, measured one way everywhere (export verification, quantization
sensitivity, diagnose, and the runner on a device): the signal-to-quantization-noise ratio, and for a tensor
its SQNR, cosine similarity and largest absolute difference. Standard library and numpy only, like the rest
of ``runtimes/``."""

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


# An exact match has no noise: its SQNR is reported as this ceiling (fp32 rounding sits near 140 dB).
CEILING_DB = 150.0


def compare(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """``test`` against ``reference`` (same shape, images on axis 0): SQNR in dB over all images (signal
    power over noise power), the mean per-image cosine similarity, and the largest |difference|."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    got = np.asarray(test, np.float64).reshape(len(test), -1)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: {ref.shape} and {got.shape}")
    sqnr = float(np.clip(sqnr_db(got, ref), -CEILING_DB, CEILING_DB))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    dots = np.sum(ref * got, axis=1)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(np.all(ref == got, axis=1), 1.0, 0.0))
    diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    return {"sqnr_db": round(sqnr, 2), "cosine": round(float(np.nan_to_num(cosine.mean(), nan=0.0)), 6),
            "max_abs_diff": diff if math.isfinite(diff) else None}
