"""Device profiles: where a benchmark runs, with which runtimes, and the figures an estimate needs.

A profile is one YAML file (``devices/<name>.yaml``; data, not code), validated strictly: an unknown
key, a wrong type or a missing field ends in one ``EdgeresError`` line naming the file and the key.
The built-in profiles live in the ``devices/`` folder of a checkout, or in ``<prefix>/share/edgeres/
devices`` once installed; a user directory (``--devices-dir`` or ``$EDGERES_DEVICES``) adds profiles
and overrides built-in ones of the same name.

Public API::

    load(path) -> Profile                                  one profile file
    load_all(devices_dir=None) -> dict[str, Profile]       built-in + user profiles, by name
    get(name, devices_dir=None) -> Profile                 by name (or a path to a .yaml file)
    usable(profile, runtime=None) -> (bool, reason)        can it run here, now?
    emulated(profile) -> Profile                           the profile run emulated here (--emulate)
    trusting_new_host(profile) -> Profile                  trust-on-first-use of its ssh host key
    runtime_options(profile, runtime, threads=None) -> dict  keyword arguments for runtimes.open_session
"""

from __future__ import annotations

import difflib
import os
import re
import site
import socket
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model,
                      model_validator)

from edgeres.errors import EdgeresError
from edgeres.runtimes import registry
from edgeres.yamlfile import read_mapping

ENV_DIR = "EDGERES_DEVICES"
RUNTIMES = tuple(registry.RUNTIMES)


def _scalar(value: Any) -> Any:
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError("expected a string, number or boolean")
    return value


OptionValue = Annotated[Any, AfterValidator(_scalar)]  # one clear error instead of one per union member


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Figure(_Strict):
    """A number and where it comes from (a datasheet, or "derived: ..." with the arithmetic)."""

    value: float = Field(gt=0)
    source: str = Field(min_length=1)


class Unit(_Strict):
    """One compute unit of a device (its CPU, GPU or NPU): roofline figures in GOPS (1e9 ops/s, one
    multiply-accumulate = 2 ops) per precision it computes in, the memory bandwidth it reads weights at
    (GB/s), and the fraction of peak compute assumed reachable at batch 1. ``compiled_for`` names the
    compiler a file must have gone through for this unit to run it (``edgetpu``: ``edgetpu_compiler``)."""

    description: str = Field(min_length=1)
    peak_fp32_gops: Optional[Figure] = None  # None: the unit does not compute in this precision
    peak_fp16_gops: Optional[Figure] = None  # None: fp16 at the fp32 rate, said so
    peak_int8_gops: Optional[Figure] = None
    memory_bandwidth_gbs: Figure
    compute_efficiency: Figure
    compiled_for: Optional[Literal["edgetpu"]] = None

    @model_validator(mode="after")
    def _checked(self) -> "Unit":
        if self.compute_efficiency.value > 1:
            raise ValueError("compute_efficiency.value must be a fraction of peak, at most 1")
        if self.peak_fp32_gops is None and self.peak_fp16_gops is None and self.peak_int8_gops is None:
            raise ValueError("give at least one of peak_fp32_gops, peak_fp16_gops, peak_int8_gops")
        return self


_FLAT_UNIT = "device"  # the one unit of an estimate written in the flat form (figures directly under estimate)
PRECISIONS = ("fp32", "fp16", "int8")


