"""The ``bench`` step: every exported variant of one model on one device, beside the FP32 baseline.

The variants are the newest export artifact per (format, precision) of one lineage: exports whose
``parent`` links lead to the same FP32 ``train``/``prune`` artifact (int8 files through their
``quantize`` artifact). Each is measured on the device by its backend (``edgeres.backends``: here, or
over ssh) with the runner's method on the same real test images, preprocessed as the model was trained;
the baseline is that FP32 artifact in PyTorch on this machine (``edgeres.baseline``), measured the same way
in a process of its own. Latency is taken in ``ROUNDS`` rounds of fresh processes, rows in turn. Rows that cannot
be measured are estimated only when asked (``--estimate``) or when an ssh device is unreachable, and
are always labelled ``estimated``. Rows run on an emulation of the device (``--emulate``: qemu-user for
aarch64 boards; an unreachable board whose emulation is set up; Qualcomm's HTP emulator on x86) are
labelled ``emulated``: their top-1 is the device's, beside this host's run of the same file and the
estimated latency; the emulator's own speed never stands as the device's latency. A variant that fails
is marked failed and the others go on.
The result is a ``bench`` artifact with JSON, CSV, Markdown and PNG reports (``edgeres.report``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeres import devices
from edgeres.console import say
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.workspace import Artifact, Workspace

MODEL_KINDS = ("train", "prune")  # the FP32 root of a lineage
# Latency is measured in this many rounds: each a fresh process per row, every row once per round, so
# that a process's own luck (where its memory and threads land) and the machine's drift over the minutes
# of a bench fall on all rows alike; a row's p50 is the median of its rounds' p50s (benchmarks/RESULTS.md).
ROUNDS = 9
# On this host, for the top-1 of estimated rows: one timed run, since the latency is not used.
ACCURACY_ONLY = {"warmup": 0, "min_runs": 1, "min_seconds": 0.0, "max_runs": 1, "throughput_batch": 1}
# Every row has these, None where not measured (estimated or failed rows), so that tables stay uniform.
MEASURES = ("status", "error", "top1", "top1_where", "n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs",
            "throughput_ips", "throughput_batch", "peak_rss_mb", "load_seconds")


@dataclass
class BenchRequest:
    """What ``edgeres bench`` asks for."""

    device: str = "cpu"
    model: str | None = None  # artifact id/path or model name; None: the lineage of the newest export
    targets: list[str] | None = None  # formats (or "all"); None: every format
    precisions: list[str] | None = None  # fp32/fp16/int8 (or "all"); None: every precision
    eval_limit: int | None = 1000  # test images; None: the whole test split
    threads: int | None = None  # None: the profile's, else every core
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


# -- choosing what to measure ---------------------------------------------------------------------
def _choices(values: list[str] | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if not values or "all" in values:
        return list(allowed)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise EdgeresError(f"unknown {what} {unknown[0]!r}", hint=f"choose from: {', '.join(allowed)}, all")
    return [v for v in allowed if v in values]


def _method(overrides: dict[str, float]) -> dict[str, Any]:
    from edgeres.runtimes.runner import DEFAULT_METHOD

    defaults = {**DEFAULT_METHOD, "rounds": ROUNDS}
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise EdgeresError(f"unknown method setting {sorted(unknown)[0]!r}", hint=f"known: {', '.join(defaults)}")
    method = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
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


def select_variants(ws: Workspace, ref: str | None, formats: list[str],
                    precisions: list[str]) -> tuple[Artifact, list[Artifact]]:
    """The lineage's root and its newest export per (format, precision), in the format table's order."""
    index = {a.id: a for a in ws.artifacts()}
    exports = [a for a in index.values() if a.kind == "export"]  # newest first
    picked = None
    if ref is not None:
        try:
            picked = ws.resolve(ref)
        except EdgeresError:
            picked = next((a for a in exports if a.manifest.get("model") == ref), None)
            if picked is None:
                raise EdgeresError(f"no artifact or exported model {ref!r} in workspace {ws.root}",
                                   hint=f"export it first: `edgeres export --model {ref} --target all`") from None
    elif exports:
        picked = exports[0]
    if picked is None:
        raise EdgeresError(f"no export artifact in workspace {ws.root}",
                           hint="export a model first, e.g. `edgeres export --target all --precision all`")
    root = _root(picked, index)
    if root is None:
        raise EdgeresError(f"{picked.id} does not lead to an FP32 train/prune artifact (a parent is missing)")
    newest: dict[tuple[str, str], Artifact] = {}
    for a in exports:
        key = (a.manifest.get("format"), a.manifest.get("precision"))
        if key[0] in formats and key[1] in precisions and key not in newest:
            if getattr(_root(a, index), "id", None) == root.id:
                newest[key] = a
    variants = [newest[(f, p)] for f in FORMATS for p in PRECISIONS if (f, p) in newest]
    if not variants:
        raise EdgeresError(f"no {'/'.join(formats)} {'/'.join(precisions)} export of {root.describe()}",
                           hint=f"export it first: `edgeres export --model {root.id} --target all --precision all`")
    say(f"benchmarking the exports of {root.describe()}")
    return root, variants


# -- running ---------------------------------------------------------------------------------------
def _eval_npz(root: Artifact, limit: int | None, data_dir: Path | None, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation images (NCHW float32, preprocessed as the model was trained) and labels, saved."""
    from edgeres import data
    from edgeres.evaluate import test_split

    x, y = data.as_tensors(test_split(root, None, data_dir, limit))
    x, y = np.ascontiguousarray(x.numpy(), np.float32), y.numpy().astype(np.int64)
    np.savez(path, x=x, y=y)
    return x, y


