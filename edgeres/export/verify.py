"""Verification after export: run the file in its runtime and compare it with the model it came from.

The reference is the torch model the file was exported from: the quantize artifact's int8 torch model for
int8 files (every format carries its scales), the FP32 model for float files. A file passes when its top-1
agreement with the reference on the verification images is at least the threshold below (in percent).

An int8 file must also keep its logits close to the reference as a whole: a logit SQNR of at least
``INT8_MIN_SQNR_DB``. Agreement alone misses broken files (one layer's weight scale 1.5-2x off in the
last stage still agrees on 98-100 % of the images) and fails right ones: an int8 file of a weakly trained
model has near-ties (a top-2 margin of a few hundredths of a logit) that rounding flips. So an int8 file
below the agreement threshold still passes when every flipped image is a near-tie: the reference's top-2
margin there is within the file's usual error (at most twice the 90th percentile, over the images, of the
largest logit difference on an image).
"""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.runtimes.numerics import sqnr_db

# int8 files still differ from torch in rounding and accumulation order (and TFLite's io=int8 files in the
# logits' int8 step): only near-ties flip, which 97 % leaves room for on small subsets.
THRESHOLDS = {"fp32": 99.5, "fp16": 99.0, "int8": 97.0}
# Calibrated by benchmarks/verify_calibration.py (results/verify_calibration.json): correct int8 files of
# ResNet-18 and ResNet-50 (top-1 46-93 %) scored 22.5-44.0 dB; the same files with one conv's weight scale
# multiplied by 1.5, 2 or 8 scored 19.9 dB at most.
INT8_MIN_SQNR_DB = 21.0


def compare(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    diff = np.abs(logits - reference)
    flipped = logits.argmax(1) != reference.argmax(1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    tie_band = 2 * float(np.percentile(diff.max(axis=1), 90))
    near_tie = (top2[:, 1] - top2[:, 0]) <= tie_band
    return {
        "top1": float((logits.argmax(1) == labels).mean() * 100),
        "reference_top1": float((reference.argmax(1) == labels).mean() * 100),
        "agreement": float((~flipped).mean() * 100),
        "flipped": int(flipped.sum()),
        "flipped_near_ties": int((flipped & near_tie).sum()),
        "tie_band": tie_band,
        "sqnr_db": sqnr_db(logits, reference),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "n": int(len(labels)),
    }


def passes(result: dict, precision: str) -> bool:
    """The verdict on a ``compare`` result (see the module docstring)."""
    agrees = result["agreement"] >= THRESHOLDS[precision]
    if precision != "int8":
        return agrees
    return result["sqnr_db"] >= INT8_MIN_SQNR_DB and (agrees or result["flipped_near_ties"] == result["flipped"])


def failure(result: dict) -> str:
    """Why a ``verify`` result did not pass, in one line."""
    int8 = result["precision"] == "int8"
    if int8 and result["sqnr_db"] < INT8_MIN_SQNR_DB:
        why = f"logit SQNR {result['sqnr_db']:.1f} dB < {INT8_MIN_SQNR_DB} dB"
    else:
        why = f"top-1 agreement {result['agreement']:.2f}% < {result['threshold']}%"
        if int8:
            why += f", {result['flipped'] - result['flipped_near_ties']} flipped images not near-ties"
    return f"{why} against the {result['reference']} model (max |logit diff| {result['max_abs_diff']:.3g})"


def _check_finite(logits: np.ndarray, what: str, hint: str) -> None:
    """A NaN or infinite output fails verification outright: argmax over NaN picks an arbitrary class,
    which can even agree with a reference that is NaN too."""
    bad = ~np.isfinite(logits).all(axis=tuple(range(1, logits.ndim)))
    if bad.any():
        raise EdgeresError(f"verification failed: {what} outputs NaN or infinity for {int(bad.sum())} of "
                           f"{len(bad)} images", hint=hint)


def verify(path, runtime: str, x: np.ndarray, labels: np.ndarray, reference: np.ndarray, threshold_key: str,
           threads: int | None = None) -> dict[str, float]:
    """Run ``path`` on ``x`` (NCHW float32) and check agreement with ``reference`` logits; a NaN or
    infinite logit on either side fails verification."""
    from edgeres.runtimes import RuntimeUnavailable, open_session

    _check_finite(reference, "the torch model it was exported from",
                  "its weights hold NaN or infinity: re-train or re-import it from a sound checkpoint")
    try:
        session = open_session(path, runtime, threads=threads)
        logits = session.run_batched(x)
    except RuntimeUnavailable as exc:
        raise EdgeresError(f"verification could not run {path.name}: {exc}") from None
    _check_finite(logits, path.name, "the model it was exported from is sound, so the export is not: "
                  "re-export it, or try another --precision or target")
    result = compare(logits, reference, labels)
    result["threshold"] = THRESHOLDS[threshold_key]
    result["precision"] = threshold_key
    result["passed"] = passes(result, threshold_key)
    return result
