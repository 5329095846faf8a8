"""Planning a bench before anything runs: the measuring method and its bounds, how many images, whether
each row is measured, emulated or estimated (and what stands in for an absent device), the expected time."""

from __future__ import annotations

import math
import platform
from typing import Any

from edgeres import devices
from edgeres.bench.request import BenchRequest
from edgeres.bench.select import Variant
from edgeres.console import say, warn
from edgeres.errors import EdgeresError


# Latency is measured in this many rounds: each a fresh process per row, every row once per round, so
# that a process's own luck (where its memory and threads land) and the machine's drift over the minutes
# of a bench fall on all rows alike; a row's p50 is the median of its rounds' p50s (benchmarks/RESULTS.md).
# With no row measured (all estimated or emulated) the baseline has nothing to be compared with: one round.
ROUNDS = 9


DEFAULT_EVAL_IMAGES = 1000  # test images for top-1 unless the device's profile caps it (slow emulators)


# Rates behind the plan's expected time, measured on this project's 2-core x86-64 machine (a guide printed
# before the run, never a result): a fresh runner process (Python, runtime, model); seconds per image per
# GMAC and per million weights, for top-1 in batches here, and under emulation, where batch-1 ResNets are as
# much bound by reading their weights as by their MACs (qemu-aarch64; Qualcomm's HTP emulator took 3.0 s per
# image of the 11 M-weight, 0.035 GMAC ResNet-18 at 32x32). A batch-1 run here takes BATCH1_FACTOR images' time.
PROCESS_SECONDS = {"host": 3.0, "qemu": 6.0, "htp": 3.0}


SECONDS_PER_GMAC = {"host": 0.06, "qemu": 5.0, "htp": 40.0}


SECONDS_PER_MPARAM = {"host": 0.0002, "qemu": 0.011, "htp": 0.14}


BATCH1_FACTOR = 10


METHOD_LIMITS = {"warmup": 10_000, "min_runs": 100_000, "min_seconds": 600, "rounds": 100, "throughput_batch": 256}


def resolve_method(overrides: dict[str, float]) -> dict[str, Any]:
    from edgeres.runtimes.runner import DEFAULT_METHOD

    defaults = {**DEFAULT_METHOD, "rounds": ROUNDS}
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise EdgeresError(f"unknown method setting {sorted(unknown)[0]!r}", hint=f"known: {', '.join(defaults)}")
    method = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
    for key, limit in METHOD_LIMITS.items():  # each run count and second is spent once per variant and round
        if not (isinstance(method[key], (int, float)) and math.isfinite(method[key]) and method[key] <= limit):
            raise EdgeresError(f"--{key.replace('_', '-')} {method[key]}: at most {limit:g} (a variant's process "
                               f"has {BenchRequest.timeout:g} s)", hint="leave it out for the default")
    if (method["warmup"] < 0 or method["min_runs"] < 1 or method["min_seconds"] < 0 or method["throughput_batch"] < 1
            or method["rounds"] < 1):
        raise EdgeresError("method: warmup >= 0, min runs >= 1, min seconds >= 0, throughput batch >= 1 and "
                           "rounds >= 1 please")
    method["max_runs"] = max(method["max_runs"], method["min_runs"])
    return method


def eval_images(req: BenchRequest, profile) -> tuple[int, str | None]:
    """How many test images, and why when the device's profile chose it (a slow emulator's cap)."""
    if req.eval_limit is not None:
        if req.eval_limit < 1:
            raise EdgeresError("--eval-limit must be at least 1")
        return req.eval_limit, None
    emulated = profile.connection.type == "emulated"
    cap = profile.max_eval_images or (devices.EMULATED_EVAL_IMAGES if emulated else None)
    if cap is None or cap >= DEFAULT_EVAL_IMAGES:
        return DEFAULT_EVAL_IMAGES, None
    where = "emulation.max_eval_images" if emulated and profile.emulation is not None else "max_eval_images"
    return cap, (f"{profile.name} evaluates {cap} test images by default ({where} in {profile.path}: a slow "
                 f"emulator's cap): top-1 on {cap} images checks its numerics against this host's run of the same "
                 f"files, it is no accuracy figure; --eval-limit N raises it")


def emulator(profile, runtime: str) -> str | None:
    """The emulator a row will run on (``qemu``, ``htp``), or None when it runs on the real thing."""
    if profile.connection.type == "emulated":
        return "qemu"
    settings = getattr(profile.runtimes, runtime, None)
    if (runtime == "onnxruntime" and getattr(settings, "provider", None) == "QNNExecutionProvider"
            and profile.connection.type == "local" and platform.machine().lower() not in ("aarch64", "arm64")):
        return "htp"
    return None


def row_kind(profile, runtime: str, estimated: bool) -> str:
    return "estimated" if estimated else "emulated" if emulator(profile, runtime) else "measured"


