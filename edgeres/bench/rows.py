"""Bench rows and their arithmetic: a row per variant and for the baseline, filled from a runner report or
an estimate, placed on the unit that runs it, and compared (speedups, accuracy delta, size, agreement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeres.bench.select import Variant
from edgeres.errors import EdgeresError
from edgeres.runtimes import registry
from edgeres.workspace import Artifact


# A row of results.json is a plain dict (saved as JSON as it is); its schema, checked whenever results are
# read back, is ``edgeres.report._Row``.
Row = dict[str, Any]


# Every row has these, None where they do not apply, so that tables stay uniform.
MEASURES = ("status", "latency_kind", "error", "top1", "top1_where", "n", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
            "runs", "throughput_ips", "throughput_batch", "peak_rss_mb", "load_seconds", "estimated_p50_ms", "unit")


def variant_row(variant: Variant, profile, options: dict[str, Any]) -> Row:
    m = variant.artifact.manifest
    verify = (m.get("metrics", {}).get("verify") or {}) if variant.format != "torch" else {}
    size = m.get("metrics", {}).get("size_bytes") if variant.format != "torch" else None
    return {**dict.fromkeys(MEASURES), "variant": variant.name, "role": "variant", "artifact": variant.artifact.id,
            "format": variant.format, "precision": variant.precision, "runtime": variant.runtime,
            "device": registry.device_label(variant.runtime, options), "where": profile.name,
            "threads": options.get("threads"), "size_bytes": size, "verify_top1": verify.get("top1"),
            "verify_n": verify.get("n"), "profile_verified": profile.verified_on_hardware}


def fill(row: Row, report: dict[str, Any]) -> list[int] | None:
    """Copy a runner report into ``row``; the predictions (for agreement) are returned, not stored."""
    result = report["result"]
    if not result.get("ok"):
        row.update(status="failed", error=result.get("error") or "no result")
        return None
    info = result.get("info") or {}
    if info.get("partitioning"):  # an execution provider that left nodes to the CPU (e.g. an NPU)
        row["partitioning"] = info["partitioning"]
    for key in ("peak_gpu_memory_mb", "tf32", "gpu", "offload"):  # offload: what a delegate/NPU says it took
        if key in info:
            row[key] = info[key]
    if result.get("emulated"):  # the device's numerics at an emulator's speed: no latency_ms, by design
        row.update(status="emulated", latency_kind="emulated", error=None, emulated=result["emulated"],
                   top1=result["top1"], n=result["n"], emulated_p50_ms=result["emulated_latency_ms"]["p50"],
                   load_seconds=result.get("load_seconds"), threads=info.get("threads", row.get("threads")),
                   device=info.get("device", row["device"]))
        return result.get("predictions")
    latency = result["latency_ms"]
    row.update(status="measured", latency_kind="measured", error=None, top1=result["top1"], n=result["n"],
               p50_ms=latency["p50"], p90_ms=latency["p90"], p99_ms=latency["p99"], mean_ms=latency["mean"],
               runs=latency["runs"], throughput_ips=result.get("throughput_ips"),
               throughput_batch=result.get("throughput_batch"), peak_rss_mb=result.get("peak_rss_mb"),
               load_seconds=result.get("load_seconds"), threads=info.get("threads", row.get("threads")),
               device=info.get("device", row["device"]))
    return result.get("predictions")


def place(row: Row, profile, variant: Variant, path: Path) -> frozenset[str]:
    """What the file lets each unit take: the operators a delegate or NPU took where known (``offload``),
    and a row whose model ran on the CPU says so (an Edge TPU delegate with a file ``edgetpu_compiler``
    has not compiled; an execution provider that took no node). Returns the compilers the file has been
    through, for the estimate's unit."""
    from edgeres.backends import placement

    compiled = placement.compiled_for(path, variant.runtime)
    delegate = getattr(getattr(profile.runtimes, variant.runtime, None), "delegate", None) or ""
    if variant.runtime == "tflite" and "edgetpu" in delegate:
        offload = placement.edgetpu_offload(path)
        if offload is not None:
            row["offload"] = offload
        if "edgetpu" not in compiled and row["status"] != "failed":
            row.update(device=f"CPU (not compiled by edgetpu_compiler: {delegate} takes nothing)", unit="CPU")
        elif "edgetpu" in compiled:
            row["unit"] = "Edge TPU" + (" + CPU" if offload and offload["on_cpu"] else "")
    part = row.get("partitioning")
    if part:
        row["offload"] = {"unit": part["provider"], "source": "onnxruntime's profiler", "subgraphs": part["subgraphs"],
                          "ops": part["nodes"], "on_cpu": part["on_cpu"]}
        if part["nodes"] and part["on_cpu"] >= part["nodes"]:
            row.update(device=f"CPU ({part['provider']} took no node)", unit="CPU")
    return compiled


