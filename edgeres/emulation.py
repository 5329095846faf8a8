"""The arm64 root that emulated devices run in: Debian packages and aarch64 wheels, run with qemu-user.

An emulated device (``connection: emulated``, or ``edgeres bench --device raspberrypi --emulate``) runs the
runner with the aarch64 builds of the runtimes under ``qemu-aarch64-static``: the device's instruction set
and kernels, hence its numerics, but not its speed. This module builds and checks the root they run in::

    setup() -> Root                debootstrap + dpkg -x + aarch64 wheels, with progress (downloads)
    ready_root(device) -> Root     the finished root, or an EdgeresError saying how to build it
    status() -> (state, Root|None) "missing", "incomplete" or "ready"
    python_command(root, cpu)      argv that runs the root's python3 under qemu, and python_env(root)

The root lives in ``$EDGERES_CACHE/arm64-root`` (default ``~/.cache/edgeres``). It is built under a
temporary name; the completion marker is written last and the directory renamed into place only then,
so a half-made root (an interrupted set-up, a damaged copy) is never used: it is reported, and the
next set-up rebuilds it. Set-up needs root (debootstrap), ``debootstrap`` and ``qemu-user-static``, the
Debian mirror of the machine's apt sources (or ``$EDGERES_DEBIAN_MIRROR``) and PyPI; nothing downloads
once it is done.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from edgeres.errors import EdgeresError
from edgeres.runtimes import registry

QEMU = "qemu-aarch64-static"
SUITE = "bookworm"  # Python 3.11, numpy 1.24, glibc 2.36
PACKAGES = ("python3", "python3-numpy")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
FORMAT = 1  # of the marker; a root of another format is rebuilt
MARKER = "edgeres-root.json"  # in the root's top directory, written last
SITE = "opt/edgeres/site"  # the unzipped wheels, relative to the root
# runtime -> (import that proves it works, wheels it needs; the first is the runtime itself)
RUNTIMES = {r.name: r.emulation for r in registry.RUNTIMES.values() if r.emulation}
APT_HINT = "apt-get install qemu-user-static debootstrap"
PROBE_CPU = "cortex-a72"  # the qemu CPU model the set-up checks the root with


@dataclass(frozen=True)
class Root:
    """A finished arm64 root and what its marker says (python, runtimes, set-up time and size)."""

    path: Path
    info: dict[str, Any]

    @property
    def python(self) -> Path:
        return self.path / "usr" / "bin" / "python3"

    @property
    def runtimes(self) -> dict[str, str]:
        """Runtime name -> "package version" of those installed in the root."""
        return self.info["runtimes"]

    @property
    def skipped(self) -> dict[str, str]:
        """Runtime name -> why it is not in the root (no aarch64 wheel, or it does not import)."""
        return self.info["skipped"]


def cache_dir() -> Path:
    base = os.environ.get("EDGERES_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "edgeres"
    return Path(base).expanduser()


def root_dir() -> Path:
    return cache_dir() / "arm64-root"


def setup_command(device: str) -> str:
    return f"edgeres devices --setup {device}"


def status(path: Path | None = None) -> tuple[str, Root | None]:
    """``("ready", Root)``, or ``("missing" | "incomplete", None)`` for a root that must be (re)built."""
    path = path or root_dir()
    if not path.exists():
        return "missing", None
    try:
        info = json.loads((path / MARKER).read_text())
        root = Root(path, info)
        complete = info["format"] == FORMAT and root.python.exists() and (path / SITE).is_dir()
    except (OSError, ValueError, KeyError, TypeError):
        complete = False
    return ("ready", root) if complete else ("incomplete", None)


def ready_root(device: str = "raspberrypi", path: Path | None = None) -> Root:
    """The finished root; an ``EdgeresError`` naming the set-up command when it is missing or half-made."""
    path = path or root_dir()
    state, root = status(path)
    if state == "missing":
        raise EdgeresError(f"the arm64 root for emulated devices is not set up ({path})",
                           hint=f"build it once (about a minute and 300 MB, from the Debian mirror and PyPI): "
                                f"{setup_command(device)}")
    if state == "incomplete":
        raise EdgeresError(f"the arm64 root at {path} is incomplete or damaged (an interrupted set-up?); "
                           "it will not be used", hint=f"rebuild it: {setup_command(device)}")
    assert root is not None
    return root


def qemu() -> str:
    """The path of qemu-aarch64-static (looked up on PATH)."""
    found = shutil.which(QEMU)
    if found is None:
        raise EdgeresError(f"{QEMU} is not installed: emulated aarch64 devices need qemu-user",
                           hint=f"install it: {APT_HINT}")
    return found


def qemu_version() -> str:
    first = subprocess.run([qemu(), "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"version (\S+)", first)
    return match.group(1) if match else "?"


def python_command(root: Root, cpu: str) -> list[str]:
    """argv running the root's python3 on the emulated ``cpu`` (a qemu CPU model, e.g. cortex-a72)."""
    return [qemu(), "-cpu", cpu, "-L", str(root.path), str(root.python)]


