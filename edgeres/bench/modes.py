"""How a bench row gets its numbers, one mode each behind one small interface:

* ``Measured``: the runner on the device itself (here, or over ssh), latency and top-1;
* ``Emulated``: the runner on an emulator of the device here (qemu-user for aarch64 boards, Qualcomm's HTP
  emulator): the device's numerics, the emulator's speed kept apart, this host's run of the same file and
  the profile's estimate beside it;
* ``Estimated``: latency from the profile's figures for the unit that runs the file, top-1 from this host.

A mode knows its share of the plan's expected time (``seconds``) and fills a row (``run``). A new way to
get numbers for a device is one class here and one line in ``mode_for``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from edgeres.bench.rows import Row, emulated_extras, estimated_row, fill, place
from edgeres.bench.select import Variant
from edgeres.console import say


# Rates behind the plan's expected time, measured on this project's 2-core x86-64 machine (a guide printed
# before the run, never a result): a fresh runner process (Python, runtime, model); seconds per image per
# GMAC and per million weights, for top-1 in batches here, and under emulation, where batch-1 ResNets are as
# much bound by reading their weights as by their MACs (qemu-aarch64; Qualcomm's HTP emulator took 3.0 s per
# image of the 11 M-weight, 0.035 GMAC ResNet-18 at 32x32). A batch-1 run here takes BATCH1_FACTOR images' time.
PROCESS_SECONDS = {"host": 3.0, "qemu": 6.0, "htp": 3.0}


SECONDS_PER_GMAC = {"host": 0.06, "qemu": 5.0, "htp": 40.0}


SECONDS_PER_MPARAM = {"host": 0.0002, "qemu": 0.011, "htp": 0.14}


BATCH1_FACTOR = 10


@dataclass(frozen=True, kw_only=True)
class Job:
    """One variant's runner job, ready to run: the job (see ``edgeres.runtimes.runner``), the directory
    holding its files and data, the device's profile and a call that runs the same file on this host."""

    variant: Variant
    spec: dict[str, Any]
    dir: Path
    path: Path  # the variant's model file in ``dir``
    profile: Any
    cost: tuple[float, float]  # the FP32 model's (MACs, weights)
    timeout: float
    on_this_host: Callable[[], dict[str, Any]]


class Outcome(NamedTuple):
    predictions: list[int] | None  # for agreement; not stored in the row
    host: dict[str, Any] | None  # the device's host info, where its runner reported it


def _per_image(where: str, cost: tuple[float, float]) -> float:
    return cost[0] / 1e9 * SECONDS_PER_GMAC[where] + cost[1] / 1e6 * SECONDS_PER_MPARAM[where]


def _host_top1_seconds(images: int, cost: tuple[float, float]) -> float:
    return PROCESS_SECONDS["host"] + images * _per_image("host", cost)


class Measured:
    kind = "measured"

    def seconds(self, *, images: int, cost: tuple[float, float], method: dict, rounds: int) -> float:
        timed = max(method["min_seconds"],
                    (method["warmup"] + method["min_runs"]) * _per_image("host", cost) * BATCH1_FACTOR)
        return rounds * (PROCESS_SECONDS["host"] + 2 * timed) + images * _per_image("host", cost)

    def run(self, row: Row, job: Job) -> Outcome:
        """Raises ``EdgeresError`` when the device itself cannot be used (the caller stops there)."""
        from edgeres import backends

        say(f"measuring {row['variant']} on {job.profile.name}")
        report = backends.run_variant(job.profile, job.dir, job.spec, job.timeout)
        predictions = fill(row, report)
        place(row, job.profile, job.variant, job.path)
        if row["status"] == "measured":
            say(f"  p50 {row['p50_ms']:.3g} ms, p90 {row['p90_ms']:.3g} ms, top-1 {row['top1']:.2f}%")
        return Outcome(predictions, report.get("host"))


@dataclass(frozen=True)
class Emulated:
    emulator: str  # "qemu" or "htp"
    kind = "emulated"

    def seconds(self, *, images: int, cost: tuple[float, float], method: dict, rounds: int) -> float:
        return (PROCESS_SECONDS[self.emulator] + (images + 2) * _per_image(self.emulator, cost)
                + _host_top1_seconds(images, cost))  # and this host's run of the same file

    def run(self, row: Row, job: Job) -> Outcome:
        """Raises ``EdgeresError`` when the emulator cannot be used at all."""
        from edgeres import backends

        say(f"measuring {row['variant']} on {job.profile.name} (emulated)")
        report = backends.run_variant(job.profile, job.dir, job.spec, job.timeout)
        predictions = fill(row, report)
        compiled = place(row, job.profile, job.variant, job.path)
        if row["status"] == "emulated":
            emulated_extras(row, job.profile, job.cost, job.on_this_host(), predictions, compiled)
            say(f"  top-1 {row['top1']:.2f}% emulated ({row['emulated']}), "
                f"{row.get('host_agreement', float('nan')):.1f}% agreement with this host's run of the same file")
        return Outcome(predictions, report.get("host"))


class Estimated:
    kind = "estimated"

    def seconds(self, *, images: int, cost: tuple[float, float], method: dict, rounds: int) -> float:
        return _host_top1_seconds(images, cost)

    def run(self, row: Row, job: Job) -> Outcome:
        say(f"estimating {row['variant']} on {job.profile.name}; top-1 on this host")
        compiled = place(row, job.profile, job.variant, job.path)
        return Outcome(estimated_row(row, job.profile, job.cost, job.on_this_host(), compiled), None)


Mode = Measured | Emulated | Estimated


def mode_for(profile, runtime: str, *, estimated: bool) -> Mode:
    """The mode of a row of ``runtime`` on ``profile``: estimated when the bench is, else emulated where
    the device is (or, for Qualcomm's HTP on x86, its NPU is) an emulator here, else measured."""
    if estimated:
        return Estimated()
    if profile.connection.type == "emulated":
        return Emulated("qemu")
    settings = getattr(profile.runtimes, runtime, None)
    if (runtime == "onnxruntime" and getattr(settings, "provider", None) == "QNNExecutionProvider"
            and profile.connection.type == "local" and platform.machine().lower() not in ("aarch64", "arm64")):
        return Emulated("htp")
    return Measured()


def expected_seconds(modes: list[Mode], *, images: int, cost: tuple[float, float], method: dict,
                     rounds: int) -> float:
    """A rough guide to a bench's duration on this host, the baseline (measured here) included. Rows
    measured over ssh are counted at this host's speed."""
    return sum(mode.seconds(images=images, cost=cost, method=method, rounds=rounds)
               for mode in [Measured(), *modes])
