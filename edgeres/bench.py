"""The ``bench`` step: every exported variant of one model on one device, beside the FP32 baseline.

The variants are the newest export artifact per (format, precision) of one lineage: exports whose
``parent`` links lead to the same FP32 ``train``/``prune`` artifact (int8 files through their
``quantize`` artifact); ``BenchRequest.exports`` names exactly which instead (a recipe's own run). A
profile's ``torch.precisions`` adds the PyTorch model itself on the device (the ``gpu`` profile: fp32
and fp16 on CUDA). Each is measured on the device by its backend (``edgeres.backends``: here, or over
ssh) with the runner's method on the same real test images, preprocessed as the model was trained.
The baseline is that FP32 network, BatchNorm folded as in the exported files, in PyTorch on this
machine's CPU or CUDA GPU (``--baseline``; ``edgeres.baseline``), measured the same way in a process of
its own. Latency is taken in ``ROUNDS`` rounds of fresh processes, rows in turn.

Every latency says what it is (``latency_kind``): ``p50_ms`` and its kin hold measurements only. Rows that
cannot be measured are estimated when asked (``--estimate``) or when the device cannot be used now, with
the estimate in ``estimated_p50_ms``, priced on the unit that really runs the file (``Estimate.unit_for``).
Rows run on an emulation of the device (qemu-user for aarch64 boards; Qualcomm's HTP emulator on x86) are
``emulated``: their top-1 is the device's, beside this host's run of the same file and the estimate; the
emulator's own speed is kept apart (``emulated_p50_ms``) and never stands as the device's latency.
Emulation evaluates a capped, stated number of images unless ``--eval-limit`` asks for more.

Each row has two ratios, each saying one thing: ``speedup`` (baseline p50 / row p50, both measured on
this machine) and ``speedup_vs_fp32`` (the same runtime's fp32 file / this row, same device). A row
measured on another machine (ssh) gets ``speedup_cross_machine`` instead of ``speedup``; estimated and
emulated rows get neither. A variant that fails is marked failed and the others go on. The plan and its
expected time are printed before anything runs. The result is a ``bench`` artifact with JSON, CSV,
Markdown and PNG reports (``edgeres.report``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeres import devices
from edgeres.console import progress_line, say
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.runtimes import registry
from edgeres.workspace import Artifact, Workspace

MODEL_KINDS = ("train", "prune")  # the FP32 root of a lineage
RESULTS_FORMAT = 2  # of results.json: 2 = estimates in estimated_p50_ms, same-machine speedups, latency_kind
# Latency is measured in this many rounds: each a fresh process per row, every row once per round, so
# that a process's own luck (where its memory and threads land) and the machine's drift over the minutes
# of a bench fall on all rows alike; a row's p50 is the median of its rounds' p50s (benchmarks/RESULTS.md).
# With no row measured (all estimated or emulated) the baseline has nothing to be compared with: one round.
ROUNDS = 9
DEFAULT_EVAL_IMAGES = 1000  # test images for top-1 unless the device's profile caps it (slow emulators)
# On this host, for the top-1 of estimated and emulated rows: one timed run, since the latency is not used.
ACCURACY_ONLY = {"warmup": 0, "min_runs": 1, "min_seconds": 0.0, "max_runs": 1, "throughput_batch": 1}
# Every row has these, None where they do not apply, so that tables stay uniform.
MEASURES = ("status", "latency_kind", "error", "top1", "top1_where", "n", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
            "runs", "throughput_ips", "throughput_batch", "peak_rss_mb", "load_seconds", "estimated_p50_ms", "unit")
# Rates behind the plan's expected time, measured on this project's 2-core x86-64 machine (a guide printed
# before the run, never a result): a fresh runner process (Python, runtime, model); seconds per image per
# GMAC and per million weights, for top-1 in batches here, and under emulation, where batch-1 ResNets are as
# much bound by reading their weights as by their MACs (qemu-aarch64; Qualcomm's HTP emulator took 3.0 s per
# image of the 11 M-weight, 0.035 GMAC ResNet-18 at 32x32). A batch-1 run here takes BATCH1_FACTOR images' time.
PROCESS_SECONDS = {"host": 3.0, "qemu": 6.0, "htp": 3.0}
SECONDS_PER_GMAC = {"host": 0.06, "qemu": 5.0, "htp": 40.0}
SECONDS_PER_MPARAM = {"host": 0.0002, "qemu": 0.011, "htp": 0.14}
BATCH1_FACTOR = 10


@dataclass(kw_only=True)
class BenchRequest:
    """What ``edgeres bench`` asks for."""

    device: str = "cpu"
    model: str | None = None  # artifact id/path or model name; None: the lineage of the newest export
    exports: list[str] | None = None  # exactly these export artifacts (ids/paths); None: newest per format
    targets: list[str] | None = None  # formats (or "all"); None: every format
    precisions: list[str] | None = None  # fp32/fp16/int8 (or "all"); None: every precision
    eval_limit: int | None = None  # test images; None: DEFAULT_EVAL_IMAGES, or the profile's cap (stated)
    threads: int | None = None  # None: the profile's, else every core
    baseline: str = "auto"  # where the FP32 baseline runs: auto (CUDA if available), cpu or cuda
    estimate: bool = False  # estimated latency instead of measuring on the device
    method: dict[str, float] = field(default_factory=dict)  # overrides of the runner's DEFAULT_METHOD
    devices_dir: Path | None = None
    data_dir: Path | None = None
    timeout: float = 900.0  # per variant, seconds
    emulate: bool = False  # run on the device's emulation here (qemu-user for aarch64 boards), accuracy only
    trust_new_host: bool = False  # record an ssh host key not yet in known_hosts (a changed one is refused)


@dataclass
class BenchResult:
    """The saved ``bench`` artifact and its results (what ``results.json`` holds)."""

    artifact: Artifact
    results: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.results["rows"]

    def file(self, name: str) -> Path:
        return self.artifact.path / name


@dataclass(frozen=True)
class Variant:
    """One thing to measure: an export artifact's file, or the torch model itself (``format`` torch)."""

    name: str
    artifact: Artifact
    format: str
    precision: str
    runtime: str
    file_name: str  # in the artifact

    @classmethod
    def export(cls, artifact: Artifact) -> "Variant":
        m = artifact.manifest
        return cls(f"{m['format']} {m['precision']}", artifact, m["format"], m["precision"], m["runtime"], m["file"])

    @classmethod
    def torch(cls, root: Artifact, precision: str, where: str) -> "Variant":
        from edgeres import baseline

        return cls(baseline.label(where, precision), root, "torch", precision, "torch", "model.pt")