def python_env(root: Root) -> dict[str, str]:
    """A clean environment for the root's python: its own packages and the wheels, nothing of the host's."""
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8",
            "PYTHONPATH": str(root.path / SITE), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """``$EDGERES_DEBIAN_MIRROR``, else the first Debian archive in the machine's apt sources, else
    deb.debian.org. Both apt formats are read: one-line ``.list`` and deb822 ``.sources``."""
    if os.environ.get("EDGERES_DEBIAN_MIRROR"):
        return os.environ["EDGERES_DEBIAN_MIRROR"]
    uris: list[str] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()
                if len(words) >= 2 and words[0] == "deb":
                    uris.append(words[1])
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.MULTILINE))
                if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                    uris += fields.get("URIs", "").split()
    debian = [u.rstrip("/") for u in uris if u.rstrip("/").endswith("/debian")]
    return debian[0] if debian else DEFAULT_MIRROR


# -- building ----------------------------------------------------------------------------------------
def _tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in (QEMU, "debootstrap", "dpkg")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise EdgeresError(f"{', '.join(missing)} not found: building the arm64 root needs them",
                           hint=f"install them: {APT_HINT}")
    if os.geteuid() != 0:
        raise EdgeresError("building the arm64 root runs debootstrap, which needs root",
                           hint="run the set-up as root (sudo), with EDGERES_CACHE pointing where the root should go")
    return {name: str(path) for name, path in found.items()}


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One set-up at a time per cache directory."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "arm64-root.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _debootstrap(tools: dict[str, str], staging: Path, mirror: str, bar, task) -> None:
    command = [tools["debootstrap"], "--foreign", "--arch=arm64", "--variant=minbase",
               f"--include={','.join(PACKAGES)}", SUITE, str(staging), mirror]
    tail: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            tail = (tail + [line])[-20:]
            if line.startswith("I: Retrieving ") or line.startswith("I: Extracting "):
                bar.update(task, advance=1, status=line[3:])
    if proc.returncode != 0:
        errors = [t for t in tail if t.startswith("E:")] or tail[-1:] or [f"exit code {proc.returncode}"]
        raise EdgeresError(f"debootstrap failed for {SUITE}/arm64 from {mirror}: {errors[-1][:300]}",
                           hint="the set-up downloads Debian packages: check that the mirror is reachable "
                                "(or choose one with EDGERES_DEBIAN_MIRROR)")