def _job_dir(tmp: Path, variant: Artifact, data: Path) -> Path:
    """A directory holding (links to) the variant's model file(s) and the evaluation data."""
    job_dir = tmp / variant.id
    job_dir.mkdir()
    main = variant.file(variant.manifest["file"])
    files = [main, main.with_suffix(".bin")] if main.suffix == ".xml" else [main]
    for f in files + [data]:
        (job_dir / f.name).symlink_to(f.resolve())
    return job_dir


def _runtime_device(runtime: str, options: dict[str, Any]) -> str:
    """What the runtime runs on, as the profile puts it (execution provider, OpenVINO device, delegate)."""
    return str(options.get("provider") or options.get("device") or options.get("delegate")
               or ("XNNPACK" if runtime == "tflite" else "default"))


def _variant_row(variant: Artifact, where: str, options: dict[str, Any]) -> dict[str, Any]:
    m = variant.manifest
    verify = m.get("metrics", {}).get("verify") or {}
    return {**dict.fromkeys(MEASURES), "variant": f"{m['format']} {m['precision']}", "role": "variant",
            "artifact": variant.id, "format": m["format"], "precision": m["precision"], "runtime": m["runtime"],
            "device": _runtime_device(m["runtime"], options), "where": where, "threads": options.get("threads"),
            "size_bytes": m.get("metrics", {}).get("size_bytes"),
            "verify_top1": verify.get("top1"), "verify_n": verify.get("n")}


def _fill(row: dict[str, Any], report: dict[str, Any]) -> list[int] | None:
    """Copy a runner report into ``row``; the predictions (for agreement) are returned, not stored."""
    result = report["result"]
    if not result.get("ok"):
        row.update(status="failed", error=result.get("error") or "no result")
        return None
    info = result.get("info") or {}
    if info.get("partitioning"):  # an execution provider that left nodes to the CPU (e.g. an NPU)
        row["partitioning"] = info["partitioning"]
    if result.get("emulated"):  # the device's numerics at an emulator's speed: no latency_ms, by design
        row.update(status="emulated", error=None, emulated=result["emulated"], top1=result["top1"], n=result["n"],
                   emulated_p50_ms=result["emulated_latency_ms"]["p50"], load_seconds=result.get("load_seconds"),
                   threads=info.get("threads", row.get("threads")), device=info.get("device", row["device"]))
        return result.get("predictions")
    latency = result["latency_ms"]
    row.update(status="measured", error=None, top1=result["top1"], n=result["n"],
               p50_ms=latency["p50"], p90_ms=latency["p90"], p99_ms=latency["p99"], mean_ms=latency["mean"],
               runs=latency["runs"], throughput_ips=result.get("throughput_ips"),
               throughput_batch=result.get("throughput_batch"), peak_rss_mb=result.get("peak_rss_mb"),
               load_seconds=result.get("load_seconds"), threads=info.get("threads", row.get("threads")),
               device=info.get("device", row["device"]))
    return result.get("predictions")


