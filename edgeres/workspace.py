"""Artifacts and their manifests in a workspace directory.

Every step writes one artifact: a directory holding its files and a ``manifest.json``. The directory is
built under a hidden temporary name and renamed into place only when complete, so an interrupted step
(Ctrl-C, kill -9, full disk) never leaves an artifact that a later step would pick up.

Nothing on disk is believed unchecked. A manifest is untrusted input: it is validated on read (a
malformed one is skipped in listings, with a warning naming it), its id must be its directory's name, and
every path it names stays inside its artifact. An artifact's files are checked against the manifest's
sha256 hashes before use; a hash once checked is remembered (in this process and in
``.cache/hashes.json``, as trusted as the manifests beside it) under the file's device, inode, size, mtime
and ctime, so a later read costs a ``stat``, while any write to the file, even one that sets its mtime
back, makes it hashed again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import numbers
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeres import __version__, distributed
from edgeres.errors import EdgeresError

MANIFEST = "manifest.json"
KINDS = ("train", "prune", "quantize", "export", "bench", "diagnose", "tune")
_TMP_PREFIX = ".tmp-"
_PENDING_PREFIX = ".pending-"  # a resumable step's artifact under construction: .pending-KEY-XXXXXX
CHECKPOINT = "checkpoint.pt"  # a resumable step's epoch checkpoint, in its pending directory (never published)
_MAX_JSON_BYTES = 64 << 20
_HASH_CACHE = Path(".cache") / "hashes.json"


def default_root() -> Path:
    return Path(os.environ.get("EDGERES_WORKSPACE", "edgeres-runs"))


class NoSuchArtifact(EdgeresError):
    """No artifact answers to a reference (as opposed to one that does but is malformed or ambiguous)."""


# -- the manifest schema ----------------------------------------------------------------------------
def _check_name(value: str, what: str = "name") -> str:
    """A single path component that stays where it is put: not empty, no separator, not . or .., no
    control characters, not hidden."""
    if (not value or len(value) > 255 or "/" in value or "\\" in value or value.startswith(".")
            or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise ValueError(f"{what} {value!r} is not a plain file name (no '/', '\\', leading '.' or control "
                         "characters)")
    return value


def _check_relative(value: str) -> str:
    """A relative path inside an artifact: no absolute path, no '..', no empty or odd component."""
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") or "\\" in p or any(ord(c) < 32 for c in p) for p in parts):
        raise ValueError(f"file {value!r} is not a path inside the artifact")
    return value


class _Record(BaseModel):
    """Strict types (a string is not a number), unknown keys kept: later versions may add fields."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class _Preprocessing(_Record):
    input_size: int = Field(ge=8, le=4096)
    channels: int = Field(ge=1, le=4)
    mean: list[float] = Field(min_length=1, max_length=4)
    std: list[float] = Field(min_length=1, max_length=4)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    resize: Optional[int] = Field(default=None, ge=8, le=8192)

    @field_validator("std")
    @classmethod
    def _positive(cls, std: list[float]) -> list[float]:
        if not all(s > 0 for s in std):
            raise ValueError("std values must be positive")
        return std


class _Architecture(_Record):
    name: str = Field(min_length=1, max_length=100)
    num_classes: int = Field(ge=1, le=100_000)
    in_channels: int = Field(ge=1, le=4)
    channels: dict[str, dict[str, int]] = Field(default_factory=dict)


class _Data(_Record):
    dataset: str
    dir: Optional[str] = None
    validation: Optional[str] = None


class _Verify(_Record):
    """An export's verification, which bench rows quote."""

    top1: float = Field(ge=0, le=100)
    agreement: float = Field(ge=0, le=100)
    max_abs_diff: Optional[float] = Field(None, ge=0)
    n: Optional[int] = Field(None, ge=0)


class _Metrics(_Record):
    verify: Optional[_Verify] = None
    size_bytes: Optional[int] = Field(None, ge=0)


