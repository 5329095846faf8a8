"""The measurement method: load one model variant, time it and check its accuracy; report JSON.

Self-contained (standard library, numpy and the sibling runtime modules), so the device backends can
copy the ``runtimes/`` folder to a device and run the very same method there::

    python -m edgeres.runtimes.runner job.json [result.json]     # here
    python -m runtimes.runner job.json [result.json]             # on a device, beside a copy of runtimes/

The job file names the variant, the evaluation data and the method (paths relative to the job file)::

    {"variant": {"name": "onnx-int8", "file": "model.onnx", "runtime": "onnxruntime",
                 "options": {"threads": 2, "provider": "CPUExecutionProvider"}},
     "data": "eval.npz",                       # x: NCHW float32, normalized; y: int64 labels
     "method": {"warmup": 10, "min_runs": 50, "min_seconds": 0.5, "max_runs": 2000, "throughput_batch": 8}}

The result, ``{"host": {...}, "result": {...}}``, goes to stdout (or to the path given); anything the
runtimes print is diverted to stderr so that stdout holds only the JSON. The method, one variant per
process so that peak memory and crashes are the variant's own:

1. Load: open the session (``load_seconds``). ``threads`` defaults to every core of the machine, so that
   no runtime silently runs single-threaded.
2. Warm-up: ``warmup`` batch-1 runs (lazy allocation, graph compilation and caches settle).
3. Latency, single stream at batch 1: every call timed alone with ``time.perf_counter``, on real images
   cycled from ``x``, until at least ``min_runs`` runs *and* ``min_seconds`` have passed (at most
   ``max_runs``); reported as p50 / p90 / p99 (MLPerf's single-stream metric is p90), mean, min, std.
4. Throughput: batches of ``throughput_batch`` images, 2 warm-up batches, then at least 3 batches and
   ``min_seconds``; images per second. A session that cannot take that batch (a model with a fixed
   batch of 1) reports the single-stream rate with ``throughput_batch`` 1.
5. Accuracy: top-1 (percent) on every image of ``x``, through ``Session.run_batched`` (per image when the
   model has a fixed batch of 1); the argmax of every image is returned for comparisons.
6. A job with ``"latency_only": true`` stops after step 3 (no throughput, no accuracy): the later
   rounds of a bench, which measure latency again in fresh processes (see ``edgeres.bench``).
7. Memory: the process's peak resident set (``ru_maxrss``), which includes Python, numpy and the
   evaluation data; ``peak_rss_before_load_mb`` is the same figure just before the model was loaded.
8. Operator profile: a job with ``"profile": true`` replaces steps 2-7 with the runtime's own profiler
   (``opprofile``) on the first image of ``x``, on the CPU kernels: ``op_profile`` holds the per-operator
   figures and ``cpu`` the CPU's int8 instructions, of the machine the runner runs on. A TFLite file's job
   may say ``"profile": {"cuts": {block: tensor index}}`` to have its operators named after their blocks and
   summed by block.
9. Layer taps: a job with ``"taps": {"outputs": {point: output}, "logits": point}`` (an output name for
   onnxruntime, an output index for OpenVINO, a tensor index for TFLite) replaces steps 2-7 too: each
   point's tensor of every image of ``x`` (``taps``), set against the ``ref:<point>`` arrays of the data
   file (this host's tensors of the same file) with ``numerics.compare``; ``taps`` holds a row per point,
   and ``top1``, ``n`` and ``predictions`` come from the logits point.
10. Emulation: when the job says ``"emulated": "<emulator>"`` (qemu) or the session does (``info()``,
   e.g. Qualcomm's HTP emulator on x86), the speed is the emulator's, not the device's: steps 2-4 are
   replaced by ``EMULATED_METHOD``'s two timed runs, reported as ``emulated_latency_ms`` (never
   ``latency_ms``; no throughput), and ``emulated`` names the emulator.

A variant that cannot run (runtime, delegate, provider or device missing; a file the runtime rejects)
gives ``"ok": false`` and a one-line ``error``, never a traceback; the exit code is then 1.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import RuntimeUnavailable, open_session, registry

DEFAULT_METHOD = {"warmup": 10, "min_runs": 50, "min_seconds": 0.5, "max_runs": 2000, "throughput_batch": 8}
EMULATED_METHOD = {"warmup": 0, "min_runs": 2, "min_seconds": 0.0, "max_runs": 2}
_DISTRIBUTIONS = ("numpy", *(d for runtime in registry.RUNTIMES.values() for d in runtime.distributions))


class JobError(Exception):
    """The job file itself is wrong (missing key, missing file)."""


def cpu_model() -> str:
    """The CPU's (or board's) model name."""
    for path, keys in (("/proc/device-tree/model", None), ("/proc/cpuinfo", ("model name", "Model", "Hardware"))):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        if keys is None:
            return text.strip("\x00\n ")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in keys and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def installed_versions(distributions) -> dict[str, str]:
    """The version of each of ``distributions`` that is installed here."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def host_info() -> dict[str, Any]:
    """The machine the numbers were measured on."""
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": cpu_model(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "versions": installed_versions(_DISTRIBUTIONS)}


