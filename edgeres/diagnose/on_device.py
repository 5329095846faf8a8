"""Diagnose's work on the device itself: the runner (``edgeres.runtimes.runner``) on one exported file,
through the device's backend (here, over ssh, or emulated here), as bench runs it.

Two jobs: the file's per-operator profile (``"profile": true``: the device's CPU kernels, timed by the
runtime's own profiler there), and its outputs on the diagnose's first images, set against this host's run
of the same file and the torch model it came from, so a device whose kernels compute otherwise shows it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeres import backends, devices
from edgeres.errors import EdgeresError

TIMEOUT = 600.0  # seconds per job, copying included
# Outputs only: one timed run, since the latency is not what this job is for.
OUTPUTS_ONLY = {"warmup": 0, "min_runs": 1, "min_seconds": 0.0, "max_runs": 1, "throughput_batch": 1}


def run_file(profile, path: Path, runtime: str, *, x: np.ndarray, y: np.ndarray, threads: int | None,
             op_profile: bool = False) -> dict[str, Any]:
    """The runner's report of ``path`` on ``profile``'s device, on images ``x`` (labels ``y``); raises
    ``EdgeresError`` when the device itself cannot be used, returns ``"ok": false`` when the file cannot run."""
    name = f"{path.stem} ({runtime})"
    try:
        options = devices.runtime_options(profile, runtime, threads)
    except EdgeresError as exc:
        return backends.failed({"variant": {"name": name}}, exc.args[0], profile.connection.type)
    with tempfile.TemporaryDirectory(prefix="edgeres-diagnose-") as tmp:
        job_dir = Path(tmp)
        for f in [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]:
            (job_dir / f.name).symlink_to(f.resolve())
        np.savez(job_dir / "images.npz", x=np.ascontiguousarray(x, np.float32), y=np.asarray(y, np.int64))
        spec = {"variant": {"name": name, "file": path.name, "runtime": runtime, "options": options},
                "data": "images.npz", "method": OUTPUTS_ONLY, **({"profile": True} if op_profile else {})}
        return backends.run_variant(profile, job_dir, spec, TIMEOUT)


def outputs(profile, path: Path, runtime: str, *, x: np.ndarray, labels: np.ndarray, here: np.ndarray,
            reference: np.ndarray, threads: int | None) -> dict[str, Any]:
    """The file's top-1 on the device and how often its class agrees with this host's run of the same file
    (``here``: logits) and with the torch model's (``reference``), on the first ``profile.max_eval_images``
    (emulation's cap) of ``x``."""
    n = min(len(x), profile.max_eval_images or len(x))
    report = run_file(profile, path, runtime, x=x[:n], y=labels[:n], threads=threads)
    result = report["result"]
    kind = "emulated" if profile.connection.type == "emulated" else "measured"
    found: dict[str, Any] = {"device": profile.name, "kind": kind, "where": profile.describe_connection(),
                             "images": n}
    if not result["ok"]:
        return {**found, "unavailable": result["error"]}
    predictions = np.asarray(result["predictions"])
    found.update(top1=round(result["top1"], 3),
                 agreement_with_this_host=round(float((predictions == here[:n].argmax(1)).mean() * 100), 3),
                 agreement_with_reference=round(float((predictions == reference[:n].argmax(1)).mean() * 100), 3),
                 processor=(report.get("host") or {}).get("processor"))
    if result.get("emulated"):
        found["emulator"] = result["emulated"]
    return found
