"""Where a model file spends its time, operator by operator, on this machine's CPU, from the runtimes' own
profilers:

- onnxruntime: session profiling (``enable_profiling``): every kernel's time per run (``Node`` events) and
  the runtime's own time of each whole run (``model_run``);
- OpenVINO: performance counters (``PERF_COUNT``): ``get_profiling_info()`` after each run, with the kernel
  each operator ran (``exec_type``, e.g. ``jit_avx512_I8``) and the request's own ``latency``;
- TFLite: LiteRT's Python interpreter has no operator profiler (its C++ ``benchmark_model
  --enable_op_profiling`` has), so every prefix of the file (its first k operators, ``tflite_cuts``) runs
  as bench runs the file (XNNPACK), all of them in rounds taken in turn: an operator's time is the
  difference between the p50s of the prefixes that end after it and before it, and the prefix of no
  operator is the call's own cost (``outside_ops``). Given ``cuts`` (block -> the tensor that ends it), each
  operator is named after its block and ``by_block`` sums them, with ``(other)`` the rest of the file after
  the last block. The sum of a file's operators is, by construction, its p50 less the empty call's.

``profile(runtime, path, x, threads)`` gives one file's operators' time per run beside the runtime's own
end-to-end time (``coverage``: their ratio; ``outside_ops``: the rest, time the runtime spends in a run but in
no operator, named rather than hidden), time by operator type, every operator's time (``ops``: name -> [type,
ms], named after the module that made it, for the caller to map to the model's blocks), the slowest
operators, and operators that convert layouts at run time (onnxruntime's ``Reorder*``, OpenVINO's
``Reorder``) or re-quantize outside a fused kernel. ``cpu_int8`` reads the CPU's int8 instructions, which
decide whether int8 kernels can be fast on it at all.

The two profilers count differently, and the sums follow each one's bookkeeping:

- onnxruntime writes one event per kernel per run, so each run's operator sum is known: ``ops_p50_ms`` is the
  p50 of the per-run sums, ``coverage`` its ratio to the p50 of ``model_run``, and ``outside_ops`` splits the
  rest into before the first kernel, between kernels (the executor's work per node, the profiler's own
  bookkeeping included) and after the last one.
- OpenVINO's CPU plugin reports, per node, the *running average* of its time over every inference since the
  model was compiled (``PerfCount::avg()``: whole microseconds, the first, slow inference included), not the
  last run's time; ``cpu_time`` is the same number as ``real_time``, and fused nodes say ``NOT_RUN`` with 0.
  So no per-run sum exists: from the averages after the warm-up and after the last run, and the number of
  runs, each node's mean over the measured runs is taken, and ``ops_p50_ms`` holds the *mean* operator sum
  (``ops_statistic`` says so), set against the mean request ``latency`` of the same runs (``e2e_mean_ms``).
  The counters truncate to whole microseconds, per run and in the average: ``ops_undercount_max_ms`` bounds
  what that hides.

Like the rest of ``runtimes/``, this module imports only the standard library, numpy and the runtime it
profiles, so the runner runs it on a device (a job with ``"profile": true``) as it does here.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

WARMUP = 5
MIN_RUNS, MIN_SECONDS = 30, 0.3
ROUND = 10  # timed runs of one TFLite cut in a row
LAYOUT_OPS = ("Reorder", "ReorderInput", "ReorderOutput", "Transpose")
REQUANTIZE_OPS = ("QuantizeLinear", "DequantizeLinear", "FakeQuantize", "QUANTIZE", "DEQUANTIZE")
_X86_INT8 = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8", "avx512bw": "AVX-512BW",
             "avx2": "AVX2"}
_ARM_INT8 = {"asimddp": "dot product (SDOT/UDOT)", "i8mm": "int8 matrix multiply (I8MM)", "sve2": "SVE2"}


def cpu_int8(cpuinfo: str | None = None) -> dict:
    """The int8 instructions this CPU has, from /proc/cpuinfo's flags, and what they mean for int8 speed."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    machine = platform.machine().lower()
    table = _ARM_INT8 if machine in ("aarch64", "arm64") else _X86_INT8
    has = [name for flag, name in table.items() if flag in flags]
    if machine in ("aarch64", "arm64"):
        fast = "asimddp" in flags or "i8mm" in flags
        note = ("int8 dot-product instructions present: int8 convolutions can run well faster than fp32" if fast
                else "no int8 dot-product instructions (asimddp/i8mm): int8 gains come from memory only")
    else:
        fast = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
        note = ("VNNI/AMX present: int8 convolutions use one-instruction int8 dot products" if fast
                else "no VNNI or AMX: int8 dot products take three instructions (AVX2/AVX-512BW), so int8 is often "
                     "little faster than fp32 here")
    return {"machine": platform.machine(), "int8_instructions": has, "fast_int8": fast, "note": note}