def _peak_rss_mb() -> float:
    """This process's peak resident set. On Linux ``VmHWM``: ``ru_maxrss`` would carry over the peak of
    the parent that spawned the runner."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, KiB elsewhere


def time_latency(session, x: np.ndarray, method: dict) -> list[float]:
    n = len(x)
    for i in range(method["warmup"]):
        session.run(x[i % n:i % n + 1])
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < method["max_runs"] and (len(times) < method["min_runs"]
                                               or time.perf_counter() - start < method["min_seconds"]):
        i = len(times) % n
        image = x[i:i + 1]
        t0 = time.perf_counter()
        session.run(image)
        times.append(time.perf_counter() - t0)
    return times


def latency_summary(times: list[float]) -> dict[str, Any]:
    ms = np.asarray(times) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean()),
            "min": float(ms.min()), "std": float(ms.std()), "runs": len(times)}


def combine_rounds(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One latency summary from several rounds' (each a ``latency_summary`` of its own process): the
    median of their p50s, p90s and p99s, the mean of their means; the rounds' p50s and their spread,
    (max - min) / median in percent."""
    p50s = [s["p50"] for s in summaries]
    median = float(np.median(p50s))
    return {"p50": median, "p90": float(np.median([s["p90"] for s in summaries])),
            "p99": float(np.median([s["p99"] for s in summaries])),
            "mean": float(np.mean([s["mean"] for s in summaries])), "runs": int(sum(s["runs"] for s in summaries)),
            "rounds": len(summaries), "p50_rounds": p50s,
            "p50_spread_pct": (max(p50s) - min(p50s)) / median * 100 if median > 0 else 0.0}


def throughput(session, x: np.ndarray, batch: int, method: dict) -> float:
    """Images per second at ``batch`` (raises if the session cannot take that batch)."""
    xb = np.ascontiguousarray(x[np.arange(batch) % len(x)])
    for _ in range(2):
        session.run(xb)
    count, max_batches = 0, max(3, method["max_runs"] // batch)
    start = time.perf_counter()
    while count < max_batches and (count < 3 or time.perf_counter() - start < method["min_seconds"]):
        session.run(xb)
        count += 1
    return count * batch / (time.perf_counter() - start)


def all_logits(session, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Logits of every image and the batch size used (1 when the model's batch is fixed at 1)."""
    try:
        return session.run_batched(x), 64
    except Exception:  # noqa: BLE001 - a fixed-batch model rejects a batch; any other fault recurs below
        return np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))]), 1