def expected_seconds(kinds: list[tuple[str, str | None]], images: int, cost: tuple[float, float], method: dict,
                     rounds: int) -> float:
    """A rough guide to a bench's duration on this host: ``kinds`` is (latency kind, emulator) per row, the
    baseline first as a measured row; ``cost`` the model's (MACs, weights). Rows measured over ssh are
    counted at this host's speed."""
    def per_image(where: str) -> float:
        return cost[0] / 1e9 * SECONDS_PER_GMAC[where] + cost[1] / 1e6 * SECONDS_PER_MPARAM[where]

    here = per_image("host")
    timed = max(method["min_seconds"], (method["warmup"] + method["min_runs"]) * here * BATCH1_FACTOR)
    total = 0.0
    for kind, emulator in kinds:
        if kind == "measured":
            total += rounds * (PROCESS_SECONDS["host"] + 2 * timed) + images * here
        elif kind == "emulated":
            where = emulator or "qemu"
            total += PROCESS_SECONDS[where] + (images + 2) * per_image(where)
            total += PROCESS_SECONDS["host"] + images * here  # this host's run of the same file
        else:
            total += PROCESS_SECONDS["host"] + images * here
    return total


def say_plan(profile, variants: list[Variant], kinds: list[str], images: int, note: str | None,
              baseline_label: str, rounds: int, seconds: float) -> None:
    counts = {k: kinds.count(k) for k in ("measured", "estimated", "emulated") if k in kinds}
    how = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    where = "" if profile.connection.type == "local" else f", {profile.describe_connection()}"
    say(f"plan: {len(variants)} row(s) on {profile.name}{where}: {how}; {images} test images"
        + (" (the device's default cap, --eval-limit raises it)" if note else "")
        + f"; baseline {baseline_label} on this host, {rounds} latency round(s)"
        + ("" if rounds > 1 or "measured" in kinds else " (no row is measured here to compare it with)"))
    for variant, kind in zip(variants, kinds):
        say(f"  {variant.name}: {kind}")
    remote = " plus the device's own time" if profile.connection.type == "ssh" and "measured" in kinds else ""
    say(f"expected: about {duration(seconds)}{remote} (this host's rates; a guide, not a promise)")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def latency_mode(req: BenchRequest, profile) -> tuple[bool, list[str]]:
    """Whether rows are estimated, and why when the user did not ask for it: a device that cannot be
    used now (ssh host unreachable, runtime / delegate / NPU / CUDA missing here) gives estimates, labelled."""
    if req.estimate:
        if profile.estimate is None:
            raise EdgeresError(f"device {profile.name} has no estimate figures",
                               hint=f"add an `estimate:` section to {profile.path}, or bench without --estimate")
        return True, []
    usable, why = devices.usable(profile)
    if usable:
        return False, []
    if profile.connection.type == "ssh":
        how = (f"to measure on the real device, set connection.host/user/key in {profile.path} "
               "(or in a copy of it in --devices-dir)")
        if profile.emulation is not None:
            how += (f"; for its accuracy on its own kernels here: `edgeres devices --setup {profile.name}`, then "
                    f"`edgeres bench --device {profile.name} --emulate`")
    elif profile.runtimes.torch is not None and profile.runtimes.torch.device == "cuda":
        how = "run it on a machine with an NVIDIA GPU and a CUDA build of torch; here, `--device cpu`"
    else:
        how = "install what is missing to measure here (`edgeres devices` shows it)"
    if profile.estimate is None:
        raise EdgeresError(f"device {profile.name} cannot be used now: {why}", hint=how)
    note = f"{profile.name} cannot be used now ({why}): rows are estimated, not measured; {how}"
    warn(f"{note}")
    return True, [note]


def stand_in(req: BenchRequest, profile):
    """The profile to run: its emulation when asked (``--emulate``), or when its ssh device cannot be
    reached and its emulation is set up here (said so); else the profile itself."""
    if req.emulate:
        if req.estimate:
            raise EdgeresError("--emulate and --estimate exclude each other",
                               hint="--emulate already gives the estimated latency beside the emulated accuracy")
        emulated = devices.emulated(profile)
        ready, why = devices.usable(emulated)
        if not ready:
            raise EdgeresError(f"cannot run {profile.name} emulated: {why}")
        return emulated
    if req.estimate or profile.connection.type != "ssh" or profile.emulation is None:
        return profile
    reachable, why = devices.usable(profile)
    emulated = devices.emulated(profile)
    if reachable or not devices.usable(emulated)[0]:
        return profile
    warn(f"{profile.name} is not reachable ({why}): running its emulation here instead "
        f"(accuracy on its own kernels; latency estimated); to measure on the real device, set "
        f"connection.host/user/key in {profile.path}")
    return emulated