class _Manifest(_Record):
    id: str
    kind: Literal[KINDS]  # type: ignore[valid-type]
    model: str
    dataset: str
    created: str
    files: dict[str, str]
    parent: Optional[str] = None
    command: Optional[str] = None
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: _Metrics = Field(default_factory=_Metrics)
    versions: dict[str, Any] = Field(default_factory=dict)
    preprocessing: Optional[_Preprocessing] = None
    architecture: Optional[_Architecture] = None
    data: Optional[_Data] = None
    classes: Optional[list[str]] = None
    file: Optional[str] = None
    format: Optional[str] = None
    precision: Optional[str] = None
    runtime: Optional[str] = None

    @field_validator("id", "model")
    @classmethod
    def _plain(cls, value: str, info) -> str:
        return _check_name(value, info.field_name)

    @field_validator("parent")
    @classmethod
    def _parent(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, "parent")

    @field_validator("created")
    @classmethod
    def _iso(cls, value: str) -> str:
        _dt.datetime.fromisoformat(value)  # ValueError: not a date
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            if _check_relative(name) == MANIFEST:
                raise ValueError("the manifest cannot list itself among the files")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{name!r} needs a sha256 (64 lowercase hex digits), not {digest!r}")
        return files

    @model_validator(mode="after")
    def _fields_of_kind(self) -> "_Manifest":
        needed = {"export": ("file", "format", "precision", "runtime", "preprocessing"),
                  "bench": (), "diagnose": (), "tune": ()}.get(self.kind, ("architecture", "preprocessing"))
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} manifest needs {', '.join(missing)}")
        if self.file is not None and self.file not in self.files:
            raise ValueError(f"file {self.file!r} is not one of the artifact's files")
        if self.parent is not None and self.parent == self.id:
            raise ValueError("parent: an artifact cannot be its own parent")
        if self.kind == "export":
            from edgeres.export.formats import FORMATS, PRECISIONS

            if self.format not in FORMATS:
                raise ValueError(f"format {self.format!r} is none of {', '.join(FORMATS)}")
            if self.precision not in PRECISIONS:
                raise ValueError(f"precision {self.precision!r} is none of {', '.join(PRECISIONS)}")
            if self.runtime != FORMATS[self.format].runtime:
                raise ValueError(f"runtime {self.runtime!r}: {self.format} files run on "
                                 f"{FORMATS[self.format].runtime}")
        if self.preprocessing is not None:  # what the steps will make of it, by the same rules
            from edgeres.preprocessing import Preprocessing

            Preprocessing.from_dict(self.preprocessing.model_dump())
        return self


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def validation_problem(exc: ValidationError) -> str:
    """The first few problems of a pydantic validation error, each as ``field: message``."""
    lines = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    more = len(exc.errors()) - len(lines)
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")


def read_json(path: Path, hint: str, max_bytes: int = _MAX_JSON_BYTES) -> Any:
    """A JSON file that may be damaged or hostile: EdgeresError naming it if it cannot be read, is too
    large, is not UTF-8 JSON, or holds NaN or infinity (not JSON, and never a result)."""
    try:
        if path.stat().st_size > max_bytes:
            raise EdgeresError(f"{path} is larger than {max_bytes >> 20} MB: not a file edgeres wrote", hint=hint)
        value = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except OSError as exc:
        raise EdgeresError(f"cannot read {path}: {exc.strerror or exc}", hint=hint) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, deep nesting
        raise EdgeresError(f"{path} is not valid JSON: {str(exc) or type(exc).__name__}", hint=hint) from None
    bad = _non_finite(value)  # 1e999 reads as infinity
    if bad:
        raise EdgeresError(f"{path} holds {bad[1]} at {bad[0]}, not a finite number", hint=hint)
    return value


def read_manifest(directory: Path) -> dict[str, Any]:
    """The validated manifest of the artifact in ``directory``; EdgeresError naming the file if it is
    unreadable, not JSON (NaN included), not of the schema, or not about this directory."""
    path = directory / MANIFEST
    hint = f"the artifact is damaged or was edited by hand: delete {directory} and re-run the step that made it"
    if directory.is_symlink() and directory.resolve().parent != directory.parent.resolve():
        raise EdgeresError(f"artifact directory {directory} is a link outside the workspace (to "
                           f"{directory.resolve()})", hint=f"an artifact lives in its workspace: delete the link "
                                                           f"{directory}, or copy the artifact in its place")
    raw = read_json(path, hint)
    if not isinstance(raw, dict):
        raise EdgeresError(f"{path} is not a valid manifest: it holds a JSON {type(raw).__name__}, not an object",
                           hint=hint)
    try:
        _Manifest.model_validate(raw)
    except ValidationError as exc:
        raise EdgeresError(f"{path} is not a valid manifest: {validation_problem(exc)}", hint=hint) from None
    if raw["id"] != directory.name:
        raise EdgeresError(f"{path} is about artifact {raw['id']!r}, but its directory is {directory.name!r}",
                           hint=f"an artifact's directory must keep its id as its name: rename it back to "
                                f"{raw['id']!r}, or delete it")
    return raw