def _timed_runs(run) -> None:
    for _ in range(WARMUP):
        run()
    start, count = time.perf_counter(), 0
    while count < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        run()
        count += 1


def _onnx(path: Path, x: np.ndarray, threads: int | None) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeres-opprofile-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        _timed_runs(lambda: session.run(None, feed))
        events = json.loads(Path(session.end_profiling()).read_text())
    return _onnx_summary(events, WARMUP)


def _onnx_summary(events: list[dict], warmup: int) -> dict:
    """One file's figures from onnxruntime's profile: ``model_run`` events (the runtime's own time of each
    run) after the first ``warmup``, and the ``Node`` ``*_kernel_time`` events inside each of them."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[warmup:]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run: list[list[tuple[float, float]]] = [[] for _ in runs]  # (start, end) of each kernel, in us
    ops: dict[tuple[str, str], list[float]] = {}
    starts = np.array([r["ts"] for r in runs])
    for e in nodes:
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i < 0 or e["ts"] > runs[i]["ts"] + runs[i]["dur"]:
            continue  # a warm-up run's
        per_run[i].append((e["ts"], e["ts"] + e["dur"]))
        key = (e["name"].removesuffix("_kernel_time"), e.get("args", {}).get("op_name", "?"))
        ops.setdefault(key, []).append(e["dur"] / 1000)
    sums, before, between, after, overlap = [], [], [], [], []
    for run, kernels in zip(runs, per_run):
        kernels.sort()
        sums.append(sum(b - a for a, b in kernels) / 1000)
        if not kernels:
            before.append(run["dur"] / 1000)
            between.append(0.0)
            after.append(0.0)
            overlap.append(0.0)
            continue
        covered, reach = 0.0, kernels[0][0]  # the union of the kernels' intervals
        for a, b in kernels:
            covered += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        before.append((kernels[0][0] - run["ts"]) / 1000)
        after.append((run["ts"] + run["dur"] - reach) / 1000)
        between.append((reach - kernels[0][0] - covered) / 1000)
        overlap.append(sums[-1] - covered / 1000)
    e2e = np.array([r["dur"] / 1000 for r in runs])
    sums_a = np.array(sums)
    result = _figures(float(np.median(sums_a)), float(np.median(e2e)), float(np.median(e2e)),
                      {name: (kind, float(np.median(t)), "") for (name, kind), t in ops.items()},
                      "onnxruntime profiler (model_run)", "p50 of the per-run operator sums", len(runs))
    result["outside_ops"].update({
        "ms_p50_per_run": round(float(np.median(e2e - sums_a)), 4) if len(runs) else None,
        "before_first_op_ms": round(float(np.median(before)), 4) if before else None,
        "between_ops_ms": round(float(np.median(between)), 4) if between else None,
        "after_last_op_ms": round(float(np.median(after)), 4) if after else None,
        "ops_overlapping_ms": round(float(np.median(overlap)), 4) if overlap else None})
    result["e2e_mean_ms"] = round(float(e2e.mean()), 4) if len(runs) else None
    result["ops_mean_ms"] = round(float(sums_a.mean()), 4) if len(runs) else None
    return result


def _openvino(path: Path, x: np.ndarray, threads: int | None) -> dict:
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()

    def counters() -> list[tuple[str, str, str, float]]:
        return [(i.node_name, i.node_type, i.exec_type, i.real_time.total_seconds() * 1e6)
                for i in request.get_profiling_info()]

    for _ in range(WARMUP):
        request.infer({0: x})
    after_warmup, latencies = counters(), []
    start = time.perf_counter()
    while len(latencies) < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        request.infer({0: x})
        latencies.append(request.latency)
    return _openvino_summary(after_warmup, counters(), WARMUP, WARMUP + len(latencies), latencies)


def _openvino_summary(before: list[tuple[str, str, str, float]], after: list[tuple[str, str, str, float]],
                      n_before: int, n_after: int, latencies: list[float]) -> dict:
    """One file's figures from OpenVINO's counters: ``before`` and ``after`` are ``get_profiling_info()`` as
    (name, type, kernel, microseconds) after ``n_before`` and ``n_after`` inferences of the compiled model;
    each microseconds figure is the node's running average over all inferences so far (truncated to whole
    microseconds), so its mean over the runs in between is (after * n_after - before * n_before) / runs.
    ``latencies``: the request's own latency (ms) of each of those runs."""
    runs = n_after - n_before
    if runs <= 0 or len(before) != len(after) or any(b[0] != a[0] for b, a in zip(before, after)):
        raise ValueError("OpenVINO's counters changed shape between readings")
    ops: dict[str, tuple[str, float, str]] = {}
    executed = 0
    for (_, _, _, avg_before), (name, kind, kernel, avg_after) in zip(before, after):
        if avg_after <= 0:
            continue  # fused into another node (its time is that node's) or never run
        ms = max(0.0, avg_after * n_after - avg_before * n_before) / runs / 1000
        executed += 1
        _, prior, _ = ops.get(name, (kind, 0.0, kernel))
        ops[name] = (kind, prior + ms, kernel)
    e2e = np.array(latencies, dtype=float)
    ops_mean = sum(v[1] for v in ops.values())
    result = _figures(ops_mean, float(e2e.mean()), float(np.median(e2e)), ops,
                      "OpenVINO infer request latency",
                      "mean over the measured runs (OpenVINO's counters are running averages: no per-run sum)", runs)
    result["e2e_mean_ms"] = round(float(e2e.mean()), 4)
    # Each run's time per node is truncated to whole microseconds (< 1 us lost), and the average read back is
    # truncated again (< n_after / runs us per node after the subtraction).
    result["ops_undercount_max_ms"] = round(executed * (1 + n_after / runs) / 1000, 4)
    return result


