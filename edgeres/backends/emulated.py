"""The emulated backend: the runner under qemu-aarch64 in the arm64 root, on this machine.

For each variant: copy the ``edgeres/runtimes`` modules into a private temp dir, write the job there
(model and data by absolute path) and run ``python3 -m runtimes.runner job.json`` with the root's
aarch64 Python and runtimes under ``qemu-aarch64-static -cpu <the profile's core>``. The result is the
device's numerics (its instruction set, its runtimes' aarch64 kernels): top-1, predictions. Its speed
is qemu's, not the device's: the job says ``emulated``, so the runner times only a few runs and reports
them as ``emulated_latency_ms``, never as ``latency_ms``.

The root comes from ``edgeres devices --setup <device>`` (``edgeres.emulation``); a missing or half-made
root, or a missing qemu, is an ``EdgeresError`` naming the command that fixes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import edgeres.runtimes
from edgeres import emulation
from edgeres.backends import failed, report_from_output


def run_variant(profile, job_dir: Path, job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``job`` (paths relative to ``job_dir``) emulated; ``profile.connection`` names the qemu CPU."""
    cpu = profile.connection.cpu
    root = emulation.ready_root(profile.name)
    runtime = job["variant"].get("runtime")
    if runtime not in root.runtimes:
        why = root.skipped.get(runtime, "not installed by the set-up")
        return failed(job, f"the arm64 root has no {runtime}: {why}", "emulated")
    command = emulation.python_command(root, cpu)
    emulator = f"qemu-aarch64 {emulation.qemu_version()} -cpu {cpu}"
    local_job = {**job, "emulated": emulator,
                 "variant": {**job["variant"], "file": str((job_dir / job["variant"]["file"]).resolve())},
                 "data": str((job_dir / job["data"]).resolve())}
    with tempfile.TemporaryDirectory(prefix="edgeres-emulated-") as tmp:
        (Path(tmp) / "runtimes").mkdir()
        for module in Path(edgeres.runtimes.__file__).parent.glob("*.py"):
            shutil.copy(module, Path(tmp) / "runtimes" / module.name)
        (Path(tmp) / "job.json").write_text(json.dumps(local_job))
        try:
            proc = subprocess.run([*command, "-m", "runtimes.runner", "job.json"], cwd=tmp,
                                  env=emulation.python_env(root), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return failed(job, f"timed out after {timeout:g} s under emulation (the runner was killed)", "emulated")
    report = report_from_output(job, proc.returncode, proc.stdout, proc.stderr, "emulated")
    if report.get("host"):
        report["host"]["processor"] = f"{emulator} (emulated {profile.arch} on this host)"
    return report