class Estimate(_Strict):
    """The device's compute units and which runs what: ``runs_on`` maps ``runtime/precision``, ``runtime``
    or ``*`` to a unit (the most specific key wins; without a match, the first unit). A unit with
    ``compiled_for`` runs exactly the files compiled for it, whatever ``runs_on`` says. The flat form of
    earlier profiles (the figures directly under ``estimate``) is one unit."""

    units: dict[str, Unit] = Field(min_length=1)
    runs_on: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "units" not in data:
            return {"units": {_FLAT_UNIT: {"description": "the device", **data}}}
        return data

    @model_validator(mode="after")
    def _keys_name_units(self) -> "Estimate":
        for key, unit in self.runs_on.items():
            runtime, _, precision = key.partition("/")
            if key != "*" and (runtime not in RUNTIMES or (precision and precision not in PRECISIONS)):
                raise ValueError(f"runs_on key {key!r}: expected '*', a runtime ({', '.join(RUNTIMES)}) or "
                                 "runtime/precision (fp32, fp16, int8)")
            if unit not in self.units:
                raise ValueError(f"runs_on[{key!r}] names unit {unit!r}; units: {', '.join(self.units)}")
            if self.units[unit].compiled_for:
                raise ValueError(f"runs_on[{key!r}]: unit {unit!r} runs only files compiled for it (compiled_for)")
        if all(unit.compiled_for for unit in self.units.values()):
            raise ValueError("at least one unit must run files as they are (without compiled_for)")
        return self

    def unit_for(self, runtime: str, precision: str, compiled_for: frozenset[str] = frozenset()) -> str:
        """The name of the unit that runs a ``runtime`` file of ``precision`` (compiled for ``compiled_for``)."""
        for name, unit in self.units.items():
            if unit.compiled_for and unit.compiled_for in compiled_for:
                return name
        for key in (f"{runtime}/{precision}", runtime, "*"):
            if key in self.runs_on:
                return self.runs_on[key]
        return next(name for name, unit in self.units.items() if not unit.compiled_for)


class LocalConnection(_Strict):
    """Runs on this machine, each variant in a fresh Python process."""

    type: Literal["local"]


# Values that reach ssh's command line or the device's shell (always as separate arguments, never in a
# shell string) must still not be readable as an option or hide a second line.
def _safe(what: str, pattern: str):
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"not a valid {what}")
        return value
    return AfterValidator(check)


HostName = Annotated[str, _safe("host name or address (letters, digits, . - : _; not starting with -)",
                                r"[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]{0,252}")]
UserName = Annotated[str, _safe("user name (letters, digits, . _ -; not starting with -)",
                                r"[A-Za-z0-9_.][A-Za-z0-9_.$-]{0,63}")]
RemotePath = Annotated[str, _safe("command or path on the device (one line, not starting with - or a space)",
                                  r"[^-\s][^\n\r\x00]{0,1023}")]


class SshConnection(_Strict):
    """Runs on a device reached with the system ``ssh``/``scp`` (key authentication, no prompts)."""

    type: Literal["ssh"]
    host: HostName
    user: UserName
    port: int = Field(22, ge=1, le=65535)
    key: Optional[str] = None  # private key path; None: ssh's own choice (agent, ~/.ssh/id_*)
    python: RemotePath = "python3"  # the device's Python executable (name or path)
    workdir: RemotePath = "/tmp"  # a private temp dir is created under it per variant
    known_hosts: Optional[str] = None  # None: the user's ~/.ssh/known_hosts
    accept_new_host_key: bool = False  # trust-on-first-use (StrictHostKeyChecking=accept-new)
    connect_timeout: float = Field(10, gt=0, le=300)
    retries: int = Field(2, ge=0, le=10)  # attempts more after a connection that drops mid-way

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}"


