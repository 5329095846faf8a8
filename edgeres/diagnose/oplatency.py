"""Where each file spends its time, operator by operator, on this CPU, from the runtimes' own profilers:

- onnxruntime: session profiling (``enable_profiling``): every kernel's time per run (``Node`` events) and
  the runtime's own time of each whole run (``model_run``);
- OpenVINO: performance counters (``PERF_COUNT``): ``get_profiling_info()`` after each run, with the kernel
  each operator ran (``exec_type``, e.g. ``jit_avx512_I8``) and the request's own ``latency``;
- TFLite: LiteRT's Python interpreter has no operator profiler (its C++ ``benchmark_model
  --enable_op_profiling`` has), so TFLite files get their end-to-end p50 only, said so.

Per file: the p50 of the per-run operator sums beside the runtime's own end-to-end p50 (``coverage``: their
ratio), time by operator type and by model block (operators are named after the module that made them),
the slowest operators, and operators that convert layouts at run time (onnxruntime's ``Reorder*``,
OpenVINO's ``Reorder``) or re-quantize outside a fused kernel. Batch 1, as bench measures it. With the CPU's
int8 instructions (``cpu_int8``), which decide whether int8 kernels can be fast here at all.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeres.console import say
from edgeres.workspace import Artifact

WARMUP = 5
MIN_RUNS, MIN_SECONDS = 30, 0.3
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

    with tempfile.TemporaryDirectory(prefix="edgeres-diagnose-") as tmp:
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
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[WARMUP:]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = np.zeros(len(runs))
    ops: dict[tuple[str, str], list[float]] = {}
    starts = np.array([r["ts"] for r in runs])
    for e in nodes:
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i < 0 or e["ts"] > runs[i]["ts"] + runs[i]["dur"]:
            continue  # a warm-up run's
        per_run[i] += e["dur"] / 1000
        key = (e["name"].removesuffix("_kernel_time"), e.get("args", {}).get("op_name", "?"))
        ops.setdefault(key, []).append(e["dur"] / 1000)
    return _summary(per_run, np.array([r["dur"] / 1000 for r in runs]),
                    {name: (kind, float(np.median(t)), "") for (name, kind), t in ops.items()},
                    "onnxruntime profiler (model_run)")


def _openvino(path: Path, x: np.ndarray, threads: int | None) -> dict:
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
    sums, latencies, ops = [], [], {}
    for _ in range(WARMUP):
        request.infer({0: x})
    start = time.perf_counter()
    while len(sums) < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        request.infer({0: x})
        total = 0.0
        for info in request.get_profiling_info():
            ms = info.real_time.total_seconds() * 1000
            if info.status != info.Status.EXECUTED:
                continue
            total += ms
            ops.setdefault(info.node_name, (info.node_type, [], info.exec_type))[1].append(ms)
        sums.append(total)
        latencies.append(request.latency)
    return _summary(np.array(sums), np.array(latencies),
                    {k: (v[0], float(np.median(v[1])), v[2]) for k, v in ops.items()},
                    "OpenVINO infer request latency")


def _tflite(path: Path, x: np.ndarray, threads: int | None) -> dict:
    from edgeres.runtimes.tflite_rt import TFLiteSession

    session = TFLiteSession(path, threads)
    times = []
    for _ in range(WARMUP):
        session.run(x)
    start = time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        t = time.perf_counter()
        session.run(x)
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.median(times)), 4), "e2e_source": "wall clock around the Python call",
            "ops_p50_ms": None, "coverage": None,
            "unavailable": "LiteRT's Python interpreter has no operator profiler; use its C++ benchmark_model "
                           "--enable_op_profiling=true on the device for per-operator times"}


def _block(name: str, blocks: list[str]) -> str:
    """The block an operator belongs to, by its name's scope (``/layer2/layer2.1/...`` -> ``layer2.1``)."""
    for block in blocks:
        parts = block.split(".")
        scope = "/" + "/".join(".".join(parts[:i + 1]) for i in range(len(parts))) + "/"
        if name.startswith(scope):
            return block
    return "(other)"


def _summary(per_run: np.ndarray, e2e: np.ndarray, ops: dict[str, tuple[str, float, str]], source: str) -> dict:
    """One file's figures; ``ops``: name -> (type, median ms per run, kernel). Medians throughout: one run
    that the OS preempted must not weigh on a sum over a hundred runs."""
    by_type: dict[str, float] = {}
    for kind, ms, _ in ops.values():
        by_type[kind] = by_type.get(kind, 0.0) + ms
    slowest = sorted(ops.items(), key=lambda item: item[1][1], reverse=True)[:10]
    layout = {k: v for k, v in ops.items() if v[0] in LAYOUT_OPS}
    requant = {k: v for k, v in ops.items() if v[0] in REQUANTIZE_OPS}
    ops_p50, p50 = float(np.median(per_run)), float(np.median(e2e))
    return {
        "p50_ms": round(p50, 4), "e2e_source": source, "ops_p50_ms": round(ops_p50, 4),
        "coverage": round(ops_p50 / p50, 3) if p50 > 0 else None, "runs": int(len(per_run)),
        "by_type": {k: round(v, 4) for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])},
        "slowest": [{"op": name, "type": kind, "ms": round(ms, 4), **({"kernel": kernel} if kernel else {})}
                    for name, (kind, ms, kernel) in slowest],
        "layout_ops": {"count": len(layout), "ms": round(sum(v[1] for v in layout.values()), 4)},
        "requantize_ops": {"count": len(requant), "ms": round(sum(v[1] for v in requant.values()), 4)},
        "_ops": {name: (kind, ms) for name, (kind, ms, _) in ops.items()},
    }


def profile_files(exports: list[Artifact], *, threads: int | None, blocks: list[str] | None = None) -> dict:
    """Per-operator profiles of each file, int8 beside the same format's fp32 where both are present."""
    from edgeres.export.formats import FORMATS
    from edgeres.preprocessing import Preprocessing

    files = []
    for export in exports:
        m = export.manifest
        fmt = FORMATS[m["format"]]
        path = fmt.runnable_here(export.file(m["file"]))
        x = np.zeros(Preprocessing.from_dict(m["preprocessing"]).input_shape(1), np.float32)
        say(f"profiling {fmt.name} {m['precision']} operator by operator")
        result = {"onnx": _onnx, "openvino": _openvino, "tflite": _tflite}[fmt.name](path, x, threads)
        ops = result.pop("_ops", None)
        if ops and blocks:
            by_block: dict[str, float] = {}
            for name, (_, ms) in ops.items():
                block = _block(name, blocks)
                by_block[block] = by_block.get(block, 0.0) + ms
            result["by_block"] = {b: round(by_block[b], 4) for b in [*blocks, "(other)"] if b in by_block}
        files.append({"artifact": export.id, "format": fmt.name, "precision": m["precision"], **result})
    for f in files:
        twin = next((g for g in files if g["format"] == f["format"] and g["precision"] == "fp32"), None)
        if f["precision"] != "fp32" and twin and twin["p50_ms"] and f["p50_ms"]:
            f["speedup_vs_fp32"] = round(twin["p50_ms"] / f["p50_ms"], 3)
    return {"threads": threads, "batch": 1, "cpu": cpu_int8(), "files": files}
