"""The local backend: each variant is measured by the runner in a fresh Python process on this machine.

A fresh process per variant keeps the measurement honest and the benchmark alive: peak memory is the
variant's own, one runtime's threads or caches do not warm up the next, and a runtime that crashes or
hangs (it is killed at ``timeout``) costs only its own row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgeres.backends import failed, report_from_output


def run_variant(profile, job_dir: Path, job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``job`` (paths relative to ``job_dir``) here; ``profile`` is a local device profile."""
    fd, job_path = tempfile.mkstemp(prefix=".job-", suffix=".json", dir=job_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(job, fh)
        proc = subprocess.run([sys.executable, "-m", "edgeres.runtimes.runner", job_path],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return failed(job, f"timed out after {timeout:g} s (the runner was killed)", "local")
    finally:
        Path(job_path).unlink(missing_ok=True)
    return report_from_output(job, proc.returncode, proc.stdout, proc.stderr, "local")