def baseline_row(root: Artifact, where: str, threads: int | None) -> Row:
    from edgeres import baseline

    return {**dict.fromkeys(MEASURES), "variant": baseline.label(where), "role": "baseline", "artifact": root.id,
            "format": "torch", "precision": "fp32", "runtime": "torch", "device": where, "where": "host",
            "threads": threads, "size_bytes": root.file("model.pt").stat().st_size, "batchnorm": "folded"}


_ESTIMATE_KEYS = ("bound", "compute_ms", "memory_ms", "unit", "unit_description", "macs", "weight_bytes",
                  "assumptions", "sources")


def priced(row: Row, profile, cost: tuple[float, float], compiled: frozenset[str]) -> None:
    """The profile's estimate of ``row`` on the unit that runs it, into ``estimated_p50_ms`` (never p50_ms)."""
    from edgeres.backends.estimate import estimate_latency_ms

    unit = profile.estimate.unit_for(row["runtime"], row["precision"], compiled)
    estimate = estimate_latency_ms(profile, cost[0], cost[1], row["size_bytes"], row["precision"], unit)
    row.update(estimated_p50_ms=estimate["latency_ms"], estimate={k: estimate[k] for k in _ESTIMATE_KEYS})
    row["unit"] = row.get("unit") or estimate["unit_description"]


def estimated_row(row: Row, profile, cost: tuple[float, float], host_report: dict,
              compiled: frozenset[str]) -> list[int] | None:
    """An estimated row: latency from the profile's figures for the unit that runs the file, top-1 from
    this host (same file, same images); the host's predictions are returned."""
    try:
        priced(row, profile, cost, compiled)
    except EdgeresError as exc:
        row.update(status="failed", error=exc.args[0])
        return None
    row.update(status="estimated", latency_kind="estimated", error=None, top1_where="host")
    result = host_report["result"]
    if not result.get("ok"):
        row["error"] = f"no top-1: {result.get('error')}"
        return None
    row.update(top1=result["top1"], n=result["n"])
    return result.get("predictions")


def emulated_extras(row: Row, profile, cost: tuple[float, float], host_report: dict,
                     predictions: list | None, compiled: frozenset[str]) -> None:
    """Beside an emulated row: this host's run of the same file (top-1, agreement) and the estimate."""
    result = host_report["result"]
    if result.get("ok") and predictions is not None:
        row.update(host_top1=result["top1"], host_agreement=float(
            np.mean(np.asarray(predictions) == np.asarray(result["predictions"])) * 100))
    if profile.estimate is not None:
        try:
            priced(row, profile, cost, compiled)
        except EdgeresError as exc:
            row["estimate_error"] = exc.args[0]


def compare(rows: list[Row], baseline: Row, predictions: dict[int, list | None], device: str,
             remote: bool) -> list[str]:
    """Speedups (over the baseline when measured on the same machine; over the same runtime's fp32 file
    on the same device), accuracy delta, size ratio and agreement; warnings for slow int8."""
    base = baseline if baseline["status"] == "measured" else None
    for row in rows:
        ok = row["status"] != "failed" and base is not None
        ratio = base["p50_ms"] / row["p50_ms"] if base and row["status"] == "measured" and row["p50_ms"] else None
        cross = remote and row is not baseline
        row["speedup"] = None if cross else ratio
        row["speedup_cross_machine"] = ratio if cross else None
        row["delta_top1_pp"] = row["top1"] - base["top1"] if ok and row.get("top1") is not None else None
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"] if base and row.get("size_bytes") else None
        mine, theirs = predictions.get(id(row)), predictions.get(id(baseline))
        row["agreement"] = (float(np.mean(np.asarray(mine) == np.asarray(theirs)) * 100)
                            if mine is not None and theirs is not None and row is not baseline else None)
    for row in rows:
        fp32 = _fp32_of(row, rows)
        row["speedup_vs_fp32"] = fp32["p50_ms"] / row["p50_ms"] if fp32 is not None else None
    warnings = []
    for row in rows:
        fp32 = _fp32_of(row, rows)
        if row["precision"] == "int8" and fp32 is not None and row["p50_ms"] >= fp32["p50_ms"]:
            warnings.append(f"{row['format']} int8 is not faster than {row['format']} fp32 on {device}: p50 "
                            f"{row['p50_ms']:.3g} ms vs {fp32['p50_ms']:.3g} ms")
    return warnings


def _fp32_of(row: Row, rows: list[Row]) -> Row | None:
    """The measured fp32 row of ``row``'s runtime on the same device (the baseline, for a torch row on
    the baseline's device), when ``row`` is measured too."""
    if row["status"] != "measured" or not row["p50_ms"]:
        return None
    for other in rows:
        same_place = other["where"] == row["where"] or (row["format"] == "torch" and other["role"] == "baseline"
                                                         and other["device"] == row["device"])
        if (other["status"] == "measured" and other["precision"] == "fp32" and other["format"] == row["format"]
                and same_place and other["p50_ms"]):
            return other
    return None


def baseline_info(where: str, choice: str) -> dict[str, Any]:
    info = {"device": where, "choice": choice, "precision": "fp32", "batchnorm": "folded"}
    if where == "cuda":
        info["tf32"] = False
    return info