def _unpack(tools: dict[str, str], staging: Path, bar, task) -> None:
    """``dpkg -x`` every downloaded package (the second stage of debootstrap would need to run the root's
    maintainer scripts), drop what nothing reads, and do by hand what matters of those scripts (the BLAS
    and LAPACK links numpy loads) and of a kernel (an Arm /proc/cpuinfo)."""
    archives = staging / "var" / "cache" / "apt" / "archives"
    debs = sorted(archives.glob("*.deb"))
    bar.update(task, total=len(debs))
    for deb in debs:
        proc = subprocess.run([tools["dpkg"], "-x", str(deb), str(staging)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgeresError(f"dpkg -x {deb.name} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        deb.unlink()
        bar.update(task, advance=1, status=deb.name.split("_")[0])
    for unused in ("var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info"):
        shutil.rmtree(staging / unused, ignore_errors=True)  # package indexes and docs: 100 MB nothing reads
    lib = staging / "usr" / "lib" / "aarch64-linux-gnu"
    for name in ("blas", "lapack"):
        link = lib / f"lib{name}.so.3"
        if not link.exists():
            link.symlink_to(f"{name}/lib{name}.so.3")
    # qemu-user 7.2 shows the guest the host's x86 /proc/cpuinfo, on which the cpuinfo library inside
    # onnxruntime crashes; qemu opens files under -L first, so the guest reads this one: Arm cores
    # (Cortex-A72 ids). The instruction set the kernels dispatch on is qemu's -cpu model, not this file.
    block = ("processor\t: {}\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n")
    (staging / "proc").mkdir(exist_ok=True)
    (staging / "proc" / "cpuinfo").write_text("\n".join(block.format(i) for i in range(os.cpu_count() or 1)))


def _guest(root: Root, code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*python_command(root, PROBE_CPU), "-c", code], capture_output=True, text=True,
                          env=python_env(root), timeout=timeout)


def _probe(root: Root) -> dict[str, str]:
    """The root's Python, glibc and numpy versions, read by running its python under qemu."""
    proc = _guest(root, "import json, platform, numpy; print(json.dumps({'python': platform.python_version(), "
                        "'glibc': platform.libc_ver()[1], 'numpy': numpy.__version__}))")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise EdgeresError(f"the arm64 root's python3 does not run under qemu: {last[:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _platforms(glibc: str) -> list[str]:
    """pip --platform tags an aarch64 wheel may carry to run on this glibc (pip does not expand them)."""
    major, minor = (int(p) for p in glibc.split(".")[:2])
    return ["manylinux2014_aarch64", *(f"manylinux_{major}_{m}_aarch64" for m in range(17, minor + 1))]


def _download(dist: str, versions: dict[str, str], wheels: Path) -> Path | None:
    """The aarch64 wheel of ``dist`` for the root's Python: the host's version of it when there is one
    (the same kernels' code on both sides of a comparison), else the newest; None if there is none."""
    host = None
    with contextlib.suppress(metadata.PackageNotFoundError):
        host = metadata.version(dist)
    tags = [arg for platform in _platforms(versions["glibc"]) for arg in ("--platform", platform)]
    python = ".".join(versions["python"].split(".")[:2])
    for requirement in ([f"{dist}=={host}"] if host else []) + [dist]:
        before = set(wheels.glob("*.whl"))
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *tags,
                               "--python-version", python, "--implementation", "cp", "--dest", str(wheels),
                               "--disable-pip-version-check", "--quiet", requirement],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            new = sorted(set(wheels.glob("*.whl")) - before)
            return new[0] if new else None
        if "No matching distribution" not in proc.stderr and "Could not find a version" not in proc.stderr:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise EdgeresError(f"pip download {requirement} (aarch64) failed: {last[:300]}",
                               hint="the set-up downloads aarch64 wheels from PyPI: check that it is reachable")
    return None


def _wheels(root: Root, versions: dict[str, str], bar, task) -> tuple[dict[str, str], dict[str, str]]:
    """Download and unzip the runtimes' aarch64 wheels into the root; check each imports under qemu.
    Returns (installed runtime -> "package version", skipped runtime -> reason)."""
    site, wheels = root.path / SITE, root.path / "opt" / "edgeres" / "wheels"
    site.mkdir(parents=True, exist_ok=True)
    wheels.mkdir(parents=True, exist_ok=True)
    installed, skipped, unzipped = {}, {}, {}
    for runtime, (module, dists) in RUNTIMES.items():
        bar.update(task, status=f"{runtime}: {', '.join(dists)}")
        missing = []
        for dist in dists:
            if dist not in unzipped:
                wheel = _download(dist, versions, wheels)
                if wheel is None:
                    missing.append(dist)
                    continue
                with zipfile.ZipFile(wheel) as zf:
                    zf.extractall(site)
                unzipped[dist] = wheel.name.split("-")[1]
        if missing:
            skipped[runtime] = (f"no aarch64 wheel of {', '.join(missing)} for CPython {versions['python']} "
                                f"(glibc {versions['glibc']}) on PyPI")
        else:
            proc = _guest(root, f"import {module}")
            if proc.returncode == 0:
                installed[runtime] = f"{dists[0]} {unzipped[dists[0]]}"
            else:
                last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
                skipped[runtime] = f"{dists[0]} {unzipped[dists[0]]} does not import under qemu: {last[:200]}"
        bar.update(task, advance=1)
    shutil.rmtree(wheels)
    return installed, skipped


def _disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (like ``du``: each inode once, symlinks not followed)."""
    seen, total = set(), 0
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(directory, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def setup(path: Path | None = None) -> Root:
    """Build the arm64 root (unless a finished one is there), with progress on the terminal; returns it.

    A half-made root at ``path`` is replaced. Raises ``EdgeresError`` when a tool is missing, when not
    root, or when the mirror or PyPI cannot be reached."""
    from edgeres.console import progress, say, warn

    path = path or root_dir()
    ready = status(path)[1]
    if ready is not None:
        return ready
    tools = _tools()
    with _locked(path.parent):
        state, root = status(path)  # another set-up may have finished meanwhile
        if root is not None:
            return root
        if state == "incomplete":
            say(f"the arm64 root at {path} is incomplete: rebuilding it")
        staging = path.with_name(path.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        mirror = debian_mirror()
        say(f"building the arm64 root for emulated devices in {path} (Debian {SUITE} from {mirror}, "
            "aarch64 wheels from PyPI)")
        start = time.perf_counter()
        try:
            with progress() as bar:
                fetch = bar.add_task("debootstrap", total=None, status="")
                _debootstrap(tools, staging, mirror, bar, fetch)
                bar.update(fetch, total=bar.tasks[fetch].completed, status="done")
                unpack = bar.add_task("unpack", total=None, status="")
                _unpack(tools, staging, bar, unpack)
                bar.update(unpack, status="done")
                partial = Root(staging, {})
                versions = _probe(partial)
                runtimes = bar.add_task("runtimes", total=len(RUNTIMES), status="")
                installed, skipped = _wheels(partial, versions, bar, runtimes)
                bar.update(runtimes, status="done")
            info = {"format": FORMAT, "suite": SUITE, "mirror": mirror, **versions, "runtimes": installed,
                    "skipped": skipped, "seconds": round(time.perf_counter() - start, 1),
                    "bytes": _disk_bytes(staging), "created": _dt.datetime.now(_dt.timezone.utc).isoformat()}
            (staging / MARKER).write_text(json.dumps(info, indent=2))
            old = path.with_name(path.name + ".old")
            if path.exists():
                path.rename(old)
            staging.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for runtime, reason in skipped.items():
        warn(f"emulated devices run without {runtime}: {reason}")
    return Root(path, info)
