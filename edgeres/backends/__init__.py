"""Device backends: where a variant is measured. *What* is measured is ``edgeres.runtimes.runner``'s method.

Every backend module has ``run_variant(profile, job_dir, job, timeout) -> dict``: it runs the runner on
one variant and returns its report ``{"host": {...}, "result": {...}}`` plus ``"backend"``. ``job`` is
the runner's job (``variant``, ``data``, ``method``; see ``edgeres.runtimes.runner``) with paths relative
to ``job_dir``, which holds the model file(s) and the evaluation ``.npz``; the variant's ``options`` are
the caller's (``edgeres.devices.runtime_options``). Failures come in two kinds:

* the device cannot be used at all (unreachable host, failed ssh authentication, unknown or changed
  host key, no Python or numpy on the device): ``EdgeresError``, since no variant can be measured there;
* this variant cannot run (runtime, provider, delegate or device missing; a file the runtime rejects; a
  crash; a timeout): a report whose ``result`` has ``"ok": false`` and a one-line ``error``, so that the
  caller can go on with the other variants.

``estimate.estimate_latency_ms`` is the third way to a number: a labelled roofline estimate for a
device that cannot be reached.
"""

from __future__ import annotations

import importlib
import json
import signal
from pathlib import Path
from typing import Any

BACKENDS = {"local": "local", "ssh": "ssh", "emulated": "emulated"}  # connection type -> module


def run_variant(profile, job_dir: Path | str, job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Measure one variant on ``profile``'s device with the backend its connection type names."""
    module = importlib.import_module(f"{__name__}.{BACKENDS[profile.connection.type]}")
    return module.run_variant(profile, Path(job_dir), job, timeout)


def model_files(path: Path) -> list[Path]:
    """A model file and the files that must lie beside it for a runtime to open it (an OpenVINO ``.xml``
    brings its ``.bin``)."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def failed(job: dict[str, Any], error: str, backend: str) -> dict[str, Any]:
    """The report of a variant for which the runner produced none."""
    return {"host": None, "backend": backend,
            "result": {"name": job.get("variant", {}).get("name", "?"), "ok": False, "error": error}}


def report_from_output(job: dict[str, Any], returncode: int, stdout: str, stderr: str,
                       backend: str) -> dict[str, Any]:
    """The runner's JSON report from its stdout, or a failed report saying how the runner died."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        report = None
    if isinstance(report, dict) and isinstance(report.get("result"), dict):
        return {**report, "backend": backend}
    how = f"exited with code {returncode}"
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "no message")
    return failed(job, f"the runner {how} without a result: {last[:300]}", backend)
