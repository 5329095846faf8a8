"""How far one tensor is from its reference (``compare``: SQNR, cosine similarity, largest absolute difference,
shared with the runner on a device), where along the network the noise appeared, and top-1 agreement."""

from __future__ import annotations

import math

import numpy as np

from edgeres.runtimes.numerics import CEILING_DB, compare

__all__ = ["CEILING_DB", "added_noise", "agreement", "compare", "noise_ratio"]


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