# qemu's models of real cores (Debian 12's qemu 7.2 has these). Not "max": under qemu 7.2 it offers
# instructions whose emulation gave XNNPACK's int8 kernels wrong results.
QemuCpu = Literal["cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "a64fx"]


EMULATED_EVAL_IMAGES = 100  # test images an emulated run takes unless told otherwise (qemu: ~0.1 s each)


class Emulation(_Strict):
    """How an aarch64 device is emulated here (``edgeres bench --emulate``): qemu-user with ``cpu``'s
    instruction set, in the arm64 root of ``edgeres devices --setup``. Numerics, not speed: it evaluates
    ``max_eval_images`` test images unless ``--eval-limit`` asks for more."""

    cpu: QemuCpu
    max_eval_images: int = Field(EMULATED_EVAL_IMAGES, ge=1)


class EmulatedConnection(_Strict):
    """Runs here, emulated: the runner under qemu-aarch64 in the arm64 root (``edgeres.emulation``)."""

    type: Literal["emulated"]
    cpu: QemuCpu


Connection = Annotated[Union[LocalConnection, SshConnection, EmulatedConnection], Field(discriminator="type")]
_CONNECTIONS = {"local": LocalConnection, "ssh": SshConnection, "emulated": EmulatedConnection}


def _settings(runtime: registry.Runtime) -> type[_Strict]:
    """The profile's settings of one runtime, as the registry declares them (a mapping holds scalars)."""
    fields = {key: (dict[str, OptionValue] if typing.get_origin(kind) is dict else kind, default)
              for key, (kind, default) in runtime.settings.items()}
    return create_model(f"{runtime.name}_settings", __base__=_Strict, **fields)


class _Runtimes(_Strict):
    def names(self) -> list[str]:
        return [name for name in RUNTIMES if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _at_least_one(self) -> "_Runtimes":
        if not self.names():
            raise ValueError(f"name at least one runtime ({', '.join(RUNTIMES)})")
        return self


# One optional section per runtime of the registry, e.g. ``onnxruntime: {provider: CPUExecutionProvider}``.
Runtimes = create_model("Runtimes", __base__=_Runtimes,
                        **{r.name: (Optional[_settings(r)], None) for r in registry.RUNTIMES.values()})


class Profile(_Strict):
    """One device. ``name`` is the file's stem; ``path`` the file it was read from."""

    name: str
    description: str = Field(min_length=1)
    arch: Literal["native", "x86_64", "aarch64", "armv7l"]  # native: whatever this host is
    connection: Connection
    threads: Optional[int] = Field(None, ge=1, le=1024)  # None: every core of the device
    max_eval_images: Optional[int] = Field(None, ge=1)  # bench's default test images (slow emulators)
    verified_on_hardware: bool = False  # has this profile run on its real hardware? (bench rows say so)
    runtimes: Runtimes
    estimate: Optional[Estimate] = None
    emulation: Optional[Emulation] = None  # how `--emulate` stands in for the device here
    _path: Optional[Path] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _emulation_is_aarch64(self) -> "Profile":
        if (self.emulation or isinstance(self.connection, EmulatedConnection)) and self.arch != "aarch64":
            raise ValueError("emulation (qemu-aarch64) needs arch: aarch64")
        return self

    @property
    def path(self) -> Path | None:
        return self._path

    def describe_connection(self) -> str:
        c = self.connection
        if isinstance(c, EmulatedConnection):
            return f"emulated (qemu-aarch64, {c.cpu})"
        return f"ssh {c.target}:{c.port}" if isinstance(c, SshConnection) else c.type


# -- loading -----------------------------------------------------------------------------------------
def builtin_dir() -> Path:
    """The shipped profiles: ``devices/`` beside the package in a checkout, else the installed copy."""
    candidates = [Path(__file__).resolve().parent.parent / "devices",
                  Path(sys.prefix) / "share" / "edgeres" / "devices",
                  Path(site.USER_BASE or "~/.local").expanduser() / "share" / "edgeres" / "devices"]
    for candidate in candidates:
        if (candidate / "cpu.yaml").is_file():
            return candidate
    raise EdgeresError("the built-in device profiles are missing (looked in "
                       + ", ".join(str(c) for c in candidates) + ")", hint="reinstall edgeres")


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping found at ``loc`` (for listing its allowed keys)."""
    model: Any = Profile
    parts = iter(loc)
    for part in parts:
        if model is None:
            return None
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:  # the next part is a key of the mapping
            next(parts, None)
        args = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)
                and issubclass(a, BaseModel)]
        model = args[0] if len(args) == 1 else None
    return model


def _describe_error(error: dict, data: dict) -> str:
    # The discriminated union adds the tag ("ssh", "local", "emulated") to the location; users never wrote it.
    loc = tuple(p for i, p in enumerate(error["loc"])
                if not (i == 1 and error["loc"][0] == "connection" and p in _CONNECTIONS))
    model_loc = loc
    if loc[:3] == ("estimate", "units", _FLAT_UNIT) and "units" not in (data.get("estimate") or {}):
        loc = ("estimate", *loc[3:])  # the flat form: the user wrote the unit's figures under estimate
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model_loc[:-1])
        if loc[:1] == ("connection",) and isinstance(data.get("connection"), dict):
            parent = _CONNECTIONS.get(data["connection"].get("type"), LocalConnection)
        allowed = [f for f in parent.model_fields if f != "name"] if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r} (expected one of: {', '.join(allowed)}){suggestion}"
    if kind == "missing":
        return f"missing key {key!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"{key}.type: expected 'local', 'ssh' or 'emulated'"
    got = error.get("input")
    got_text = f", got {got!r}" if got is not None and not isinstance(got, (dict, list)) else ""
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "expected")
    return f"{key}: {message}{got_text}"


def load(path: Path | str) -> Profile:
    """One profile file, validated; any problem is one ``EdgeresError`` naming the file and the key."""
    path = Path(path)
    data = read_mapping(path, "device profile", "description, arch, connection, runtimes, ...")
    if "name" in data:
        raise EdgeresError(f"{path}: unknown key 'name' (a profile's name is its file name, {path.stem!r})")
    try:
        profile = Profile.model_validate({**data, "name": path.stem})
    except ValidationError as exc:
        raise EdgeresError(f"{path}: " + "; ".join(_describe_error(e, data) for e in exc.errors())) from None
    profile._path = path
    return profile


def _user_dir(devices_dir: Path | str | None) -> Path | None:
    chosen = devices_dir if devices_dir is not None else os.environ.get(ENV_DIR) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise EdgeresError(f"devices directory {path} {state}",
                           hint=f"pass a directory of <name>.yaml profiles with --devices-dir or ${ENV_DIR}")
    return path


def load_all(devices_dir: Path | str | None = None) -> dict[str, Profile]:
    """Every profile by name, sorted: the built-in ones, overridden or extended by the user directory."""
    found: dict[str, Path] = {}
    for directory in (builtin_dir(), _user_dir(devices_dir)):
        if directory is not None:
            found.update({p.stem: p for p in sorted(directory.glob("*.yaml"))})
    return {name: load(found[name]) for name in sorted(found)}


def get(name: str, devices_dir: Path | str | None = None) -> Profile:
    """A profile by name; a name ending in .yaml/.yml is read as a file. Unknown names list the known."""
    if name.endswith((".yaml", ".yml")):
        return load(name)
    profiles = load_all(devices_dir)
    if name in profiles:
        return profiles[name]
    close = difflib.get_close_matches(name, profiles, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise EdgeresError(f"unknown device {name!r}; known devices: {', '.join(profiles)}",
                       hint=f"{hint}add your own as <name>.yaml in --devices-dir or ${ENV_DIR}")


def emulated(profile: Profile) -> Profile:
    """``profile`` with its connection replaced by its ``emulation`` (``edgeres bench --emulate``)."""
    if isinstance(profile.connection, EmulatedConnection):
        return profile
    if profile.emulation is None:
        raise EdgeresError(f"device {profile.name} cannot be emulated here (its profile has no emulation section)",
                           hint="aarch64 boards can be: add `emulation: {cpu: cortex-a72}` (a qemu CPU model) "
                                f"to {profile.path}")
    connection = EmulatedConnection(type="emulated", cpu=profile.emulation.cpu)
    cap = min(profile.max_eval_images or profile.emulation.max_eval_images, profile.emulation.max_eval_images)
    return profile.model_copy(update={"connection": connection, "max_eval_images": cap})


def trusting_new_host(profile: Profile) -> Profile:
    """``profile`` trusting an ssh host key not yet in known_hosts, recording it (``--trust-new-host``).
    A *changed* key is still refused."""
    if not isinstance(profile.connection, SshConnection):
        return profile
    connection = profile.connection.model_copy(update={"accept_new_host_key": True})
    return profile.model_copy(update={"connection": connection})


# -- what a variant needs ---------------------------------------------------------------------------
THREADS_PER_CORE = 4  # --threads above this many per core only makes the threads wait on each other


def max_threads(profile: Profile) -> tuple[int, str]:
    """The most threads a runtime may start on the device, and where its core count comes from: the
    profile's ``threads`` (its cores) for a remote device, this machine's cores for one run here."""
    if isinstance(profile.connection, SshConnection) and profile.threads:
        cores, where = profile.threads, f"{profile.name}'s {profile.threads} cores (threads in its profile)"
    elif isinstance(profile.connection, SshConnection):
        cores, where = 64, f"{profile.name}'s cores (unknown: its profile gives no threads; 64 assumed)"
    else:
        cores = os.cpu_count() or 1
        where = f"the {cores} cores of this machine"
    return THREADS_PER_CORE * cores, where


def check_threads(profile: Profile, threads: int | None) -> None:
    """Refuse a thread count (``--threads``, or the profile's own) far beyond the device's cores."""
    chosen = threads if threads is not None else profile.threads
    if chosen is None:
        return
    limit, where = max_threads(profile)
    if not 1 <= chosen <= limit:
        what = "--threads" if threads is not None else f"threads in {profile.path or profile.name}"
        raise EdgeresError(f"{what} {chosen}: at most {limit} ({THREADS_PER_CORE} per core of {where})",
                           hint="leave it out to use one thread per core")


def runtime_options(profile: Profile, runtime: str, threads: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``edgeres.runtimes.open_session`` from the profile's settings of ``runtime``.

    ``threads`` (e.g. ``--threads``) overrides the profile; without either the runner uses every core.
    """
    settings = getattr(profile.runtimes, runtime, None) if runtime in RUNTIMES else None
    if settings is None:
        raise EdgeresError(f"device {profile.name} has no {runtime} runtime",
                           hint=f"its runtimes: {', '.join(profile.runtimes.names())}")
    options = settings.model_dump()
    chosen = threads if threads is not None else profile.threads
    if chosen is not None:
        options["threads"] = chosen
    return options


# -- can it run here, now? ----------------------------------------------------------------------------
def _reachable(connection: SshConnection) -> tuple[bool, str]:
    timeout = min(connection.connect_timeout, 3.0)
    where = f"{connection.host}:{connection.port}"
    try:
        with socket.create_connection((connection.host, connection.port), timeout=timeout):
            pass
    except socket.gaierror:
        return False, f"ssh host {connection.host} does not resolve"
    except ConnectionRefusedError:
        return False, f"ssh host {where} refuses connections"
    except TimeoutError:
        return False, f"ssh host {where} did not answer within {timeout:g} s"
    except OSError as exc:
        return False, f"ssh host {where} unreachable: {exc.strerror or exc}"
    return True, f"ssh host {where} reachable (runtimes are checked on the device)"


def _emulation_ready(profile: Profile) -> tuple[bool, str]:
    from edgeres import emulation

    try:
        emulation.qemu()
        root = emulation.ready_root(profile.name)
    except EdgeresError as exc:
        return False, f"{exc.args[0]} ({exc.hint})"
    present = [root.runtimes[name] for name in profile.runtimes.names() if name in root.runtimes]
    if not present:
        return False, f"the arm64 root has none of its runtimes ({', '.join(profile.runtimes.names())})"
    return True, f"emulated, qemu-aarch64 {profile.connection.cpu}: {', '.join(present)} (accuracy, not speed)"


def usable(profile: Profile, runtime: str | None = None) -> tuple[bool, str]:
    """Whether the device can run now, and why (not).

    ssh devices: a short TCP connect to the host's ssh port. Emulated devices: qemu-aarch64 and a
    finished arm64 root holding one of its runtimes. Local devices: each runtime (or just ``runtime``)
    importable here with its execution provider / OpenVINO device / delegate / CUDA; the profile is
    usable when at least one of its runtimes is.
    """
    if isinstance(profile.connection, SshConnection):
        key = profile.connection.key
        if key and not Path(key).expanduser().is_file():
            state = "is not a file" if Path(key).expanduser().exists() else "does not exist"
            return False, f"its ssh key {key} (connection.key) {state}"
        return _reachable(profile.connection)
    if isinstance(profile.connection, EmulatedConnection):
        return _emulation_ready(profile)
    names = [runtime] if runtime is not None else profile.runtimes.names()
    results = {}
    for name in names:
        settings = getattr(profile.runtimes, name, None) if name in RUNTIMES else None
        results[name] = (registry.check(name, settings.model_dump()) if settings is not None
                         else (False, f"the profile has no {name} runtime"))
    ok = [reason for good, reason in results.values() if good]
    missing = [reason for good, reason in results.values() if not good]
    return bool(ok), "; ".join(([("ok: " + ", ".join(ok))] if ok and missing else ok) + missing)
