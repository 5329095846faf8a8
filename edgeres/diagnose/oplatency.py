"""Where each exported file spends its time, operator by operator, on the device diagnose runs on: per file,
the runner's profile job (``edgeres.runtimes.opprofile``, see its figures) through the device's backend, so
the figures come from the device itself (here, or over ssh, where the runner gathers them), as bench's
numbers do. Each operator is mapped to the model block it belongs to, and an int8 file is set beside the same
format's fp32 file."""

from __future__ import annotations

import numpy as np

from edgeres.console import say
from edgeres.workspace import Artifact


def _by_block(ops: dict[str, tuple[str, float]], points: list) -> dict[str, float]:
    """Operator times (in the order the runtime ran them) summed by block of ``points``; the operators
    before the first block's that belong to no block are the stem's, as a TFLite prefix counts them."""
    from edgeres.diagnose.points import block_level, block_of

    blocks = [p.name for p in block_level(points)]
    stem = next((p.name for p in points if p.kind == "stem"), None)
    found: dict[str, float] = {}
    started = False
    for name, (_, ms) in ops.items():
        block = block_of(name, blocks)
        started = started or block != "(other)"
        block = stem if block == "(other)" and not started and stem else block
        found[block] = found.get(block, 0.0) + ms
    return {b: round(found[b], 4) for b in [*blocks, "(other)"] if b in found}


def _cuts(path, points: list) -> dict[str, int] | None:
    """Block -> the TFLite file's tensor that ends it, for naming its operators after their blocks; None
    when the file's structure does not match the model's."""
    from edgeres.diagnose.points import LOGITS, block_level
    from edgeres.diagnose.taps_tflite import tensor_indices
    from edgeres.errors import EdgeresError

    try:
        found = tensor_indices(path, block_level(points))
    except EdgeresError:
        return None
    found.pop(LOGITS)
    return found


def profile_files(exports: list[Artifact], *, profile, threads: int | None, points: list,
                  image: np.ndarray) -> dict:
    """Per-operator profiles of each file on ``profile``'s device at batch 1 (``image``: one preprocessed
    image, N=1), each operator mapped to its block of ``points`` (by its name's scope; a TFLite file's by the
    cuts after each block, as the runner times it); a file the device cannot profile says why in
    ``unavailable``."""
    from edgeres.diagnose.on_device import run_file
    from edgeres.export.formats import FORMATS

    files, cpu, host = [], None, None
    for export in exports:
        m = export.manifest
        fmt = FORMATS[m["format"]]
        path = fmt.runnable_here(export.file(m["file"]))
        cuts = _cuts(path, points) if fmt.runtime == "tflite" else None
        say(f"profiling {fmt.name} {m['precision']} operator by operator on {profile.name}")
        report = run_file(profile, path, fmt.runtime, x=image, y=np.zeros(len(image), np.int64), threads=threads,
                          job={"profile": {"cuts": cuts} if cuts else True})
        entry = {"artifact": export.id, "format": fmt.name, "precision": m["precision"], "runtime": fmt.runtime}
        result = report["result"]
        if not result["ok"]:
            files.append({**entry, "p50_ms": None, "ops_p50_ms": None, "coverage": None,
                          "unavailable": result["error"]})
            continue
        cpu, host = result["cpu"], report.get("host") or host
        figures = result["op_profile"]
        ops = figures.pop("ops", None) or {}
        if figures.get("ops_p50_ms") is not None and "by_block" not in figures:
            figures["by_block"] = _by_block(ops, points)
        files.append({**entry, **figures})
    for f in files:
        twin = next((g for g in files if g["format"] == f["format"] and g["precision"] == "fp32"), None)
        if f["precision"] != "fp32" and twin and twin["p50_ms"] and f["p50_ms"]:
            f["speedup_vs_fp32"] = round(twin["p50_ms"] / f["p50_ms"], 3)
    return {"device": profile.name, "where": profile.describe_connection(),
            "processor": (host or {}).get("processor"), "threads": threads, "batch": 1, "cpu": cpu, "files": files}
