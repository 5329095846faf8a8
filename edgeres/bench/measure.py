"""Running the rows: the evaluation images, one process per variant on the device (or here, for the top-1
of estimated and emulated rows), the baseline in PyTorch here, and the latency rounds."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeres import devices
from edgeres.backends import model_files
from edgeres.bench.modes import Job, Mode
from edgeres.bench.request import BenchRequest
from edgeres.bench.rows import baseline_row, fill, variant_row
from edgeres.bench.select import Variant
from edgeres.console import progress_line, say, warn
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS
from edgeres.workspace import Artifact


# On this host, for the top-1 of estimated and emulated rows: one timed run, since the latency is not used.
ACCURACY_ONLY = {"warmup": 0, "min_runs": 1, "min_seconds": 0.0, "max_runs": 1, "throughput_batch": 1}


def eval_npz(root: Artifact, limit: int | None, data_dir: Path | None, path: Path) -> tuple[np.ndarray, np.ndarray]:
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
    files = model_files(main)
    twin = _on_a_cpu(variant, main)
    if twin != main:  # a file for an accelerator: the file it came from, for this host's top-1
        files.append(twin)
    for f in files + [data]:
        (job_dir / f.name).symlink_to(f.resolve())
    return job_dir


def _on_a_cpu(variant: Variant, path: Path) -> Path:
    """The file a CPU runs for ``path``: itself, or the one an accelerator's file was compiled from."""
    return path if variant.format == "torch" else FORMATS[variant.format].runnable_here(path)


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


def measure_baseline(root: Artifact, where: str, tmp: Path, data: Path, method: dict, threads: int | None,
                      timeout: float) -> tuple[dict, list | None, dict | None, tuple]:
    """The FP32 model (BatchNorm folded) in PyTorch here, measured by the runner in its own process like
    every variant: its row, predictions and host info, and (row, a call that measures its latency again)."""
    from edgeres.backends import local

    row = baseline_row(root, where, threads)
    job_dir = tmp / "baseline"
    job_dir.mkdir()
    (job_dir / data.name).symlink_to(data.resolve())
    job = {"variant": {"name": row["variant"], "file": str(root.file("model.pt").resolve()), "runtime": "torch",
                       "options": {"threads": threads, "device": where}}, "data": data.name, "method": method}
    say(f"measuring the baseline, {row['variant']} (BatchNorm folded, as in the exported files)")
    report = local.run_variant(None, job_dir, job, timeout)
    again = functools.partial(local.run_variant, None, job_dir, {**job, "latency_only": True}, timeout)
    return row, fill(row, report), report.get("host"), (row, again)


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


class DeviceRun(NamedTuple):
    rows: list[dict]  # one per variant, failures marked
    predictions: dict[int, list | None]  # by id(row), for agreement
    host: dict | None  # the device's host info, from its first report
    hint: str | None  # of a device-level error
    measured: list[tuple]  # (row, a call that measures its latency again) of every measured row


def run_variants(variants: list[Variant], modes: list[Mode], profile, req: BenchRequest, method: dict,
                 cost: tuple[float, float], tmp: Path, data: Path) -> DeviceRun:
    """Every variant's row, filled by its mode (``edgeres.bench.modes``)."""
    from edgeres import backends

    reference = devices.get("cpu", req.devices_dir)  # this host, for the top-1 of estimated/emulated rows
    rows, predictions, device_host, device_error, device_hint, measured = [], {}, None, None, None, []
    for variant, mode in zip(variants, modes):
        options = _options(profile, variant, req.threads)
        row = variant_row(variant, profile, options)
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
        spec = {"variant": {"name": row["variant"], "file": file, "runtime": variant.runtime, "options": options},
                "data": data.name, "method": method}
        here = {**spec, "method": ACCURACY_ONLY,
                "variant": {**spec["variant"], "file": _on_a_cpu(variant, path).name if variant.format != "torch"
                            else file, "options": _options(reference, variant, req.threads)}}

        def on_this_host(here: dict = here, job_dir: Path = job_dir, runtime: str = variant.runtime) -> dict:
            if runtime not in reference.runtimes.names():
                return backends.failed(here, f"this host's profile has no {runtime} runtime", "local")
            return backends.run_variant(reference, job_dir, here, req.timeout)

        job = Job(variant=variant, spec=spec, dir=job_dir, path=path, profile=profile, cost=cost,
                  timeout=req.timeout, on_this_host=on_this_host)
        try:
            outcome = mode.run(row, job)
        except EdgeresError as exc:  # the device itself cannot be used: the other variants would fail alike
            device_error, device_hint = exc.args[0], exc.hint
            row.update(status="failed", error=device_error)
            continue
        predictions[id(row)] = outcome.predictions
        device_host = device_host or outcome.host
        if row["status"] == "measured":
            measured.append((row, functools.partial(backends.run_variant, profile, job_dir,
                                                    {**spec, "latency_only": True}, req.timeout)))
    for row in rows:
        if row["status"] == "failed":
            say(f"[red]failed[/] {row['variant']}: {row['error']}")
    return DeviceRun(rows, predictions, device_host, device_hint, measured)


def latency_rounds(measured: list[tuple], rounds: int) -> None:
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
                    warn(f"a latency round of {row['variant']} failed: {result.get('error')}")
            progress_line(f"latency round {n}/{rounds} done")
    except EdgeresError as exc:  # the device went away: keep the rounds measured so far
        warn(f"latency rounds stopped: {exc.args[0]}")
    for row, _ in measured:
        combined = combine_rounds(summaries[id(row)])
        row.update(p50_ms=combined["p50"], p90_ms=combined["p90"], p99_ms=combined["p99"], mean_ms=combined["mean"],
                   runs=combined["runs"], rounds=combined["rounds"], p50_rounds_ms=combined["p50_rounds"],
                   p50_spread_pct=combined["p50_spread_pct"])
