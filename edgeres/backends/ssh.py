"""The ssh backend: measure a variant on a device reached with the system ``ssh`` and ``scp``.

For each variant: make a private (0700) temp dir under the profile's ``workdir`` on the device (after
checking that its Python and numpy are there), copy the ``edgeres/runtimes`` modules, the model file(s)
(an OpenVINO ``.xml`` brings its ``.bin``), the evaluation ``.npz`` and the job, run
``python -m runtimes.runner job.json`` there under ``timeout``, read its JSON report from stdout and
remove the dir (the remote shell removes it even when the connection is lost; a local clean-up catches
earlier failures). A connection that drops mid-way (closed or reset) is retried from the start, at most
``connection.retries`` times, each retry said on the console and counted in the report.

Security: ``ssh``/``scp`` run as argument lists; the remote commands are fixed ``sh -c`` scripts whose
only variable parts (python, directories, seconds) are passed as separately quoted arguments. Key
authentication only (``BatchMode=yes``: no password prompt ever blocks). Host keys are checked against
the user's ``known_hosts`` (or the profile's ``known_hosts``) with ``StrictHostKeyChecking=yes``; only a
profile with ``accept_new_host_key: true`` trusts an unknown host on first use (``accept-new``), and a
*changed* host key is always refused. ``~/.ssh/config`` applies as usual.

The device needs a POSIX shell, ``mktemp``, Python 3.9+ with numpy, and the runtimes its variants use;
``workdir`` is an absolute path or one relative to the login directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import edgeres.runtimes
from edgeres.backends import failed, model_files, report_from_output
from edgeres.console import warn
from edgeres.errors import EdgeresError

# $1: python, $2: workdir. Prints one "edgeres:..." line saying what was found or made.
_PREPARE = ('command -v "$1" >/dev/null 2>&1 || { echo edgeres:no-python; exit 0; }; '
            '"$1" -c "import numpy" >/dev/null 2>&1 || { echo edgeres:no-numpy; exit 0; }; '
            'umask 077 && mkdir -p "$2" && d=$(mktemp -d "$2/edgeres-XXXXXXXX") && mkdir "$d/runtimes" '
            '&& echo "edgeres:dir=$d"')
# $1: run dir, $2: seconds, $3: python. The dir goes whatever the runner does.
_RUN = ('cd "$1" || exit 3; '
        'if command -v timeout >/dev/null 2>&1; then timeout "$2" "$3" -m runtimes.runner job.json; '
        'else "$3" -m runtimes.runner job.json; fi; rc=$?; cd / && rm -rf "$1"; exit $rc')
_TIMED_OUT = 124  # coreutils/busybox timeout's exit status
# What ssh/scp print when an established connection breaks (worth a retry, unlike a refusal).
_DROPPED = ("closed by remote host", "connection closed", "connection reset", "broken pipe", "lost connection")


class _Dropped(Exception):
    """The connection broke mid-way; the message is ssh's."""


def _dropped(stderr: str) -> bool:
    return any(d in stderr.lower() for d in _DROPPED)


def _check_dropped(proc: subprocess.CompletedProcess) -> None:
    """Raise ``_Dropped`` when ssh (exit 255, no output) lost its connection."""
    if proc.returncode == 255 and not proc.stdout.strip() and _dropped(proc.stderr):
        raise _Dropped(_last_line(proc.stderr))


def _options(c) -> list[str]:
    """Options shared by ssh and scp."""
    checking = "accept-new" if c.accept_new_host_key else "yes"
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={math.ceil(c.connect_timeout)}",
               "-o", f"StrictHostKeyChecking={checking}", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
    if c.known_hosts:
        options += ["-o", f"UserKnownHostsFile={Path(c.known_hosts).expanduser()}"]
    if c.key:
        key = Path(c.key).expanduser()
        if not key.is_file():
            raise EdgeresError(f"ssh key {key} (connection.key of the device profile) does not exist",
                               hint="point connection.key at your private key, or set it to null")
        options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return options


def _ssh(c, script: str, *args: str, timeout: float, raise_timeout: bool = False) -> subprocess.CompletedProcess:
    remote = shlex.join(["sh", "-c", script, "sh", *args])
    command = ["ssh", *_options(c), "-p", str(c.port), "--", c.target, remote]
    return _call(c, command, timeout, raise_timeout=raise_timeout)


