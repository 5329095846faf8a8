"""A labelled latency estimate for a device that cannot be reached: a roofline bound, not a measurement.

    compute_ms = 2 * MACs / (peak ops/s of the unit at the precision * its compute_efficiency)
    memory_ms  = weight bytes / (the unit's memory bandwidth * MEMORY_EFFICIENCY)
    latency_ms = max(compute_ms, memory_ms)

Batch 1: every weight is read from memory once per inference and activations are assumed to stay in
caches. The figures are those of the unit that really runs the file (``Estimate.unit_for``: Jetson's
TFLite on its CPU, a Qualcomm fp32 file on the CPU beside the NPU, an int8 file that ``edgetpu_compiler``
has not compiled on the Coral's CPU), each with its source. The result carries all of it, and the label
``estimated``; bench stores it as ``estimated_p50_ms``, never in the measured ``p50_ms``.
"""

from __future__ import annotations

from typing import Any

from edgeres.errors import EdgeresError

MEMORY_EFFICIENCY = 0.7  # sustained/peak DRAM bandwidth, typical of STREAM results
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}


def estimate_latency_ms(profile, macs: float, params: float, weight_bytes: float | None, precision: str,
                        unit: str | None = None) -> dict[str, Any]:
    """Estimate batch-1 latency of a model of ``macs`` multiply-accumulates and ``params`` weights
    (``weight_bytes`` on disk, or None to take ``params`` x the precision's width) on ``profile``'s
    ``unit`` (a name from its ``estimate.units``; None: the unit that runs files as they are by default)."""
    if precision not in BYTES_PER_WEIGHT:
        raise EdgeresError(f"no estimate for precision {precision!r} (known: {', '.join(BYTES_PER_WEIGHT)})")
    figures = profile.estimate
    if figures is None:
        raise EdgeresError(f"device {profile.name} has no estimate figures",
                           hint=f"add an `estimate:` section to {profile.path}, or measure it instead")
    unit = unit or figures.unit_for("*", precision)
    if unit not in figures.units:
        raise EdgeresError(f"device {profile.name} has no unit {unit!r} (units: {', '.join(figures.units)})")
    u = figures.units[unit]
    assumptions = []
    peak = {"fp32": u.peak_fp32_gops, "fp16": u.peak_fp16_gops, "int8": u.peak_int8_gops}[precision]
    if peak is None and precision == "fp16" and u.peak_fp32_gops is not None:
        peak = u.peak_fp32_gops
        assumptions.append(f"no fp16 figure for the {u.description}: fp16 computed at its fp32 rate")
    if peak is None:
        raise EdgeresError(f"no estimate of {precision} on {profile.name}: its unit {unit!r} ({u.description}) "
                           f"has no peak_{precision}_gops", hint=f"add it to {profile.path}")
    if weight_bytes is None:
        weight_bytes = params * BYTES_PER_WEIGHT[precision]
        assumptions.append(f"weights: {params:.0f} parameters x {BYTES_PER_WEIGHT[precision]} bytes")
    efficiency = u.compute_efficiency.value
    compute_ms = 2 * macs / (peak.value * 1e9 * efficiency) * 1e3
    memory_ms = weight_bytes / (u.memory_bandwidth_gbs.value * 1e9 * MEMORY_EFFICIENCY) * 1e3
    assumptions += [
        "roofline at batch 1: latency = max(compute time, time to read the weights once)",
        f"the whole model on the {u.description}; no framework overhead",
        f"compute at {efficiency:.0%} of the {precision} peak ({u.compute_efficiency.source})",
        f"memory at {MEMORY_EFFICIENCY:.0%} of peak bandwidth; activations assumed cache-resident",
    ]
    return {
        "label": "estimated",
        "latency_ms": max(compute_ms, memory_ms),
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "precision": precision,
        "unit": unit,
        "unit_description": u.description,
        "macs": macs,
        "weight_bytes": weight_bytes,
        "assumptions": assumptions,
        "sources": {"peak_gops": {"value": peak.value, "source": peak.source},
                    "memory_bandwidth_gbs": u.memory_bandwidth_gbs.model_dump()},
    }
