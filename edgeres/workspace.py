"""Artifacts and their manifests in a workspace directory.

Every step writes one artifact: a directory holding its files and a ``manifest.json``. The directory is
built under a hidden temporary name and renamed into place only when complete, so an interrupted step
(Ctrl-C, kill -9, full disk) never leaves an artifact that a later step would pick up.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeres import __version__
from edgeres.errors import EdgeresError

MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"


def default_root() -> Path:
    return Path(os.environ.get("EDGERES_WORKSPACE", "edgeres-runs"))


@dataclass(frozen=True)
class Artifact:
    """A finished artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def file(self, name: str) -> Path:
        path = self.path / name
        if not path.exists():
            raise EdgeresError(f"artifact {self.id} has no file {name!r}", hint="the artifact is incomplete or was edited by hand")
        return path

    def describe(self) -> str:
        m = self.manifest
        bits = [m["kind"], m.get("model", "?"), m.get("dataset", "?")]
        if m.get("precision"):
            bits.append(m["precision"])
        if m.get("format"):
            bits.append(m["format"])
        return f"{self.id} ({', '.join(bits)})"


class ArtifactWriter:
    """An artifact under construction: write files into ``dir``, fill ``manifest``.

    After the ``with`` block ends without error, ``artifact`` is the finished artifact.
    """

    def __init__(self, tmp_dir: Path, manifest: dict[str, Any]):
        self.dir = tmp_dir
        self.manifest = manifest
        self.artifact: Artifact | None = None


def _package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "edgeres": __version__}
    for name in ("torch", "torchvision", "nncf", "onnx", "onnxruntime", "openvino", "tensorflow"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = str(module.__version__)
    return versions


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Workspace:
    """A directory of artifacts (default ``./edgeres-runs``, or ``$EDGERES_WORKSPACE``)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    # -- writing ---------------------------------------------------------------------------------
    def _prepare_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{_TMP_PREFIX}probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
        except OSError as exc:
            raise EdgeresError(
                f"workspace {self.root} is not writable: {exc.strerror or exc}",
                hint="choose another with --workspace DIR or EDGERES_WORKSPACE",
            ) from None
        self._remove_stale_tmp()

    def _remove_stale_tmp(self) -> None:
        """Delete temp dirs left by processes that died mid-write (kill -9, power loss)."""
        for entry in self.root.glob(f"{_TMP_PREFIX}*"):
            try:
                pid = int(entry.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)

    @contextlib.contextmanager
    def create(self, kind: str, *, model: str, dataset: str, parent: Artifact | None = None,
               command: str | None = None, config: dict | None = None, **fields: Any) -> Iterator[ArtifactWriter]:
        """Build a new artifact atomically; on any exception nothing is left behind."""
        self._prepare_root()
        now = _dt.datetime.now(_dt.timezone.utc)
        artifact_id = f"{kind}-{model}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        tmp = self.root / f"{_TMP_PREFIX}{os.getpid()}-{artifact_id}"
        tmp.mkdir()
        manifest: dict[str, Any] = {
            "id": artifact_id,
            "kind": kind,
            "model": model,
            "dataset": dataset,
            "parent": parent.id if parent else None,
            "created": now.isoformat(timespec="microseconds"),
            "command": command if command is not None else " ".join(["edgeres", *sys.argv[1:]]),
            "config": config or {},
            "metrics": {},
            **fields,
        }
        writer = ArtifactWriter(tmp, manifest)
        try:
            yield writer
            manifest["versions"] = _package_versions()
            manifest["files"] = {
                str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            with open(tmp / MANIFEST, "w") as fh:
                json.dump(manifest, fh, indent=2, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.root / artifact_id)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise EdgeresError(f"could not write artifact in {self.root}: {exc.strerror or exc}") from None
            raise
        writer.artifact = Artifact(self.root / artifact_id, manifest)

    # -- reading ---------------------------------------------------------------------------------
    def artifacts(self, kind: str | None = None, where: Callable[[dict], bool] | None = None,
                  **equals: Any) -> list[Artifact]:
        """Finished artifacts, newest first, optionally filtered by kind and manifest fields."""
        if not self.root.is_dir():
            if self.root.exists():
                raise EdgeresError(f"workspace {self.root} is not a directory",
                                   hint="choose another with --workspace DIR or EDGERES_WORKSPACE")
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not (entry / MANIFEST).is_file():
                continue
            try:
                manifest = json.loads((entry / MANIFEST).read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if kind and manifest.get("kind") != kind:
                continue
            if any(manifest.get(k) != v for k, v in equals.items() if v is not None):
                continue
            if where and not where(manifest):
                continue
            found.append(Artifact(entry, manifest))
        return sorted(found, key=lambda a: a.manifest.get("created", ""), reverse=True)

    def latest(self, kind: str | None = None, where: Callable[[dict], bool] | None = None,
               **equals: Any) -> Artifact | None:
        found = self.artifacts(kind, where, **equals)
        return found[0] if found else None

    def resolve(self, ref: str) -> Artifact:
        """An artifact by id, unique id prefix, or directory path."""
        path = Path(ref)
        if (path / MANIFEST).is_file():
            return Artifact(path, json.loads((path / MANIFEST).read_text()))
        matches = [a for a in self.artifacts() if a.id == ref] or [a for a in self.artifacts() if a.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise EdgeresError(f"no artifact {ref!r} in workspace {self.root}", hint="`edgeres info` lists them")
        raise EdgeresError(f"{ref!r} matches {len(matches)} artifacts: " + ", ".join(a.id for a in matches[:5]))

    def pick(self, ref: str | None, kinds: tuple[str, ...], **equals: Any) -> Artifact:
        """The artifact ``ref`` names (id, prefix or path), or, when ``ref`` is a model name or None, the
        latest artifact of one of ``kinds`` (in that order of preference). Says which one it picked."""
        from edgeres.console import say

        if ref is not None:
            try:
                artifact = self.resolve(ref)
            except EdgeresError:
                artifact = None
            if artifact is not None:
                return artifact
            equals = {**equals, "model": ref}
        for kind in kinds:
            artifact = self.latest(kind, **equals)
            if artifact is not None:
                say(f"using {artifact.describe()}")
                return artifact
        what = f"for model {ref!r} " if ref else ""
        raise EdgeresError(f"no {' or '.join(kinds)} artifact {what}in workspace {self.root}",
                           hint="create one first, e.g. `edgeres train resnet18`")