def _read_job(job_path: Path) -> tuple[dict, Path, np.ndarray, np.ndarray, dict, dict]:
    try:
        job = json.loads(job_path.read_text())
        variant = job["variant"]
        model, data = job_path.parent / variant["file"], job_path.parent / job["data"]
        method = {**DEFAULT_METHOD, **job.get("method", {})}
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(f"cannot read job file {job_path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise JobError(f"job file {job_path} lacks {exc}") from None
    if not model.is_file():
        raise JobError(f"model file {variant['file']} is missing beside the job file")
    try:
        with np.load(data) as arrays:
            x, y = np.ascontiguousarray(arrays["x"], np.float32), arrays["y"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise JobError(f"cannot read evaluation data {job['data']} (arrays x, y): {exc}") from None
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise JobError(f"evaluation data must be x: N x C x H x W and y: N labels, got {x.shape} and {y.shape}")
    return variant, model, x, y, method, job


def _op_profile(variant: dict, model: Path, x: np.ndarray, options: dict, spec: Any) -> dict[str, Any]:
    """Step 8: the per-operator profile of the variant's file on this machine's CPU kernels (``spec``: the
    job's ``profile``, ``true`` or ``{"cuts": {block: tensor index}}`` for a TFLite file's blocks)."""
    from .opprofile import cpu_int8, profile

    found = _runtime(variant, model)
    unit = registry.device_label(found.name, options)
    if unit != found.default_device:
        raise RuntimeUnavailable(f"operator profiles cover {found.name}'s CPU kernels; this variant runs on {unit}")
    cuts = spec.get("cuts") if isinstance(spec, dict) else None
    return {"op_profile": profile(found.name, model, x[:1], options["threads"], cuts=cuts), "cpu": cpu_int8()}


def _taps(variant: dict, model: Path, x: np.ndarray, y: np.ndarray, data: Path, spec: dict,
          options: dict) -> dict[str, Any]:
    """Step 9: each point's tensor here against this host's (the data file's ``ref:<point>`` arrays)."""
    from .numerics import compare
    from .taps import tensors

    runtime = _runtime(variant, model)
    unit = registry.device_label(runtime.name, options)
    if unit != runtime.default_device:
        raise RuntimeUnavailable(f"layer taps cover {runtime.name}'s CPU kernels; this variant runs on {unit}")
    try:
        outputs, logits_point = dict(spec["outputs"]), spec["logits"]
        with np.load(data) as arrays:
            reference = {point: arrays[f"ref:{point}"] for point in outputs}
    except (KeyError, TypeError, OSError, ValueError) as exc:
        raise JobError(f"the taps job lacks its outputs or reference tensors: {exc}") from None
    got = tensors(runtime.name, model, outputs, x, options["threads"])
    predictions = got[logits_point].reshape(len(x), -1).argmax(axis=1)
    return {"taps": [{"point": point, **compare(reference[point], got[point])} for point in outputs],
            "top1": float((predictions == y).mean() * 100), "n": int(len(y)), "predictions": predictions.tolist()}


def _runtime(variant: dict, model: Path) -> registry.Runtime:
    """The variant's runtime, installed here."""
    name = variant.get("runtime")
    found = registry.RUNTIMES.get(name) if name else registry.for_suffix(model.suffix)
    if found is None:
        raise RuntimeUnavailable(f"no runtime for {model.name} (known: {', '.join(registry.RUNTIMES)})")
    if not registry.installed(found.name):
        raise RuntimeUnavailable(registry.not_installed(found.name))
    return found


def measure(job_path: Path | str) -> dict[str, Any]:
    """Run the method on one job file; returns ``{"host": ..., "result": ...}`` and never raises for a
    variant that cannot run."""
    job_path = Path(job_path)
    result: dict[str, Any] = {"name": "?", "ok": False, "error": None}
    try:
        variant, model, x, y, method, job = _read_job(job_path)
        result["name"] = variant.get("name", model.name)
        options = dict(variant.get("options") or {})
        options["threads"] = options.get("threads") or os.cpu_count()
        if job.get("profile") or job.get("taps"):
            special = _op_profile(variant, model, x, options, job["profile"]) if job.get("profile") else _taps(
                variant, model, x, y, job_path.parent / job["data"], job["taps"], options)
            result.update(special, ok=True)
            return {"host": host_info(), "result": result}
        result["peak_rss_before_load_mb"] = _peak_rss_mb()
        t0 = time.perf_counter()
        session = open_session(model, variant.get("runtime"), **options)
        result["load_seconds"] = time.perf_counter() - t0
        emulated = job.get("emulated") or session.info().get("emulated")
        latency_only = bool(job.get("latency_only"))
        if emulated:  # the emulator's speed: a glimpse, apart, and no throughput
            times = time_latency(session, x, EMULATED_METHOD)
            result.update(emulated=emulated, emulated_latency_ms=latency_summary(times))
        else:
            times = time_latency(session, x, method)
            result["latency_ms"] = latency_summary(times)
            if not latency_only:
                batch = int(method["throughput_batch"] or 1)
                try:
                    result["throughput_ips"], result["throughput_batch"] = throughput(session, x, batch, method), batch
                except Exception:  # noqa: BLE001 - the model takes batch 1 only: report the single-stream rate
                    result["throughput_ips"], result["throughput_batch"] = len(times) / sum(times), 1
        info = {**session.info(), "threads": options["threads"]}
        if not latency_only:
            logits, info["accuracy_batch"] = all_logits(session, x)
            predictions = logits.argmax(axis=1)
            result.update(top1=float((predictions == y).mean() * 100), n=int(len(y)),
                          predictions=predictions.tolist())
        result.update(peak_rss_mb=_peak_rss_mb(), info=info)
        result["ok"] = True
    except (RuntimeUnavailable, JobError) as exc:
        result["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a runtime failing mid-run: report it, keep other variants going
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        result["error"] = f"{result['name']} failed while running: {type(exc).__name__}: {text}"
    return {"host": host_info(), "result": result}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m runtimes.runner job.json [result.json]", file=sys.stderr)
        return 2
    # Runtimes and their native libraries may print to stdout; keep it for the JSON alone.
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    report = measure(argv[0])
    text = json.dumps(report, default=_json_default)
    if len(argv) == 2:
        Path(argv[1]).write_text(text)
    else:
        json_out.write(text + "\n")
    json_out.flush()
    return 0 if report["result"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