def _measure_baseline(root: Artifact, tmp: Path, data: Path, method: dict, threads: int | None,
                      timeout: float) -> tuple[dict, list | None, dict | None, tuple]:
    """The FP32 model in PyTorch here, measured by the runner in its own process like every variant:
    its row, predictions and host info, and (row, a call that measures its latency again)."""
    from edgeres import baseline
    from edgeres.backends import local

    where = baseline.device()
    row = {**dict.fromkeys(MEASURES), "variant": baseline.label(where), "role": "baseline", "artifact": root.id,
           "format": "torch", "precision": "fp32", "runtime": "torch", "device": where, "where": "host",
           "threads": threads, "size_bytes": root.file("model.pt").stat().st_size}
    job_dir = tmp / "baseline"
    job_dir.mkdir()
    (job_dir / data.name).symlink_to(data.resolve())
    job = {"variant": {"name": row["variant"], "file": str(root.file("model.pt").resolve()), "runtime": "torch",
                       "options": {"threads": threads, "device": where}}, "data": data.name, "method": method}
    say(f"measuring the baseline, {row['variant']}")
    report = local.run_variant(None, job_dir, job, timeout)
    again = functools.partial(local.run_variant, None, job_dir, {**job, "latency_only": True}, timeout)
    return row, _fill(row, report), report.get("host"), (row, again)


def _macs_params(root: Artifact) -> tuple[float, float]:
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


def _estimate(row: dict, profile, cost: tuple[float, float], host_report: dict) -> list[int] | None:
    """An estimated row: latency from the profile's figures, top-1 from this host (same file, same images);
    the host's predictions are returned."""
    from edgeres.backends.estimate import estimate_latency_ms

    estimate = estimate_latency_ms(profile, cost[0], cost[1], row["size_bytes"], row["precision"])
    row.update(status="estimated", error=None, p50_ms=estimate["latency_ms"], top1_where="host",
               estimate={k: estimate[k] for k in ("bound", "compute_ms", "memory_ms", "macs", "weight_bytes",
                                                  "assumptions", "sources")})
    result = host_report["result"]
    if not result.get("ok"):
        row["error"] = f"no top-1: {result.get('error')}"
        return None
    row.update(top1=result["top1"], n=result["n"])
    return result.get("predictions")


def _compare(rows: list[dict], baseline: dict, predictions: dict[str, list | None], device: str) -> list[str]:
    """Speedup, accuracy delta, size ratio and agreement against the baseline; warnings for slow int8."""
    base = baseline if baseline["status"] == "measured" else None
    for row in rows:
        ok = row["status"] != "failed" and base is not None
        row["speedup"] = base["p50_ms"] / row["p50_ms"] if ok and row.get("p50_ms") else None
        row["delta_top1_pp"] = row["top1"] - base["top1"] if ok and row.get("top1") is not None else None
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"] if base and row.get("size_bytes") else None
        mine, theirs = predictions.get(row["artifact"]), predictions.get(baseline["artifact"])
        row["agreement"] = (float(np.mean(np.asarray(mine) == np.asarray(theirs)) * 100)
                            if mine is not None and theirs is not None and row is not baseline else None)
    warnings = []
    by_key = {(r["format"], r["precision"]): r for r in rows if r["status"] == "measured"}
    for (fmt, precision), row in by_key.items():
        fp32 = by_key.get((fmt, "fp32"))
        if precision == "int8" and fp32 is not None and row["p50_ms"] >= fp32["p50_ms"]:
            warnings.append(f"{fmt} int8 is not faster than {fmt} fp32 on {device}: p50 {row['p50_ms']:.3g} ms "
                            f"vs {fp32['p50_ms']:.3g} ms")
    return warnings


def _mode(req: BenchRequest, profile) -> tuple[bool, list[str]]:
    """Whether rows are estimated, and why when the user did not ask for it: a device that cannot be
    used now (ssh host unreachable, runtime / delegate / NPU missing here) gives estimates, labelled."""
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
                     predictions: list | None) -> None:
    """Beside an emulated row: this host's run of the same file (top-1, agreement) and the estimate."""
    from edgeres.backends.estimate import estimate_latency_ms

    result = host_report["result"]
    if result.get("ok") and predictions is not None:
        row.update(host_top1=result["top1"], host_agreement=float(
            np.mean(np.asarray(predictions) == np.asarray(result["predictions"])) * 100))
    if profile.estimate is not None:
        estimate = estimate_latency_ms(profile, cost[0], cost[1], row["size_bytes"], row["precision"])
        row.update(estimated_p50_ms=estimate["latency_ms"],
                   estimate={k: estimate[k] for k in ("bound", "compute_ms", "memory_ms", "macs", "weight_bytes",
                                                      "assumptions", "sources")})