def _tflite(path: Path, x: np.ndarray, threads: int | None, cuts: dict[str, int] | None = None) -> dict:
    from .tflite_cuts import Cutter

    try:
        cutter = Cutter(path)
    except ImportError as exc:  # a device with an interpreter but no flatbuffer schema
        times = _tflite_alone(Path(path), x, threads)
        return {"p50_ms": round(float(np.median(times)), 4), "e2e_source": "wall clock around the Python call",
                "ops_p50_ms": None, "coverage": None, "runs": len(times),
                "unavailable": f"no per-operator times: {exc}"}
    # The prefixes stay in memory, each made when it is loaded: written out, a large model's would fill a
    # board's disk (ResNet-50's 75 prefixes of 100 MB). The prefix of every operator is the file itself.
    names = [*range(cutter.operators), "(file)"]

    def model(name) -> Path | bytes:
        return Path(path) if name == "(file)" else cutter.prefix(name)

    together = _fit_together(Path(path), len(names))
    times = _tflite_in_turn({name: model(name) for name in names}, x, threads) if together else {
        name: _tflite_alone(model(name), x, threads) for name in names}
    prefix = [float(np.median(t)) for t in times.values()]  # no operator (the call), then one more each time
    blocks = sorted(cuts.items(), key=lambda kv: cutter.position(kv[1])) if cuts else []
    ends = [cutter.position(tensor) for _, tensor in blocks]

    def block_of(i: int) -> str:
        return next((name for (name, _), end in zip(blocks, ends) if i < end), "(other)")

    op_ms = [after - before for before, after in zip(prefix, prefix[1:])]
    ops = {f"{block_of(i)} {kind}#{i}" if blocks else f"{kind}#{i}": (kind, op_ms[i], "")
           for i, kind in enumerate(cutter.kinds)}
    how = (f"rounds of {ROUND} runs in turn" if together
           else "one cut at a time, as all of them loaded at once would not fit in half the free memory")
    result = _figures(prefix[-1] - prefix[0], prefix[-1], prefix[-1], ops,
                      "wall clock around the Python call",
                      f"differences of the p50s of the file's first operators up to and before each one (XNNPACK, "
                      f"{how}): they sum to the file's p50 less the call's; an operator faster than the noise "
                      "can come out negative", min(len(t) for t in times.values()))
    result["outside_ops"]["source"] = "p50 of the file cut to no operator: the call's own cost"
    if blocks:
        by_block: dict[str, float] = {}
        for i, ms in enumerate(op_ms):
            by_block[block_of(i)] = by_block.get(block_of(i), 0.0) + ms
        result["by_block"] = {name: round(by_block[name], 4) for name in [*(b for b, _ in blocks), "(other)"]
                              if name in by_block}
    return result