def _scp(c, sources: list[Path], remote_dir: str, timeout: float) -> None:
    host = f"[{c.host}]" if ":" in c.host else c.host  # an IPv6 address
    command = ["scp", "-q", *_options(c), "-P", str(c.port), "--", *map(str, sources),
               f"{c.user}@{host}:{remote_dir}/"]
    proc = _call(c, command, timeout)
    if proc.returncode != 0:
        if _dropped(proc.stderr):
            raise _Dropped(_last_line(proc.stderr))
        raise _connection_error(c, proc.stderr) or EdgeresError(
            f"copying to {c.target}:{remote_dir} failed: {_last_line(proc.stderr)}",
            hint="the device's sshd needs the sftp subsystem for scp, and free space under workdir")


def _call(c, command: list[str], timeout: float, *, raise_timeout: bool = False) -> subprocess.CompletedProcess:
    """Run ssh/scp; a timeout is an ``EdgeresError`` unless ``raise_timeout`` lets the caller decide."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise EdgeresError(f"{command[0]} is not installed here",
                           hint="install the OpenSSH client (e.g. apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        if raise_timeout:
            raise
        raise EdgeresError(f"{command[0]} to {c.target}:{c.port} did not finish within {timeout:g} s") from None


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no message")[:300]


def _connection_error(c, stderr: str) -> EdgeresError | None:
    """An ``EdgeresError`` when ssh's stderr says the device could not be reached or logged into."""
    where = f"{c.target}:{c.port}"
    profile_hint = "check connection.host/port/user in the device profile"
    if "Connection refused" in stderr:
        return EdgeresError(f"cannot reach {where}: connection refused",
                            hint=f"is the device on and its sshd running? {profile_hint}")
    if "timed out" in stderr.lower():
        return EdgeresError(f"cannot reach {where}: timed out after {c.connect_timeout:g} s",
                            hint=f"is the device on and on this network? {profile_hint}")
    if "Could not resolve hostname" in stderr:
        return EdgeresError(f"cannot reach {where}: host name {c.host} does not resolve", hint=profile_hint)
    if "No route to host" in stderr or "Network is unreachable" in stderr:
        return EdgeresError(f"cannot reach {where}: {_last_line(stderr)}", hint=profile_hint)
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "has changed and you have requested" in stderr:
        return EdgeresError(
            f"the host key of {where} has changed since it was recorded in known_hosts; refusing to connect "
            "(a reinstalled device, or someone in the middle)",
            hint=f"if the device was reinstalled, verify its new key, then: ssh-keygen -R '[{c.host}]:{c.port}'")
    if "Host key verification failed" in stderr:
        return EdgeresError(
            f"the host key of {where} is not in known_hosts",
            hint=f"connect once with `ssh -p {c.port} {c.target}` and check the fingerprint, or trust it on "
                 "first use: `edgeres bench --trust-new-host` (or connection.accept_new_host_key: true)")
    if "Permission denied" in stderr:
        key = f"-i {c.key}.pub " if c.key else ""
        return EdgeresError(f"ssh authentication as {c.user} on {where} failed (key authentication only)",
                            hint=f"install your public key on the device: ssh-copy-id {key}-p {c.port} {c.target}")
    return None


def _prepare(c, timeout: float) -> str:
    """Check the device's Python and numpy, make the private run dir; its path."""
    proc = _ssh(c, _PREPARE, c.python, c.workdir, timeout=timeout)
    _check_dropped(proc)
    if proc.returncode == 255:
        raise _connection_error(c, proc.stderr) or EdgeresError(
            f"ssh to {c.target}:{c.port} failed: {_last_line(proc.stderr)}")
    if "edgeres:no-python" in proc.stdout:
        raise EdgeresError(f"python {c.python!r} is not found on {c.target}",
                           hint="set connection.python in the device profile to the device's Python 3")
    if "edgeres:no-numpy" in proc.stdout:
        raise EdgeresError(f"numpy is not installed for {c.python} on {c.target}",
                           hint=f"on the device: {c.python} -m pip install numpy (and the runtimes to measure)")
    for line in proc.stdout.splitlines():
        if line.startswith("edgeres:dir="):
            return line.removeprefix("edgeres:dir=")
    raise EdgeresError(f"cannot create a temporary directory under {c.workdir} on {c.target}: "
                       f"{_last_line(proc.stderr)}", hint="set connection.workdir to a writable directory")