def _run_variants(variants: list[Artifact], profile, req: BenchRequest, method: dict, estimated: bool,
                  root: Artifact, tmp: Path, data: Path
                  ) -> tuple[list[dict], dict[str, list | None], dict | None, str | None, list[tuple]]:
    """One row per variant, measured on the device (or estimated), failures marked; the predictions
    of measured rows; the device's host info from its first report; the hint of a device-level error;
    (row, a call that measures its latency again) of every measured row, for the later rounds."""
    from edgeres import backends

    host_profile = devices.get("cpu", req.devices_dir) if estimated else None
    cost = _macs_params(root) if estimated else None
    rows, predictions, device_host, device_error, device_hint, measured = [], {}, None, None, None, []
    for variant in variants:
        runtime = variant.manifest["runtime"]
        options = devices.runtime_options(profile, runtime, req.threads)
        row = _variant_row(variant, profile.name, options)
        rows.append(row)
        if device_error is not None:
            row.update(status="failed", error=device_error)
            continue
        job = {"variant": {"name": row["variant"], "file": variant.manifest["file"], "runtime": runtime,
                           "options": options}, "data": data.name, "method": method}
        job_dir = _job_dir(tmp, variant, data)
        if estimated:
            say(f"estimating {row['variant']} on {profile.name}; top-1 on this host")
            if runtime in host_profile.runtimes.names():
                job["variant"]["options"] = devices.runtime_options(host_profile, runtime, req.threads)
                host_report = backends.run_variant(host_profile, job_dir, {**job, "method": ACCURACY_ONLY}, req.timeout)
            else:
                host_report = backends.failed(job, f"this host's profile has no {runtime} runtime", "local")
            predictions[variant.id] = _estimate(row, profile, cost, host_report)
            continue
        say(f"measuring {row['variant']} on {profile.name}")
        try:
            device_report = backends.run_variant(profile, job_dir, job, req.timeout)
        except EdgeresError as exc:  # the device itself cannot be used: the other variants would fail alike
            device_error, device_hint = exc.args[0], exc.hint
            row.update(status="failed", error=device_error)
            continue
        predictions[variant.id] = _fill(row, device_report)
        device_host = device_host or device_report.get("host")
        if row["status"] == "measured":
            say(f"  p50 {row['p50_ms']:.3g} ms, p90 {row['p90_ms']:.3g} ms, top-1 {row['top1']:.2f}%")
            measured.append((row, functools.partial(backends.run_variant, profile, job_dir,
                                                    {**job, "latency_only": True}, req.timeout)))
        if row["status"] == "emulated":
            reference = devices.get("cpu", req.devices_dir)
            job["variant"]["options"] = devices.runtime_options(reference, runtime, req.threads)
            host_report = backends.run_variant(reference, job_dir, {**job, "method": ACCURACY_ONLY}, req.timeout)
            cost = cost or _macs_params(root)
            _emulated_extras(row, profile, cost, host_report, predictions[variant.id])
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
        for _ in range(rounds - 1):
            for row, again in measured:
                result = again()["result"]
                if result.get("ok") and result.get("latency_ms"):
                    summaries[id(row)].append(result["latency_ms"])
                else:
                    say(f"[yellow]warning:[/] a latency round of {row['variant']} failed: {result.get('error')}")
    except EdgeresError as exc:  # the device went away: keep the rounds measured so far
        say(f"[yellow]warning:[/] latency rounds stopped: {exc.args[0]}")
    for row, _ in measured:
        combined = combine_rounds(summaries[id(row)])
        row.update(p50_ms=combined["p50"], p90_ms=combined["p90"], p99_ms=combined["p99"], mean_ms=combined["mean"],
                   runs=combined["runs"], rounds=combined["rounds"], p50_rounds_ms=combined["p50_rounds"],
                   p50_spread_pct=combined["p50_spread_pct"])