def _fit_together(path: Path, sessions: int) -> bool:
    """Whether ``sessions`` interpreters of the file (each holds the file's bytes, and XNNPACK packs a copy of
    its weights) fit in half of this machine's available memory; True where that cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return 2 * sessions * path.stat().st_size < int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError):
        pass
    return True


def _tflite_in_turn(files: dict, x: np.ndarray, threads: int | None) -> dict[str, list[float]]:
    """Each file's times (ms), all loaded at once and run in rounds taken in turn: a slower spell of the
    machine falls on every file alike; each round's first run, which refills the caches, is not timed."""
    from .tflite_rt import TFLiteSession

    sessions = {name: TFLiteSession(f, threads) for name, f in files.items()}
    times: dict[str, list[float]] = {name: [] for name in files}
    for session in sessions.values():
        for _ in range(WARMUP):
            session.run(x)
    start, seconds = time.perf_counter(), MIN_SECONDS * len(files)
    while min(len(t) for t in times.values()) < MIN_RUNS or time.perf_counter() - start < seconds:
        for name, session in sessions.items():
            session.run(x)
            for _ in range(ROUND):
                t = time.perf_counter()
                session.run(x)
                times[name].append((time.perf_counter() - t) * 1000)
    return times


def _tflite_alone(path: Path | bytes, x: np.ndarray, threads: int | None) -> list[float]:
    """One file's times (ms), loaded alone and released after."""
    from .tflite_rt import TFLiteSession

    session, times = TFLiteSession(path, threads), []

    def run() -> None:
        t = time.perf_counter()
        session.run(x)
        times.append((time.perf_counter() - t) * 1000)

    _timed_runs(run)
    return times[WARMUP:]


def _figures(ops_ms: float, e2e_ms: float, p50: float, ops: dict[str, tuple[str, float, str]], source: str,
             statistic: str, runs: int) -> dict:
    """One file's figures; ``ops_ms`` against ``e2e_ms`` (the same statistic of the operators' sum per run and
    of the runtime's own time per run), ``p50`` the runtime's end-to-end p50; ``ops``: name -> (type, ms per
    run, kernel). Medians where there are runs to take them over: one run that the OS preempted must not weigh
    on a sum over a hundred runs."""
    by_type: dict[str, float] = {}
    for kind, ms, _ in ops.values():
        by_type[kind] = by_type.get(kind, 0.0) + ms
    slowest = sorted(ops.items(), key=lambda item: item[1][1], reverse=True)[:10]
    layout = {k: v for k, v in ops.items() if v[0] in LAYOUT_OPS}
    requant = {k: v for k, v in ops.items() if v[0] in REQUANTIZE_OPS}
    coverage = ops_ms / e2e_ms if e2e_ms > 0 else None
    return {
        "p50_ms": round(p50, 4), "e2e_source": source, "ops_p50_ms": round(ops_ms, 4), "ops_statistic": statistic,
        "coverage": round(coverage, 3) if coverage is not None else None, "runs": int(runs),
        "outside_ops": {"ms": round(e2e_ms - ops_ms, 4),
                        "share": round(1 - coverage, 3) if coverage is not None else None},
        "by_type": {k: round(v, 4) for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])},
        "slowest": [{"op": name, "type": kind, "ms": round(ms, 4), **({"kernel": kernel} if kernel else {})}
                    for name, (kind, ms, kernel) in slowest],
        "layout_ops": {"count": len(layout), "ms": round(sum(v[1] for v in layout.values()), 4)},
        "requantize_ops": {"count": len(requant), "ms": round(sum(v[1] for v in requant.values()), 4)},
        "ops": {name: (kind, ms) for name, (kind, ms, _) in ops.items()},
    }


PROFILERS = {"onnxruntime": _onnx, "openvino": _openvino, "tflite": _tflite}


def profile(runtime: str, path: Path, x: np.ndarray, threads: int | None = None,
            cuts: dict[str, int] | None = None) -> dict:
    """One file's per-operator figures on this machine's CPU, at the batch of ``x`` (bench's is 1); ``cuts``
    (block -> the tensor index that ends it) names a TFLite file's operators after their blocks and sums
    them by block."""
    if runtime not in PROFILERS:
        raise ValueError(f"no operator profiler for runtime {runtime!r} (known: {', '.join(PROFILERS)})")
    x = np.ascontiguousarray(x, np.float32)
    if runtime == "tflite":
        return _tflite(Path(path), x, threads, cuts)
    return PROFILERS[runtime](Path(path), x, threads)
