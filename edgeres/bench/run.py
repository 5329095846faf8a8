"""``run_bench``: plan, measure and compare every variant on one device beside the FP32 baseline, then save
the ``bench`` artifact and its reports."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from pathlib import Path

from edgeres import devices
from edgeres.bench.measure import eval_npz, latency_rounds, macs_params, measure_baseline, run_variants
from edgeres.bench.modes import expected_seconds, mode_for
from edgeres.bench.plan import duration, eval_images, latency_mode, resolve_method, say_plan, stand_in
from edgeres.bench.request import BenchRequest, BenchResult
from edgeres.bench.rows import baseline_info, compare
from edgeres.bench.select import Variant, choices, runnable, select_variants, torch_variants
from edgeres.console import say, warn
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.workspace import Workspace


RESULTS_FORMAT = 2  # of results.json: 2 = estimates in estimated_p50_ms, same-machine speedups, latency_kind


def run_bench(req: BenchRequest, ws: Workspace) -> BenchResult:
    """Measure (or estimate, or emulate) every variant on the device and the baseline here; save a
    ``bench`` artifact. Raises ``EdgeresError`` when no variant could be run (nothing is saved then)."""
    from edgeres import baseline, report
    from edgeres.runtimes.runner import host_info

    started = time.perf_counter()
    formats = choices(req.targets, tuple(FORMATS), "format")
    precisions = choices(req.precisions, PRECISIONS, "precision")
    method = resolve_method(req.method())
    baseline_where = baseline.choose_device(req.baseline)
    profile = devices.get(req.device, req.devices_dir)
    if req.trust_new_host:
        profile = devices.trusting_new_host(profile)
    profile = stand_in(profile, emulate=req.emulate, estimate=req.estimate)
    devices.check_threads(profile, req.threads)
    estimated, warnings = latency_mode(req, profile)
    torch_rows = profile.runtimes.torch is not None and bool(profile.runtimes.torch.precisions)
    root, exports = select_variants(ws, req.model, formats=formats, precisions=precisions, exports=req.exports,
                                    need_exports=not torch_rows, runnable=functools.partial(runnable, profile))
    runs_here = profile.runtimes.names()
    skipped = [{"variant": f"{v.manifest['format']} {v.manifest['precision']}", "artifact": v.id,
                "reason": f"device {profile.name} has no {v.manifest['runtime']} runtime"}
               for v in exports if v.manifest["runtime"] not in runs_here]
    for s in skipped:
        say(f"skipping {s['variant']}: {s['reason']}")
    variants = [Variant.export(v) for v in exports if v.manifest["runtime"] in runs_here]
    variants += torch_variants(profile, root, precisions, baseline_where)
    if not variants:
        raise EdgeresError(f"device {profile.name} runs none of the exported formats (its runtimes: "
                           f"{', '.join(runs_here)})", hint="export to a format it runs: `edgeres export --target ...`")
    eval_limit, cap_note = eval_images(req, profile)
    if cap_note:
        warnings.append(cap_note)
    modes = [mode_for(profile, v.runtime, estimated=estimated) for v in variants]
    kinds = [mode.kind for mode in modes]
    if "measured" not in kinds:
        method["rounds"] = 1
    cost = macs_params(root)
    local = profile.connection.type == "local"
    baseline_threads = req.threads or (profile.threads if local else None) or os.cpu_count()
    seconds = expected_seconds(modes, images=eval_limit, cost=cost, method=method, rounds=int(method["rounds"]))
    say_plan(profile, variants, kinds, eval_limit, cap_note, baseline.label(baseline_where), int(method["rounds"]),
              seconds)
    with tempfile.TemporaryDirectory(prefix="edgeres-bench-") as tmp:
        data_path = Path(tmp) / "eval.npz"
        x, y = eval_npz(root, eval_limit, req.data_dir, data_path)
        say(f"evaluation data: {len(y)} {root.manifest['dataset']} test images")
        baseline_row, baseline_predictions, host, baseline_again = measure_baseline(
            root, baseline_where, Path(tmp), data_path, method, baseline_threads, req.timeout)
        run = run_variants(variants, modes, profile, req, method, cost, Path(tmp), data_path)
        rows, predictions = run.rows, run.predictions
        latency_rounds(([baseline_again] if baseline_row["status"] == "measured" else []) + run.measured,
                       int(method["rounds"]))
    if all(r["status"] == "failed" for r in rows):
        raise EdgeresError(f"no variant could be measured on {profile.name}: "
                           + "; ".join(f"{r['variant']}: {r['error']}" for r in rows), hint=run.hint)
    predictions[id(baseline_row)] = baseline_predictions
    comparisons = compare([baseline_row, *rows], baseline_row, predictions, profile.name,
                           remote=profile.connection.type == "ssh")
    for warning in comparisons:
        warn(f"{warning}")
    results = {
        "results_format": RESULTS_FORMAT,
        "model": root.manifest["model"], "dataset": root.manifest["dataset"], "root": root.id,
        "device": {"name": profile.name, "description": profile.description, "arch": profile.arch,
                   "connection": profile.describe_connection(), "profile": str(profile.path),
                   "verified_on_hardware": profile.verified_on_hardware},
        "mode": "estimated" if estimated else "emulated" if any(r["status"] == "emulated" for r in rows)
        else "measured",
        "baseline": baseline_info(baseline_where, req.baseline),
        "host": {**(host or host_info()), "baseline_device": baseline_row["device"]},
        "device_host": None if local else run.host,
        "method": method, "eval": {"split": "test", "n": int(len(y)), "limit": eval_limit},
        "plan": {"kinds": kinds, "expected_seconds": round(seconds, 1),
                 "seconds": round(time.perf_counter() - started, 1)},
        "rows": [baseline_row, *rows], "skipped": skipped, "warnings": warnings + comparisons,
    }
    say(f"done in {duration(results['plan']['seconds'])} (expected about {duration(seconds)})")
    config = req.model_dump(mode="json")
    fields = {k: v for k, v in results.items() if k not in ("model", "dataset")}
    with ws.create("bench", model=results["model"], dataset=results["dataset"], parent=root, config=config,
                   **fields) as art:
        report.save(results, art.dir)
    assert art.artifact is not None
    return BenchResult(art.artifact, results)