def run_bench(req: BenchRequest, ws: Workspace) -> BenchResult:
    """Measure (or estimate) every variant on the device and the baseline here; save a ``bench`` artifact.

    Raises ``EdgeresError`` when no variant could be measured or estimated (nothing is saved then)."""
    from edgeres import report
    from edgeres.runtimes.runner import host_info

    formats = _choices(req.targets, tuple(FORMATS), "format")
    precisions = _choices(req.precisions, PRECISIONS, "precision")
    method = _method(req.method)
    if req.eval_limit is not None and req.eval_limit < 1:
        raise EdgeresError("--eval-limit must be at least 1")
    profile = devices.get(req.device, req.devices_dir)
    if req.trust_new_host:
        profile = devices.trusting_new_host(profile)
    profile = _stand_in(req, profile)
    root, variants = select_variants(ws, req.model, formats, precisions)
    runs_here = profile.runtimes.names()
    skipped = [{"variant": f"{v.manifest['format']} {v.manifest['precision']}", "artifact": v.id,
                "reason": f"device {profile.name} has no {v.manifest['runtime']} runtime"}
               for v in variants if v.manifest["runtime"] not in runs_here]
    variants = [v for v in variants if v.manifest["runtime"] in runs_here]
    for s in skipped:
        say(f"skipping {s['variant']}: {s['reason']}")
    if not variants:
        raise EdgeresError(f"device {profile.name} runs none of the exported formats (its runtimes: "
                           f"{', '.join(runs_here)})", hint="export to a format it runs: `edgeres export --target ...`")
    estimated, warnings = _mode(req, profile)
    eval_limit = req.eval_limit
    if profile.max_eval_images is not None and (eval_limit is None or eval_limit > profile.max_eval_images):
        eval_limit = profile.max_eval_images
        warnings.append(f"{profile.name} evaluates at most {eval_limit} test images (max_eval_images in "
                        f"{profile.path}), so its top-1 is on {eval_limit} images")
        say(f"[yellow]warning:[/] {warnings[-1]}")
    local = profile.connection.type == "local"
    baseline_threads = req.threads or (profile.threads if local else None) or os.cpu_count()
    say(f"bench on {profile.name} ({profile.describe_connection()}{', estimated' if estimated else ''}): "
        f"{len(variants)} variant(s)")
    with tempfile.TemporaryDirectory(prefix="edgeres-bench-") as tmp:
        data_path = Path(tmp) / "eval.npz"
        x, y = _eval_npz(root, eval_limit, req.data_dir, data_path)
        say(f"evaluation data: {len(y)} {root.manifest['dataset']} test images")
        baseline_row, baseline_predictions, host, baseline_again = _measure_baseline(
            root, Path(tmp), data_path, method, baseline_threads, req.timeout)
        rows, predictions, device_host, device_hint, measured = _run_variants(
            variants, profile, req, method, estimated, root, Path(tmp), data_path)
        if baseline_row["status"] == "measured":
            measured.insert(0, baseline_again)
        _latency_rounds(measured, int(method["rounds"]))
    if all(r["status"] == "failed" for r in rows):
        raise EdgeresError(f"no variant could be measured on {profile.name}: "
                           + "; ".join(f"{r['variant']}: {r['error']}" for r in rows), hint=device_hint)
    predictions[root.id] = baseline_predictions
    comparisons = _compare([baseline_row, *rows], baseline_row, predictions, profile.name)
    for warning in comparisons:
        say(f"[yellow]warning:[/] {warning}")
    results = {
        "model": root.manifest["model"], "dataset": root.manifest["dataset"], "root": root.id,
        "device": {"name": profile.name, "description": profile.description, "arch": profile.arch,
                   "connection": profile.describe_connection(), "profile": str(profile.path)},
        "mode": "estimated" if estimated else "emulated" if any(r["status"] == "emulated" for r in rows)
        else "measured",
        "host": {**(host or host_info()), "baseline_device": baseline_row["device"]},
        "device_host": None if local else device_host,
        "method": method, "eval": {"split": "test", "n": int(len(y)), "limit": eval_limit},
        "rows": [baseline_row, *rows], "skipped": skipped, "warnings": warnings + comparisons,
    }
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(req).items()}
    fields = {k: v for k, v in results.items() if k not in ("model", "dataset")}
    with ws.create("bench", model=results["model"], dataset=results["dataset"], parent=root, config=config,
                   **fields) as art:
        report.save(results, art.dir)
    assert art.artifact is not None
    return BenchResult(art.artifact, results)