def _remove(c, remote_dir: str, timeout: float) -> None:
    """Best-effort removal of the run dir after a failure (the error at hand matters more)."""
    with contextlib.suppress(EdgeresError, subprocess.TimeoutExpired):
        _ssh(c, 'rm -rf "$1"', remote_dir, timeout=timeout)


def _job_files(job_dir: Path, job: dict[str, Any]) -> tuple[list[Path], dict[str, Any]]:
    """The local files the job needs, and the job rewritten for the flat remote dir."""
    model = job_dir / job["variant"]["file"]
    files = [model, job_dir / job["data"], *model_files(model)[1:]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(", ".join(missing))
    remote_job = {**job, "variant": {**job["variant"], "file": model.name}, "data": files[1].name}
    return files, remote_job


def run_variant(profile, job_dir: Path, job: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Measure ``job`` on the ssh device of ``profile``; ``timeout`` bounds the copy and, on the device,
    the run. Device-level failures raise ``EdgeresError``; a variant that cannot run returns ok: false.
    A dropped connection is retried ``connection.retries`` times; the report's ``retries`` counts them."""
    c = profile.connection
    try:
        files, remote_job = _job_files(job_dir, job)
    except FileNotFoundError as exc:
        return failed(job, f"file(s) missing for this variant: {exc}", "ssh")
    drops: list[str] = []
    while True:
        try:
            report = _run_once(c, files, remote_job, job, timeout)
        except _Dropped as exc:
            drops.append(str(exc))
            if len(drops) > c.retries:
                raise EdgeresError(f"the connection to {c.target}:{c.port} dropped {len(drops)} time(s) "
                                   f"(last: {exc})", hint="check the device's power and network; "
                                   "connection.retries in the device profile sets how often to retry") from None
            warn(f"the connection to {c.target} dropped ({exc}); "
                f"retry {len(drops)} of {c.retries}")
            continue
        report["retries"] = len(drops)
        return report


def _run_once(c, files: list[Path], remote_job: dict[str, Any], job: dict[str, Any],
              timeout: float) -> dict[str, Any]:
    """One attempt: prepare, copy, run, read the report; the remote dir is gone afterwards."""
    step_timeout = c.connect_timeout + 60  # preparation and clean-up: small commands
    remote_dir = _prepare(c, step_timeout)
    try:
        with tempfile.TemporaryDirectory(prefix="edgeres-ssh-") as tmp:
            job_file = Path(tmp) / "job.json"
            job_file.write_text(json.dumps(remote_job))
            runtimes = sorted(Path(edgeres.runtimes.__file__).parent.glob("*.py"))
            _scp(c, runtimes, f"{remote_dir}/runtimes", timeout)
            _scp(c, [*files, job_file], remote_dir, timeout)
        # The device stops the runner at `timeout`; the margin covers connecting and the report's return.
        proc = _ssh(c, _RUN, remote_dir, str(math.ceil(timeout)), c.python, timeout=timeout + step_timeout,
                    raise_timeout=True)
        _check_dropped(proc)
    except subprocess.TimeoutExpired:  # a device without `timeout` and a hung runner
        _remove(c, remote_dir, step_timeout)
        return failed(job, f"no answer from {c.target} within {timeout + step_timeout:g} s", "ssh")
    except BaseException:
        _remove(c, remote_dir, step_timeout)
        raise
    if proc.returncode == 255 and not proc.stdout.strip():
        raise _connection_error(c, proc.stderr) or EdgeresError(
            f"ssh to {c.target}:{c.port} failed: {_last_line(proc.stderr)}")
    if proc.returncode == _TIMED_OUT and not proc.stdout.strip():
        return failed(job, f"timed out after {math.ceil(timeout)} s on {c.target} (the runner was stopped)", "ssh")
    report = report_from_output(job, proc.returncode, proc.stdout, proc.stderr, "ssh")
    if not report["result"]["ok"]:
        report["result"]["error"] = f"on {c.target}: {report['result']['error']}"
    return report