# -- file integrity ----------------------------------------------------------------------------------
_RACY_NS = 2_000_000_000  # a file changed this recently is hashed, not remembered (timestamp resolution)
_SEEN: dict[str, str] = {}  # stat key -> sha256 of a file checked before
_LOADED: set[str] = set()  # workspace roots whose hash cache file was read


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[str, bool]:
    """What changes whenever the file's content can have changed; and whether it may be cached: a file
    touched within the last 2 s could still change within its timestamp's resolution unseen."""
    st = path.stat()
    recent = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS
    return f"{path.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}", not recent


def _load_hash_cache(root: Path) -> None:
    key = str(root.resolve())
    if key in _LOADED:
        return
    _LOADED.add(key)
    try:
        data = json.loads((root / _HASH_CACHE).read_text())
    except (OSError, ValueError, RecursionError):
        return
    if isinstance(data, dict):
        _SEEN.update({k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)})


def _save_hash_cache(root: Path, new: dict[str, str]) -> None:
    """Add ``new`` to the cache file; best effort (a read-only workspace just hashes again next time)."""
    path = root / _HASH_CACHE
    try:
        path.parent.mkdir(exist_ok=True)
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            old = {}
        merged = {**(old if isinstance(old, dict) else {}), **new}
        merged = dict(list(merged.items())[-4096:])  # the newest entries
        tmp = path.with_name(f"hashes.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged))
        os.replace(tmp, path)
    except OSError:
        pass


@dataclass(frozen=True)
class Artifact:
    """A finished artifact directory and its (validated) manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def file(self, name: str) -> Path:
        """The path of one of the artifact's files, after checking every file of the artifact against
        its manifest's hashes (a model's companions, like OpenVINO's ``.bin``, are read with it)."""
        if name not in self.manifest.get("files", {}):
            raise EdgeresError(f"artifact {self.id} has no file {name!r}",
                               hint=f"its files: {', '.join(self.manifest.get('files', {})) or 'none'}")
        self.verify()
        return self.path / name

    def verify(self, names: Iterable[str] | None = None) -> None:
        """Check ``names`` (default: all of the artifact's files) against the manifest's sha256 hashes;
        one EdgeresError naming the first file that is missing, outside the artifact or changed."""
        files: dict[str, str] = self.manifest.get("files", {})
        root = self.path.parent
        _load_hash_cache(root)
        new: dict[str, str] = {}
        hint = (f"re-run the step that made it (`{self.manifest.get('command') or 'edgeres ...'}`), "
                f"or delete {self.path}")
        try:
            inside = self.path.resolve()
            for name in (files if names is None else names):
                path = self.path / name
                if name not in files:
                    raise EdgeresError(f"artifact {self.id} has no file {name!r}")
                if not path.is_file():
                    raise EdgeresError(f"{name} of artifact {self.id} is missing or not a file ({path})", hint=hint)
                if not path.resolve().is_relative_to(inside):
                    raise EdgeresError(f"{name} of artifact {self.id} leads outside the artifact "
                                       f"(to {path.resolve()})", hint=hint)
                key, cacheable = _stat_key(path)
                if _SEEN.get(key) == files[name]:
                    continue
                if sha256(path) != files[name]:
                    raise EdgeresError(f"{name} of artifact {self.id} has changed since it was written (damaged, "
                                       f"cut short or replaced: its sha256 does not match the manifest): {path}",
                                       hint=hint)
                if cacheable:
                    _SEEN[key] = new[key] = files[name]
        except OSError as exc:
            raise EdgeresError(f"cannot read the files of artifact {self.id} in {self.path}: "
                               f"{exc.strerror or exc}", hint=hint) from None
        if new:
            _save_hash_cache(root, new)

    def intact(self) -> bool:
        """Whether every file matches the manifest (for caches deciding whether to reuse the artifact)."""
        try:
            self.verify()
        except EdgeresError:
            return False
        return True

    def describe(self) -> str:
        m = self.manifest
        bits = [m["kind"], m.get("model", "?"), m.get("dataset", "?")]
        if m.get("precision"):
            bits.append(m["precision"])
        if m.get("format"):
            bits.append(m["format"])
        return f"{self.id} ({', '.join(bits)})"


FP32_KINDS = ("train", "prune")  # the FP32 model at the top of every lineage


def fp32_root(artifact: Artifact, index: dict[str, Artifact]) -> Artifact:
    """The FP32 train/prune artifact at the top of ``artifact``'s parent links, looked up in ``index`` (id ->
    artifact); an error when a link is missing or loops."""
    seen, current = set(), artifact
    while current.kind not in FP32_KINDS:
        parent = current.manifest.get("parent")
        if parent is None or parent in seen or parent not in index:
            raise EdgeresError(f"{artifact.id} does not lead to an FP32 train/prune artifact (a parent is missing)")
        seen.add(parent)
        current = index[parent]
    return current


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


def _non_finite(value: Any, where: str = "") -> tuple[str, float] | None:
    """The place (``metrics.test.top1``) and value of the first NaN or infinity in ``value``, if any."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
        return where or "the value", float(value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _write_json(path: Path, manifest: dict[str, Any]) -> None:
    """Write a manifest durably; it must pass the schema it will be read with (edgeres writes only what
    it can read back)."""
    text = json.dumps(manifest, indent=2, default=str, allow_nan=False)
    try:
        _Manifest.model_validate(json.loads(text))
    except ValidationError as exc:
        raise EdgeresError(f"internal: the {manifest.get('kind')} manifest edgeres was about to write is not "
                           f"valid: {validation_problem(exc)}") from None
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _lock(directory: Path) -> int | None:
    """An exclusive lock on ``directory`` (a descriptor, held until closed or the process dies), or None
    when another process holds it."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


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
        self._warned: set[str] = set()  # each malformed manifest is reported once, not at every listing

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            from edgeres.console import warn

            warn(message)

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

    def _nothing_to_resume(self) -> EdgeresError:
        return EdgeresError(f"nothing to resume: no interrupted run of this configuration with a finished epoch in "
                            f"{self.root}", hint="run the same command without --resume (the options must be the "
                                                 "same as the interrupted run's)")

    def check_resumable(self) -> None:
        """Fail at once, before any work, when no interrupted run at all could be resumed here (whether one
        of the step's own configuration is there is known when the step starts writing)."""
        if not any(self.root.glob(f"{_PENDING_PREFIX}*/{CHECKPOINT}")):
            raise self._nothing_to_resume()

    def _pending(self, key: str, resume: str | None) -> tuple[Path, int]:
        """The locked pending directory of a resumable step whose configuration hashes to ``key``: with
        ``resume``, the unlocked one holding the newest checkpoint (``"required"``: an error when there is
        none); otherwise a new one, after removing unlocked ones left by interrupted runs. A locked one
        belongs to a run going on now and is left alone."""
        free = []
        for entry in self.root.glob(f"{_PENDING_PREFIX}{key}-*"):
            fd = _lock(entry)
            if fd is not None:
                free.append((entry, fd))
        ready = sorted((e for e in free if (e[0] / CHECKPOINT).is_file()),
                       key=lambda e: (e[0] / CHECKPOINT).stat().st_mtime, reverse=True)
        chosen = ready[0] if resume and ready else None
        for entry, fd in free:
            if chosen is None or entry != chosen[0]:
                saved = (entry / CHECKPOINT).is_file()
                if saved and not resume:
                    from edgeres.console import say

                    say(f"starting over: removing the checkpoint of an interrupted run of this configuration "
                        f"({entry}; --resume would have continued it)")
                if not (saved and resume):  # older checkpoints stay when resuming; empty ones go
                    shutil.rmtree(entry, ignore_errors=True)
                os.close(fd)
        if chosen is not None:
            return chosen
        if resume == "required":
            raise self._nothing_to_resume()
        building = self.root / f"{_TMP_PREFIX}{os.getpid()}-pending-{uuid.uuid4().hex[:6]}"
        building.mkdir()
        fd = _lock(building)
        assert fd is not None  # nobody else knows the name yet
        pending = self.root / f"{_PENDING_PREFIX}{key}-{uuid.uuid4().hex[:6]}"
        os.rename(building, pending)  # locked before anyone can see it
        return pending, fd

    @contextlib.contextmanager
    def create(self, kind: str, *, model: str, dataset: str, parent: Artifact | None = None,
               command: str | None = None, config: dict | None = None, resumable: bool = False,
               resume: str | None = None, **fields: Any) -> Iterator[ArtifactWriter]:
        """Build a new artifact atomically; on any exception nothing is left behind. A NaN or infinite
        number anywhere in the manifest is refused (it is not JSON, and never a result worth keeping).

        ``resumable``: the artifact is built in a pending directory named after its configuration (kind,
        model, dataset, parent, config and fields), where the step keeps an epoch checkpoint
        (``CHECKPOINT``); a run that stops for any reason but an ``EdgeresError`` leaves it there, hidden,
        for ``resume`` (``"if-any"``, or ``"required"``: an error when there is nothing to resume).

        Under torchrun only rank 0 writes: the other ranks get a private temporary directory that is
        dropped at the end (their ``artifact`` is not in the workspace)."""
        if kind not in KINDS:
            raise EdgeresError(f"internal: unknown artifact kind {kind!r}")
        try:
            _check_name(model, "model")
        except ValueError as exc:
            raise EdgeresError(str(exc), hint="model names are plain names like resnet18") from None
        main = distributed.is_main()
        if main:
            self._prepare_root()
        now = _dt.datetime.now(_dt.timezone.utc)
        artifact_id = f"{kind}-{model}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        lock = None
        if not main:
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix=f"edgeres-rank{distributed.rank()}-"))
        elif resumable:
            key = hashlib.sha256(json.dumps({"kind": kind, "model": model, "dataset": dataset,
                                             "parent": parent.id if parent else None, "config": config,
                                             **fields}, sort_keys=True, default=str).encode()).hexdigest()[:16]
            tmp, lock = self._pending(key, resume)
        else:
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
        if not main:
            try:
                yield writer
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            writer.artifact = Artifact(tmp, manifest)
            return
        try:
            yield writer
            if resumable:
                for name in (CHECKPOINT, CHECKPOINT + ".partial"):
                    (tmp / name).unlink(missing_ok=True)
            bad = _non_finite(manifest)
            if bad:
                raise EdgeresError(
                    f"the {kind} step produced a non-finite number ({bad[1]}) at {bad[0]}; nothing was saved",
                    hint="a NaN or infinite input (an option such as --mean, --std or --max-drop, NaN weights in a "
                         "checkpoint, or a training run that diverged) got this far: check the inputs")
            manifest["versions"] = _package_versions()
            manifest["files"] = {
                str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            _write_json(tmp / MANIFEST, manifest)
            os.rename(tmp, self.root / artifact_id)
        except BaseException as exc:
            if resumable and not isinstance(exc, EdgeresError) and (tmp / CHECKPOINT).is_file():
                from edgeres.console import say

                say(f"[yellow]stopped:[/] the last finished epoch is kept in {tmp}; the same command with "
                    f"--resume continues from there")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise EdgeresError(f"could not write artifact in {self.root}: {exc.strerror or exc}") from None
            raise
        finally:
            if lock is not None:
                os.close(lock)
        writer.artifact = Artifact(self.root / artifact_id, manifest)

    def rehash(self, artifact: Artifact, names: Iterable[str]) -> Artifact:
        """Record new hashes for ``names`` after rewriting them in a finished artifact (``edgeres report``
        re-renders a bench's reports); the manifest is replaced atomically."""
        files = {**artifact.manifest["files"]}
        for name in names:
            files[_check_relative(name)] = sha256(artifact.path / name)
        manifest = {**artifact.manifest, "files": files}
        tmp = artifact.path / f".{MANIFEST}.{os.getpid()}.tmp"
        try:
            _write_json(tmp, manifest)
            os.replace(tmp, artifact.path / MANIFEST)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise EdgeresError(f"could not update {artifact.path / MANIFEST}: {exc.strerror or exc}") from None
        return Artifact(artifact.path, manifest)

    # -- reading ---------------------------------------------------------------------------------
    def _entries(self) -> list[Path]:
        if not self.root.is_dir():
            if self.root.is_symlink():
                raise EdgeresError(f"workspace {self.root} is a link that leads nowhere (a loop, or its target "
                                   f"is gone)", hint="choose another with --workspace DIR or EDGERES_WORKSPACE")
            if self.root.exists():
                raise EdgeresError(f"workspace {self.root} is not a directory",
                                   hint="choose another with --workspace DIR or EDGERES_WORKSPACE")
            return []
        try:
            return [e for e in self.root.iterdir() if not e.name.startswith(".") and (e / MANIFEST).exists()]
        except OSError as exc:
            raise EdgeresError(f"cannot read workspace {self.root}: {exc.strerror or exc}",
                               hint="check its permissions, or choose another with --workspace DIR") from None

    def artifacts(self, kind: str | None = None, where: Callable[[dict], bool] | None = None,
                  **equals: Any) -> list[Artifact]:
        """Finished artifacts, newest first, optionally filtered by kind and manifest fields. An artifact
        whose manifest is malformed is left out, with a warning naming it."""
        found = []
        for entry in self._entries():
            try:
                manifest = read_manifest(entry)
            except EdgeresError as exc:
                self._warn_once(f"{exc.args[0]}; that artifact is skipped (delete {entry}, or restore its manifest)")
                continue
            if kind and manifest["kind"] != kind:
                continue
            if any(manifest.get(k) != v for k, v in equals.items() if v is not None):
                continue
            if where and not where(manifest):
                continue
            found.append(Artifact(entry, manifest))
        return sorted(found, key=lambda a: a.manifest["created"], reverse=True)

    def latest(self, kind: str | None = None, where: Callable[[dict], bool] | None = None, *,
               verify: bool = True, **equals: Any) -> Artifact | None:
        """The newest matching artifact; its files are checked (``verify``), since it is about to be used."""
        found = self.artifacts(kind, where, **equals)
        if found and verify:
            found[0].verify()
        return found[0] if found else None

    def resolve(self, ref: str, *, verify: bool = False) -> Artifact:
        """An artifact by id, unique id prefix, or directory path (inside this workspace). Raises
        ``NoSuchArtifact`` when nothing answers; other EdgeresErrors for a malformed or ambiguous one.
        With ``verify`` its files are checked too."""
        artifact = self._find(ref)
        if verify:
            artifact.verify()
        return artifact

    def _find(self, ref: str) -> Artifact:
        if not ref.strip():
            raise NoSuchArtifact("an empty artifact or model name was given",
                                 hint="name a model (e.g. resnet18) or an artifact; `edgeres info` lists them")
        path = Path(ref)
        try:
            is_path = (path / MANIFEST).is_file()
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            is_path = False
        if is_path:
            root = self.root.resolve()
            if path.resolve().parent != root:
                raise EdgeresError(f"{ref} is not an artifact of workspace {self.root}",
                                   hint=f"pass --workspace {path.resolve().parent}")
            return Artifact(path, read_manifest(path))
        try:
            direct = bool(_check_name(ref)) and (self.root / ref / MANIFEST).exists()
        except (OSError, ValueError):
            direct = False
        if direct:  # the exact id: a malformed manifest is an error here, not a silent "no artifact"
            return Artifact(self.root / ref, read_manifest(self.root / ref))
        every = self.artifacts()
        matches = [a for a in every if a.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NoSuchArtifact(f"no artifact {ref!r} in workspace {self.root}", hint="`edgeres info` lists them")
        raise EdgeresError(f"{ref!r} matches {len(matches)} artifacts: " + ", ".join(a.id for a in matches[:5]),
                           hint="give more of the id")

    def parent_of(self, artifact: Artifact) -> Artifact | None:
        """The artifact ``artifact`` was made from (None for a root); an error if it is not in this
        workspace (deleted, or the artifact was copied here from another workspace)."""
        parent = artifact.manifest.get("parent")
        if parent is None:
            return None
        try:
            return self.resolve(parent)
        except NoSuchArtifact:
            raise EdgeresError(f"artifact {artifact.id} was made from {parent}, which is not in workspace "
                               f"{self.root}", hint="the parent was deleted, or the artifact was copied from "
                                                    "another workspace: re-run its step here") from None

    def pick(self, ref: str | None, kinds: tuple[str, ...], *, verify: bool = True, **equals: Any) -> Artifact:
        """The artifact ``ref`` names (id, prefix or path), or, when ``ref`` is a model name or None, the
        latest artifact of one of ``kinds`` (in that order of preference). Says which one it picked, and
        checks its files (``verify``)."""
        from edgeres.console import say

        if ref is not None:
            try:
                artifact = self._find(ref)
            except NoSuchArtifact:
                if not ref.strip():
                    raise
                artifact = None
            if artifact is not None:
                if verify:
                    artifact.verify()
                return artifact
            equals = {**equals, "model": ref}
        for kind in kinds:
            artifact = self.latest(kind, verify=False, **equals)
            if artifact is not None:
                say(f"using {artifact.describe()}")
                if verify:
                    artifact.verify()
                return artifact
        what = f"for model {ref!r} " if ref else ""
        make = {"bench": "edgeres bench", "export": "edgeres export --target onnx"}.get(kinds[0],
                                                                                         "edgeres train resnet18")
        raise NoSuchArtifact(f"no {' or '.join(kinds)} artifact {what}in workspace {self.root}",
                             hint=f"create one first, e.g. `{make}`")
