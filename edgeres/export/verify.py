"""Verification after export: run the file in its runtime and compare it with the model it came from.

The reference is the torch model the file was exported from: the quantize artifact's int8 torch model for
int8 files (every format carries its scales), the FP32 model for float files. A file passes when its top-1
agreement with the reference on the verification images is at least the threshold below (in percent).
"""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError

# int8 files still differ from torch in rounding and accumulation order (and TFLite's io=int8 files in the
# logits' int8 step): only near-ties flip, which 97 % leaves room for on small subsets.
THRESHOLDS = {"fp32": 99.5, "fp16": 99.0, "int8": 97.0}


def compare(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    diff = np.abs(logits - reference)
    return {
        "top1": float((logits.argmax(1) == labels).mean() * 100),
        "reference_top1": float((reference.argmax(1) == labels).mean() * 100),
        "agreement": float((logits.argmax(1) == reference.argmax(1)).mean() * 100),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "n": int(len(labels)),
    }


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
    result["passed"] = result["agreement"] >= result["threshold"]
    return result
