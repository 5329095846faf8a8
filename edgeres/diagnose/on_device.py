"""Diagnose's work on the device itself: the runner (``edgeres.runtimes.runner``) on one exported file,
through the device's backend (here, over ssh, or emulated here), as bench runs it.

Three jobs: the file's per-operator profile (``"profile": true``: the device's CPU kernels, timed by the
runtime's own profiler there); its outputs on the diagnose's first images, set against this host's run of the
same file and the torch model it came from; and its tensors at every point on those images (``"taps"``),
set against this host's there, so a device whose kernels compute otherwise shows where.
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
             job: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The runner's report of ``path`` on ``profile``'s device, on images ``x`` (labels ``y``; ``arrays``
    join them in the data file; ``job`` adds to the runner's job, e.g. ``{"profile": True}``); raises
    ``EdgeresError`` when the device itself cannot be used, returns ``"ok": false`` when the file cannot run."""
    name = f"{path.stem} ({runtime})"
    try:
        options = devices.runtime_options(profile, runtime, threads)
    except EdgeresError as exc:
        return backends.failed({"variant": {"name": name}}, exc.args[0], profile.connection.type)
    with tempfile.TemporaryDirectory(prefix="edgeres-diagnose-") as tmp:
        job_dir = Path(tmp)
        for f in backends.model_files(path):
            (job_dir / f.name).symlink_to(f.resolve())
        np.savez(job_dir / "images.npz", x=np.ascontiguousarray(x, np.float32), y=np.asarray(y, np.int64),
                 **(arrays or {}))
        spec = {"variant": {"name": name, "file": path.name, "runtime": runtime, "options": options},
                "data": "images.npz", "method": OUTPUTS_ONLY, **(job or {})}
        return backends.run_variant(profile, job_dir, spec, TIMEOUT)


def _images(profile, x: np.ndarray) -> int:
    """How many of the images ``x`` run on the device: all, or emulation's cap."""
    return min(len(x), profile.max_eval_images or len(x))


def layers(profile, path: Path, runtime: str, device_job, *, points: list, x: np.ndarray, labels: np.ndarray,
           here: dict[str, np.ndarray], threads: int | None) -> dict[str, Any]:
    """Each point's tensor of the file on the device against this host's (``here``), on the first images of
    ``x``: the rows of SQNR, cosine and max |diff|, computed by the runner there. ``device_job(path, points,
    directory)`` gives the file the runner taps and point -> output (see ``edgeres.runtimes.taps``)."""
    from edgeres.diagnose.points import LOGITS

    n = _images(profile, x)
    with tempfile.TemporaryDirectory(prefix="edgeres-diagnose-taps-") as tmp:
        tapped, names = device_job(path, points, Path(tmp))
        report = run_file(profile, tapped, runtime, x=x[:n], y=labels[:n], threads=threads,
                          job={"taps": {"outputs": names, "logits": LOGITS}},
                          arrays={f"ref:{point}": here[point][:n] for point in names})
    result = report["result"]
    if not result["ok"]:
        return {"layers_unavailable": result["error"]}
    order = {p.name: i for i, p in enumerate(points)}
    rows = sorted(result["taps"], key=lambda r: order.get(r["point"], len(order)))
    worst = min(rows, key=lambda r: r["sqnr_db"])
    return {"layers": rows, "layers_min_sqnr_db": worst["sqnr_db"], "layers_worst_point": worst["point"]}


def outputs(profile, path: Path, runtime: str, *, x: np.ndarray, labels: np.ndarray, here: np.ndarray,
            reference: np.ndarray, threads: int | None) -> dict[str, Any]:
    """The file's top-1 on the device and how often its class agrees with this host's run of the same file
    (``here``: logits) and with the torch model's (``reference``), on the first ``profile.max_eval_images``
    (emulation's cap) of ``x``."""
    n = _images(profile, x)
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