# -- choosing what to measure ---------------------------------------------------------------------
def _choices(values: list[str] | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if not values or "all" in values:
        return list(allowed)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise EdgeresError(f"unknown {what} {unknown[0]!r}", hint=f"choose from: {', '.join(allowed)}, all")
    return [v for v in allowed if v in values]


METHOD_LIMITS = {"warmup": 10_000, "min_runs": 100_000, "min_seconds": 600, "rounds": 100, "throughput_batch": 256}


def _method(overrides: dict[str, float]) -> dict[str, Any]:
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


def _root(artifact: Artifact, index: dict[str, Artifact]) -> Artifact | None:
    """The FP32 train/prune artifact at the top of ``artifact``'s parent links (None if a link is broken)."""
    seen = set()
    while artifact.kind not in MODEL_KINDS:
        parent = artifact.manifest.get("parent")
        if parent is None or parent in seen or parent not in index:
            return None
        seen.add(parent)
        artifact = index[parent]
    return artifact


def _given_exports(ws: Workspace, refs: list[str],
                   index: dict[str, Artifact]) -> tuple[Artifact | None, list[Artifact]]:
    """The export artifacts ``refs`` name, checked: exports, one lineage, one per (format, precision)."""
    picked: dict[tuple[str, str], Artifact] = {}
    root = None
    for ref in refs:
        artifact = ws.resolve(ref)
        if artifact.kind != "export":
            raise EdgeresError(f"{artifact.id} is a {artifact.kind} artifact, not an export",
                               hint="name export artifacts (`edgeres info` lists them)")
        this_root = _root(artifact, index)
        if this_root is None:
            raise EdgeresError(f"{artifact.id} does not lead to an FP32 train/prune artifact (a parent is missing)")
        if root is not None and this_root.id != root.id:
            raise EdgeresError(f"the exports come from different models ({root.id} and {this_root.id})",
                               hint="bench one model's exports at a time")
        root = this_root
        key = (artifact.manifest.get("format"), artifact.manifest.get("precision"))
        if key in picked and picked[key].id != artifact.id:
            raise EdgeresError(f"two {' '.join(key)} exports given ({picked[key].id} and {artifact.id})",
                               hint="name one file per format and precision")
        picked[key] = artifact
    return root, list(picked.values())


def select_variants(ws: Workspace, ref: str | None, formats: list[str], precisions: list[str],
                    exports: list[str] | None = None, need_exports: bool = True) -> tuple[Artifact, list[Artifact]]:
    """The lineage's root and its newest export per (format, precision), in the format table's order; with
    ``exports``, exactly those (filtered by ``formats``/``precisions``). Without ``need_exports`` (a device
    that runs the torch model itself) a lineage without exports is fine, its root the newest model."""
    index = {a.id: a for a in ws.artifacts()}
    all_exports = [a for a in index.values() if a.kind == "export"]  # newest first
    given_root = None
    if exports is not None:
        given_root, all_exports = _given_exports(ws, exports, index)
    picked = None
    if ref is not None:
        try:
            picked = ws.resolve(ref)
        except EdgeresError:
            picked = next((a for a in all_exports if a.manifest.get("model") == ref), None)
            if picked is None:
                raise EdgeresError(f"no artifact or exported model {ref!r} in workspace {ws.root}",
                                   hint=f"export it first: `edgeres export --model {ref} --target all`") from None
    elif given_root is not None:
        picked = given_root
    elif all_exports:
        picked = all_exports[0]
    elif not need_exports:
        picked = next((a for a in index.values() if a.kind in MODEL_KINDS), None)
    if picked is None:
        raise EdgeresError(f"no export artifact in workspace {ws.root}",
                           hint="export a model first, e.g. `edgeres export --target all --precision all`")
    root = _root(picked, index)
    if root is None:
        raise EdgeresError(f"{picked.id} does not lead to an FP32 train/prune artifact (a parent is missing)")
    if given_root is not None and given_root.id != root.id:
        raise EdgeresError(f"the exports given come from {given_root.id}, not from {root.id} (--model)")
    newest: dict[tuple[str, str], Artifact] = {}
    for a in all_exports:
        key = (a.manifest.get("format"), a.manifest.get("precision"))
        if key[0] in formats and key[1] in precisions and key not in newest:
            if getattr(_root(a, index), "id", None) == root.id:
                newest[key] = a
    variants = [newest[(f, p)] for f in FORMATS for p in PRECISIONS if (f, p) in newest]
    if not variants and need_exports:
        if exports is not None:
            raise EdgeresError(f"no {'/'.join(formats)} {'/'.join(precisions)} export of {root.describe()} among "
                               f"the exports given ({', '.join(exports) or 'none'})",
                               hint="name exports of those formats and precisions, or widen the filters")
        raise EdgeresError(f"no {'/'.join(formats)} {'/'.join(precisions)} export of {root.describe()}",
                           hint=f"export it first: `edgeres export --model {root.id} --target all --precision all`")
    say(f"benchmarking the exports of {root.describe()}")
    return root, variants


def _torch_variants(profile, root: Artifact, precisions: list[str], baseline_where: str) -> list[Variant]:
    """The profile's rows of the torch model itself (``torch.precisions``), less the one the baseline is."""
    settings = profile.runtimes.torch
    if settings is None or not settings.precisions:
        return []
    if profile.connection.type != "local":
        raise EdgeresError(f"{profile.path}: torch.precisions needs a local connection (torch runs on this host)")
    return [Variant.torch(root, p, settings.device) for p in settings.precisions
            if p in precisions and not (p == "fp32" and settings.device == baseline_where)]


def _eval_limit(req: BenchRequest, profile) -> tuple[int, str | None]:
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


# -- the plan --------------------------------------------------------------------------------------
def _emulator(profile, runtime: str) -> str | None:
    """The emulator a row will run on (``qemu``, ``htp``), or None when it runs on the real thing."""
    if profile.connection.type == "emulated":
        return "qemu"
    settings = getattr(profile.runtimes, runtime, None)
    if (runtime == "onnxruntime" and getattr(settings, "provider", None) == "QNNExecutionProvider"
            and profile.connection.type == "local" and platform.machine().lower() not in ("aarch64", "arm64")):
        return "htp"
    return None


def _row_kind(profile, runtime: str, estimated: bool) -> str:
    return "estimated" if estimated else "emulated" if _emulator(profile, runtime) else "measured"


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


def _say_plan(profile, variants: list[Variant], kinds: list[str], images: int, note: str | None,
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
    say(f"expected: about {_duration(seconds)}{remote} (this host's rates; a guide, not a promise)")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


# -- running ---------------------------------------------------------------------------------------
def _eval_npz(root: Artifact, limit: int | None, data_dir: Path | None, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation images (NCHW float32, preprocessed as the model was trained) and labels, saved."""
    from edgeres import data
    from edgeres.evaluate import test_split

    x, y = data.as_tensors(test_split(root, None, data_dir, limit))
    x, y = np.ascontiguousarray(x.numpy(), np.float32), y.numpy().astype(np.int64)
    np.savez(path, x=x, y=y)
    return x, y


def _job_dir(tmp: Path, variant: Variant, data: Path) -> Path:
    """A directory holding (links to) the variant's model file(s), checked against its manifest, and the
    evaluation data. A file that changed since it was written is an ``EdgeresError``."""
    job_dir = tmp / f"{variant.artifact.id}-{variant.precision}"
    job_dir.mkdir()
    main = variant.artifact.file(variant.file_name)  # verifies every file of the artifact
    files = [main, main.with_suffix(".bin")] if main.suffix == ".xml" else [main]
    for f in files + [data]:
        (job_dir / f.name).symlink_to(f.resolve())
    return job_dir


def _options(profile, variant: Variant, threads: int | None) -> dict[str, Any]:
    """The runtime's keyword arguments for ``variant`` on ``profile``."""
    options = devices.runtime_options(profile, variant.runtime, threads)
    if profile.connection.type == "emulated":  # the device's threads on fewer host cores: spinning, not work
        cores = os.cpu_count() or 1
        options["threads"] = min(options.get("threads") or cores, cores)
    if variant.runtime == "torch":
        options.pop("precisions", None)
        options["precision"] = variant.precision
    return options


def _variant_row(variant: Variant, profile, options: dict[str, Any]) -> dict[str, Any]:
    m = variant.artifact.manifest
    verify = (m.get("metrics", {}).get("verify") or {}) if variant.format != "torch" else {}
    size = m.get("metrics", {}).get("size_bytes") if variant.format != "torch" else None
    return {**dict.fromkeys(MEASURES), "variant": variant.name, "role": "variant", "artifact": variant.artifact.id,
            "format": variant.format, "precision": variant.precision, "runtime": variant.runtime,
            "device": registry.device_label(variant.runtime, options), "where": profile.name,
            "threads": options.get("threads"), "size_bytes": size, "verify_top1": verify.get("top1"),
            "verify_n": verify.get("n"), "profile_verified": profile.verified_on_hardware}


def _fill(row: dict[str, Any], report: dict[str, Any]) -> list[int] | None:
    """Copy a runner report into ``row``; the predictions (for agreement) are returned, not stored."""
    result = report["result"]
    if not result.get("ok"):
        row.update(status="failed", error=result.get("error") or "no result")
        return None
    info = result.get("info") or {}
    if info.get("partitioning"):  # an execution provider that left nodes to the CPU (e.g. an NPU)
        row["partitioning"] = info["partitioning"]
    for key in ("peak_gpu_memory_mb", "tf32", "gpu", "offload"):  # offload: what a delegate/NPU says it took
        if key in info:
            row[key] = info[key]
    if result.get("emulated"):  # the device's numerics at an emulator's speed: no latency_ms, by design
        row.update(status="emulated", latency_kind="emulated", error=None, emulated=result["emulated"],
                   top1=result["top1"], n=result["n"], emulated_p50_ms=result["emulated_latency_ms"]["p50"],
                   load_seconds=result.get("load_seconds"), threads=info.get("threads", row.get("threads")),
                   device=info.get("device", row["device"]))
        return result.get("predictions")
    latency = result["latency_ms"]
    row.update(status="measured", latency_kind="measured", error=None, top1=result["top1"], n=result["n"],
               p50_ms=latency["p50"], p90_ms=latency["p90"], p99_ms=latency["p99"], mean_ms=latency["mean"],
               runs=latency["runs"], throughput_ips=result.get("throughput_ips"),
               throughput_batch=result.get("throughput_batch"), peak_rss_mb=result.get("peak_rss_mb"),
               load_seconds=result.get("load_seconds"), threads=info.get("threads", row.get("threads")),
               device=info.get("device", row["device"]))
    return result.get("predictions")


def _placement(row: dict[str, Any], profile, variant: Variant, path: Path) -> frozenset[str]:
    """What the file lets each unit take: the operators a delegate or NPU took where known (``offload``),
    and a row whose model ran on the CPU says so (an Edge TPU delegate with a file ``edgetpu_compiler``
    has not compiled; an execution provider that took no node). Returns the compilers the file has been
    through, for the estimate's unit."""
    from edgeres.backends import placement

    compiled = placement.compiled_for(path, variant.runtime)
    delegate = getattr(getattr(profile.runtimes, variant.runtime, None), "delegate", None) or ""
    if variant.runtime == "tflite" and "edgetpu" in delegate:
        offload = placement.edgetpu_offload(path)
        if offload is not None:
            row["offload"] = offload
        if "edgetpu" not in compiled and row["status"] != "failed":
            row.update(device=f"CPU (not compiled by edgetpu_compiler: {delegate} takes nothing)", unit="CPU")
        elif "edgetpu" in compiled:
            row["unit"] = "Edge TPU" + (" + CPU" if offload and offload["on_cpu"] else "")
    part = row.get("partitioning")
    if part:
        row["offload"] = {"unit": part["provider"], "source": "onnxruntime's profiler", "subgraphs": part["subgraphs"],
                          "ops": part["nodes"], "on_cpu": part["on_cpu"]}
        if part["nodes"] and part["on_cpu"] >= part["nodes"]:
            row.update(device=f"CPU ({part['provider']} took no node)", unit="CPU")
    return compiled


def _baseline_row(root: Artifact, where: str, threads: int | None) -> dict[str, Any]:
    from edgeres import baseline

    return {**dict.fromkeys(MEASURES), "variant": baseline.label(where), "role": "baseline", "artifact": root.id,
            "format": "torch", "precision": "fp32", "runtime": "torch", "device": where, "where": "host",
            "threads": threads, "size_bytes": root.file("model.pt").stat().st_size, "batchnorm": "folded"}


def _measure_baseline(root: Artifact, where: str, tmp: Path, data: Path, method: dict, threads: int | None,
                      timeout: float) -> tuple[dict, list | None, dict | None, tuple]:
    """The FP32 model (BatchNorm folded) in PyTorch here, measured by the runner in its own process like
    every variant: its row, predictions and host info, and (row, a call that measures its latency again)."""
    from edgeres.backends import local

    row = _baseline_row(root, where, threads)
    job_dir = tmp / "baseline"
    job_dir.mkdir()
    (job_dir / data.name).symlink_to(data.resolve())
    job = {"variant": {"name": row["variant"], "file": str(root.file("model.pt").resolve()), "runtime": "torch",
                       "options": {"threads": threads, "device": where}}, "data": data.name, "method": method}
    say(f"measuring the baseline, {row['variant']} (BatchNorm folded, as in the exported files)")
    report = local.run_variant(None, job_dir, job, timeout)
    again = functools.partial(local.run_variant, None, job_dir, {**job, "latency_only": True}, timeout)
    return row, _fill(row, report), report.get("host"), (row, again)


def macs_params(root: Artifact) -> tuple[float, float]:
    """Multiply-accumulates of one inference and the parameter count of the FP32 model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgeres.evaluate import load_model
    from edgeres.preprocessing import Preprocessing

    model = load_model(root)
    shape = Preprocessing.from_dict(root.manifest["preprocessing"]).input_shape(1)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(shape))
    return counter.get_total_flops() / 2, float(sum(p.numel() for p in model.parameters()))


_ESTIMATE_KEYS = ("bound", "compute_ms", "memory_ms", "unit", "unit_description", "macs", "weight_bytes",
                  "assumptions", "sources")


def _priced(row: dict, profile, cost: tuple[float, float], compiled: frozenset[str]) -> None:
    """The profile's estimate of ``row`` on the unit that runs it, into ``estimated_p50_ms`` (never p50_ms)."""
    from edgeres.backends.estimate import estimate_latency_ms

    unit = profile.estimate.unit_for(row["runtime"], row["precision"], compiled)
    estimate = estimate_latency_ms(profile, cost[0], cost[1], row["size_bytes"], row["precision"], unit)
    row.update(estimated_p50_ms=estimate["latency_ms"], estimate={k: estimate[k] for k in _ESTIMATE_KEYS})
    row["unit"] = row.get("unit") or estimate["unit_description"]


def _estimate(row: dict, profile, cost: tuple[float, float], host_report: dict,
              compiled: frozenset[str]) -> list[int] | None:
    """An estimated row: latency from the profile's figures for the unit that runs the file, top-1 from
    this host (same file, same images); the host's predictions are returned."""
    try:
        _priced(row, profile, cost, compiled)
    except EdgeresError as exc:
        row.update(status="failed", error=exc.args[0])
        return None
    row.update(status="estimated", latency_kind="estimated", error=None, top1_where="host")
    result = host_report["result"]
    if not result.get("ok"):
        row["error"] = f"no top-1: {result.get('error')}"
        return None
    row.update(top1=result["top1"], n=result["n"])
    return result.get("predictions")


def _compare(rows: list[dict], baseline: dict, predictions: dict[int, list | None], device: str,
             remote: bool) -> list[str]:
    """Speedups (over the baseline when measured on the same machine; over the same runtime's fp32 file
    on the same device), accuracy delta, size ratio and agreement; warnings for slow int8."""
    base = baseline if baseline["status"] == "measured" else None
    for row in rows:
        ok = row["status"] != "failed" and base is not None
        ratio = base["p50_ms"] / row["p50_ms"] if base and row["status"] == "measured" and row["p50_ms"] else None
        cross = remote and row is not baseline
        row["speedup"] = None if cross else ratio
        row["speedup_cross_machine"] = ratio if cross else None
        row["delta_top1_pp"] = row["top1"] - base["top1"] if ok and row.get("top1") is not None else None
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"] if base and row.get("size_bytes") else None
        mine, theirs = predictions.get(id(row)), predictions.get(id(baseline))
        row["agreement"] = (float(np.mean(np.asarray(mine) == np.asarray(theirs)) * 100)
                            if mine is not None and theirs is not None and row is not baseline else None)
    for row in rows:
        fp32 = _fp32_of(row, rows)
        row["speedup_vs_fp32"] = fp32["p50_ms"] / row["p50_ms"] if fp32 is not None else None
    warnings = []
    for row in rows:
        fp32 = _fp32_of(row, rows)
        if row["precision"] == "int8" and fp32 is not None and row["p50_ms"] >= fp32["p50_ms"]:
            warnings.append(f"{row['format']} int8 is not faster than {row['format']} fp32 on {device}: p50 "
                            f"{row['p50_ms']:.3g} ms vs {fp32['p50_ms']:.3g} ms")
    return warnings


def _fp32_of(row: dict, rows: list[dict]) -> dict | None:
    """The measured fp32 row of ``row``'s runtime on the same device (the baseline, for a torch row on
    the baseline's device), when ``row`` is measured too."""
    if row["status"] != "measured" or not row["p50_ms"]:
        return None
    for other in rows:
        same_place = other["where"] == row["where"] or (row["format"] == "torch" and other["role"] == "baseline"
                                                         and other["device"] == row["device"])
        if (other["status"] == "measured" and other["precision"] == "fp32" and other["format"] == row["format"]
                and same_place and other["p50_ms"]):
            return other
    return None


def _mode(req: BenchRequest, profile) -> tuple[bool, list[str]]:
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
    say(f"[yellow]warning:[/] {note}")
    return True, [note]


def _stand_in(req: BenchRequest, profile):
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
    say(f"[yellow]warning:[/] {profile.name} is not reachable ({why}): running its emulation here instead "
        f"(accuracy on its own kernels; latency estimated); to measure on the real device, set "
        f"connection.host/user/key in {profile.path}")
    return emulated


def _emulated_extras(row: dict, profile, cost: tuple[float, float], host_report: dict,
                     predictions: list | None, compiled: frozenset[str]) -> None:
    """Beside an emulated row: this host's run of the same file (top-1, agreement) and the estimate."""
    result = host_report["result"]
    if result.get("ok") and predictions is not None:
        row.update(host_top1=result["top1"], host_agreement=float(
            np.mean(np.asarray(predictions) == np.asarray(result["predictions"])) * 100))
    if profile.estimate is not None:
        try:
            _priced(row, profile, cost, compiled)
        except EdgeresError as exc:
            row["estimate_error"] = exc.args[0]


def _run_variants(variants: list[Variant], profile, req: BenchRequest, method: dict, estimated: bool,
                  cost: tuple[float, float], tmp: Path, data: Path
                  ) -> tuple[list[dict], dict[int, list | None], dict | None, str | None, list[tuple]]:
    """One row per variant, measured on the device (or estimated, or emulated), failures marked; the
    predictions of rows by ``id(row)``; the device's host info from its first report; the hint of a
    device-level error; (row, a call that measures its latency again) of every measured row."""
    from edgeres import backends

    reference = devices.get("cpu", req.devices_dir)  # this host, for the top-1 of estimated/emulated rows
    rows, predictions, device_host, device_error, device_hint, measured = [], {}, None, None, None, []
    for variant in variants:
        options = _options(profile, variant, req.threads)
        row = _variant_row(variant, profile, options)
        rows.append(row)
        if device_error is not None:
            row.update(status="failed", error=device_error)
            continue
        try:
            job_dir = _job_dir(tmp, variant, data)
        except EdgeresError as exc:  # the file changed or went missing since it was written
            row.update(status="failed", error=exc.args[0])
            continue
        path = job_dir / Path(variant.file_name).name
        file = str(path.resolve()) if variant.format == "torch" else path.name
        job = {"variant": {"name": row["variant"], "file": file, "runtime": variant.runtime, "options": options},
               "data": data.name, "method": method}

        def on_this_host() -> dict:
            if variant.runtime not in reference.runtimes.names():
                return backends.failed(job, f"this host's profile has no {variant.runtime} runtime", "local")
            here = {**job, "method": ACCURACY_ONLY,
                    "variant": {**job["variant"], "options": _options(reference, variant, req.threads)}}
            return backends.run_variant(reference, job_dir, here, req.timeout)

        if estimated:
            say(f"estimating {row['variant']} on {profile.name}; top-1 on this host")
            compiled = _placement(row, profile, variant, path)
            predictions[id(row)] = _estimate(row, profile, cost, on_this_host(), compiled)
            continue
        say(f"measuring {row['variant']} on {profile.name}"
            + (" (emulated)" if _emulator(profile, variant.runtime) else ""))
        try:
            device_report = backends.run_variant(profile, job_dir, job, req.timeout)
        except EdgeresError as exc:  # the device itself cannot be used: the other variants would fail alike
            device_error, device_hint = exc.args[0], exc.hint
            row.update(status="failed", error=device_error)
            continue
        predictions[id(row)] = _fill(row, device_report)
        compiled = _placement(row, profile, variant, path)
        device_host = device_host or device_report.get("host")
        if row["status"] == "measured":
            say(f"  p50 {row['p50_ms']:.3g} ms, p90 {row['p90_ms']:.3g} ms, top-1 {row['top1']:.2f}%")
            measured.append((row, functools.partial(backends.run_variant, profile, job_dir,
                                                    {**job, "latency_only": True}, req.timeout)))
        if row["status"] == "emulated":
            _emulated_extras(row, profile, cost, on_this_host(), predictions[id(row)], compiled)
            say(f"  top-1 {row['top1']:.2f}% emulated ({row['emulated']}), "
                f"{row.get('host_agreement', float('nan')):.1f}% agreement with this host's run of the same file")
    for row in rows:
        if row["status"] == "failed":
            say(f"[red]failed[/] {row['variant']}: {row['error']}")
    return rows, predictions, device_host, device_hint, measured


def _latency_rounds(measured: list[tuple], rounds: int) -> None:
    """Rounds 2..``rounds`` of latency (fresh processes, every row once per round, in turn); each row's
    latency becomes the median over its rounds, with the rounds' p50s and their spread kept beside it.
    A round that fails is left out (and said); a device that can no longer be used ends the rounds."""
    from edgeres.runtimes.runner import combine_rounds

    summaries = {id(row): [{"p50": row["p50_ms"], "p90": row["p90_ms"], "p99": row["p99_ms"], "mean": row["mean_ms"],
                            "runs": row["runs"]}] for row, _ in measured}
    if rounds > 1 and measured:
        say(f"latency rounds 2-{rounds}: every row again, in a fresh process each")
    try:
        for n in range(2, rounds + 1):
            for row, again in measured:
                result = again()["result"]
                if result.get("ok") and result.get("latency_ms"):
                    summaries[id(row)].append(result["latency_ms"])
                else:
                    say(f"[yellow]warning:[/] a latency round of {row['variant']} failed: {result.get('error')}")
            progress_line(f"latency round {n}/{rounds} done")
    except EdgeresError as exc:  # the device went away: keep the rounds measured so far
        say(f"[yellow]warning:[/] latency rounds stopped: {exc.args[0]}")
    for row, _ in measured:
        combined = combine_rounds(summaries[id(row)])
        row.update(p50_ms=combined["p50"], p90_ms=combined["p90"], p99_ms=combined["p99"], mean_ms=combined["mean"],
                   runs=combined["runs"], rounds=combined["rounds"], p50_rounds_ms=combined["p50_rounds"],
                   p50_spread_pct=combined["p50_spread_pct"])


def _baseline_info(where: str, choice: str) -> dict[str, Any]:
    info = {"device": where, "choice": choice, "precision": "fp32", "batchnorm": "folded"}
    if where == "cuda":
        info["tf32"] = False
    return info


def run_bench(req: BenchRequest, ws: Workspace) -> BenchResult:
    """Measure (or estimate, or emulate) every variant on the device and the baseline here; save a
    ``bench`` artifact. Raises ``EdgeresError`` when no variant could be run (nothing is saved then)."""
    from edgeres import baseline, report
    from edgeres.runtimes.runner import host_info

    started = time.perf_counter()
    formats = _choices(req.targets, tuple(FORMATS), "format")
    precisions = _choices(req.precisions, PRECISIONS, "precision")
    method = _method(req.method)
    baseline_where = baseline.choose_device(req.baseline)
    profile = devices.get(req.device, req.devices_dir)
    if req.trust_new_host:
        profile = devices.trusting_new_host(profile)
    profile = _stand_in(req, profile)
    devices.check_threads(profile, req.threads)
    estimated, warnings = _mode(req, profile)
    torch_rows = profile.runtimes.torch is not None and bool(profile.runtimes.torch.precisions)
    root, exports = select_variants(ws, req.model, formats, precisions, req.exports, need_exports=not torch_rows)
    runs_here = profile.runtimes.names()
    skipped = [{"variant": f"{v.manifest['format']} {v.manifest['precision']}", "artifact": v.id,
                "reason": f"device {profile.name} has no {v.manifest['runtime']} runtime"}
               for v in exports if v.manifest["runtime"] not in runs_here]
    for s in skipped:
        say(f"skipping {s['variant']}: {s['reason']}")
    variants = [Variant.export(v) for v in exports if v.manifest["runtime"] in runs_here]
    variants += _torch_variants(profile, root, precisions, baseline_where)
    if not variants:
        raise EdgeresError(f"device {profile.name} runs none of the exported formats (its runtimes: "
                           f"{', '.join(runs_here)})", hint="export to a format it runs: `edgeres export --target ...`")
    eval_limit, cap_note = _eval_limit(req, profile)
    if cap_note:
        warnings.append(cap_note)
    kinds = [_row_kind(profile, v.runtime, estimated) for v in variants]
    if "measured" not in kinds:
        method["rounds"] = 1
    cost = macs_params(root)
    local = profile.connection.type == "local"
    baseline_threads = req.threads or (profile.threads if local else None) or os.cpu_count()
    seconds = expected_seconds([("measured", None)] + [(k, _emulator(profile, v.runtime)) for k, v in
                                                       zip(kinds, variants)], eval_limit, cost, method,
                               int(method["rounds"]))
    _say_plan(profile, variants, kinds, eval_limit, cap_note, baseline.label(baseline_where), int(method["rounds"]),
              seconds)
    with tempfile.TemporaryDirectory(prefix="edgeres-bench-") as tmp:
        data_path = Path(tmp) / "eval.npz"
        x, y = _eval_npz(root, eval_limit, req.data_dir, data_path)
        say(f"evaluation data: {len(y)} {root.manifest['dataset']} test images")
        baseline_row, baseline_predictions, host, baseline_again = _measure_baseline(
            root, baseline_where, Path(tmp), data_path, method, baseline_threads, req.timeout)
        rows, predictions, device_host, device_hint, measured = _run_variants(
            variants, profile, req, method, estimated, cost, Path(tmp), data_path)
        if baseline_row["status"] == "measured":
            measured.insert(0, baseline_again)
        _latency_rounds(measured, int(method["rounds"]))
    if all(r["status"] == "failed" for r in rows):
        raise EdgeresError(f"no variant could be measured on {profile.name}: "
                           + "; ".join(f"{r['variant']}: {r['error']}" for r in rows), hint=device_hint)
    predictions[id(baseline_row)] = baseline_predictions
    comparisons = _compare([baseline_row, *rows], baseline_row, predictions, profile.name,
                           remote=profile.connection.type == "ssh")
    for warning in comparisons:
        say(f"[yellow]warning:[/] {warning}")
    results = {
        "results_format": RESULTS_FORMAT,
        "model": root.manifest["model"], "dataset": root.manifest["dataset"], "root": root.id,
        "device": {"name": profile.name, "description": profile.description, "arch": profile.arch,
                   "connection": profile.describe_connection(), "profile": str(profile.path),
                   "verified_on_hardware": profile.verified_on_hardware},
        "mode": "estimated" if estimated else "emulated" if any(r["status"] == "emulated" for r in rows)
        else "measured",
        "baseline": _baseline_info(baseline_where, req.baseline),
        "host": {**(host or host_info()), "baseline_device": baseline_row["device"]},
        "device_host": None if local else device_host,
        "method": method, "eval": {"split": "test", "n": int(len(y)), "limit": eval_limit},
        "plan": {"kinds": kinds, "expected_seconds": round(seconds, 1),
                 "seconds": round(time.perf_counter() - started, 1)},
        "rows": [baseline_row, *rows], "skipped": skipped, "warnings": warnings + comparisons,
    }
    say(f"done in {_duration(results['plan']['seconds'])} (expected about {_duration(seconds)})")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(req).items()}
    fields = {k: v for k, v in results.items() if k not in ("model", "dataset")}
    with ws.create("bench", model=results["model"], dataset=results["dataset"], parent=root, config=config,
                   **fields) as art:
        report.save(results, art.dir)
    assert art.artifact is not None
    return BenchResult(art.artifact, results)
