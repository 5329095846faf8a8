"""Planning a bench before anything runs: the measuring method and its bounds, how many images, whether
rows are estimated (and what stands in for an absent device), and the plan said with its expected time
(each row's mode and its share of the time: ``edgeres.bench.modes``)."""

from __future__ import annotations

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


def resolve_method(overrides: dict[str, float]) -> dict[str, Any]:
    """The runner's ``DEFAULT_METHOD`` and bench's rounds, with a request's overrides (``Measuring.method()``,
    bounded there)."""
    from edgeres.runtimes.runner import DEFAULT_METHOD

    method = {**DEFAULT_METHOD, "rounds": ROUNDS, **overrides}
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


def stand_in(profile, *, emulate: bool, estimate: bool = False):
    """The profile to run: its emulation when asked (``--emulate``), or when its ssh device cannot be
    reached and its emulation is set up here (said so); else the profile itself."""
    if emulate:
        if estimate:
            raise EdgeresError("--emulate and --estimate exclude each other",
                               hint="--emulate already gives the estimated latency beside the emulated accuracy")
        emulated = devices.emulated(profile)
        ready, why = devices.usable(emulated)
        if not ready:
            raise EdgeresError(f"cannot run {profile.name} emulated: {why}")
        return emulated
    if estimate or profile.connection.type != "ssh" or profile.emulation is None:
        return profile
    reachable, why = devices.usable(profile)
    emulated = devices.emulated(profile)
    if reachable or not devices.usable(emulated)[0]:
        return profile
    warn(f"{profile.name} is not reachable ({why}): running its emulation here instead "
        f"(its own kernels' outputs; the emulator's speed is not the device's); to measure on the real device, set "
        f"connection.host/user/key in {profile.path}")
    return emulated
