"""A labelled latency estimate for a device that cannot be reached: a roofline bound, not a measurement.

    compute_ms = 2 * MACs / (peak ops/s of the precision * compute_efficiency)
    memory_ms  = weight bytes / (memory bandwidth * MEMORY_EFFICIENCY)
    latency_ms = max(compute_ms, memory_ms)

Batch 1: every weight is read from memory once per inference, activations are assumed to stay in
caches, and the model is assumed to run entirely on the device's fastest unit for its precision. The
figures come from the device profile, each with its source; the result carries all of it, and the
label ``estimated``, so that it is never mistaken for a measured row.
"""

from __future__ import annotations

from typing import Any

from edgeres.errors import EdgeresError

MEMORY_EFFICIENCY = 0.7  # sustained/peak DRAM bandwidth, typical of STREAM results
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}


def estimate_latency_ms(profile, macs: float, params: float, weight_bytes: float | None,
                        precision: str) -> dict[str, Any]:
    """Estimate batch-1 latency of a model of ``macs`` multiply-accumulates and ``params`` weights
    (``weight_bytes`` on disk, or None to take ``params`` x the precision's width) on ``profile``."""
    if precision not in BYTES_PER_WEIGHT:
        raise EdgeresError(f"no estimate for precision {precision!r} (known: {', '.join(BYTES_PER_WEIGHT)})")
    figures = profile.estimate
    if figures is None:
        raise EdgeresError(f"device {profile.name} has no estimate figures",
                           hint=f"add an `estimate:` section to {profile.path}, or measure it instead")
    assumptions = []
    peak = {"fp32": figures.peak_fp32_gops, "fp16": figures.peak_fp16_gops, "int8": figures.peak_int8_gops}[precision]
    if peak is None:  # only fp16 is optional
        peak = figures.peak_fp32_gops
        assumptions.append("no fp16 figure for this device: fp16 computed at the fp32 rate")
    if weight_bytes is None:
        weight_bytes = params * BYTES_PER_WEIGHT[precision]
        assumptions.append(f"weights: {params:.0f} parameters x {BYTES_PER_WEIGHT[precision]} bytes")
    efficiency = figures.compute_efficiency.value
    compute_ms = 2 * macs / (peak.value * 1e9 * efficiency) * 1e3
    memory_ms = weight_bytes / (figures.memory_bandwidth_gbs.value * 1e9 * MEMORY_EFFICIENCY) * 1e3
    assumptions += [
        "roofline at batch 1: latency = max(compute time, time to read the weights once)",
        f"compute at {efficiency:.0%} of the {precision} peak ({figures.compute_efficiency.source})",
        f"memory at {MEMORY_EFFICIENCY:.0%} of peak bandwidth; activations assumed cache-resident",
        "the whole model on the device's fastest unit for this precision; no framework overhead",
    ]
    return {
        "label": "estimated",
        "latency_ms": max(compute_ms, memory_ms),
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "precision": precision,
        "macs": macs,
        "weight_bytes": weight_bytes,
        "assumptions": assumptions,
        "sources": {"peak_gops": {"value": peak.value, "source": peak.source},
                    "memory_bandwidth_gbs": figures.memory_bandwidth_gbs.model_dump()},
    }
