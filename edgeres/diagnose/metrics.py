"""How far one tensor is from its reference: SQNR, cosine similarity, largest absolute difference."""

from __future__ import annotations

import math

import numpy as np

from edgeres.numerics import sqnr_db

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


def noise_ratio(sqnr_db: float) -> float:
    """Noise power over signal power."""
    return 10 ** (-sqnr_db / 10)


def added_noise(rows: list[dict]) -> None:
    """Give each row (points in network order, each with ``sqnr_db``) ``added_db``: the SQNR of the noise
    that appeared between the previous point and this one (noise powers add; the input enters exact).
    The lowest ``added_db`` is where the error jumps. A dB drop would not do: errors grow steeply in the
    first blocks of any int8 file, so a 60 -> 47 dB step there is a bigger drop than a broken layer deep
    in the network makes (30 -> 21 dB), though it adds a hundred times less noise."""
    before = 0.0
    for row in rows:
        now = noise_ratio(row["sqnr_db"])
        grown = now - before
        row["added_db"] = round(min(CEILING_DB, 10 * math.log10(1 / grown)), 2) if grown > 0 else CEILING_DB
        row["drop_db"] = round(10 * math.log10(now / before), 2) if before > 0 else None
        before = now


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Top-1 agreement in percent."""
    return float((np.asarray(logits).argmax(1) == np.asarray(reference).argmax(1)).mean() * 100)
