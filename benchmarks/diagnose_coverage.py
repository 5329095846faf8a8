"""Whether ``edgeres diagnose``'s per-operator times add up to each file's end-to-end time (issue 18: within
10 % of the runtime's own p50), and what the rest is.

    taskset -c 1 python benchmarks/diagnose_coverage.py --workspace WS [--artifact ID ...] [--threads 1]
        [--repeats 3]

Each exported ONNX and OpenVINO file of the workspace (the newest per format and precision, or the
``--artifact`` ids) is profiled by ``edgeres.diagnose.oplatency.profile_files``, exactly as ``edgeres
diagnose`` does, ``--repeats`` times, the files interleaved. Per file and repeat: the end-to-end p50, the
operator sum, ``coverage`` and the time outside operators as the report gives them, and the load average
before and after. Beside them, to tell the profiler's own cost from the runtime's:

- the profiler's own cost: two more sessions of the file, profiler on and off, run in turn (onnxruntime:
  wall time around ``session.run``; OpenVINO: the request's ``latency``, ``PERF_COUNT`` on and off), p50 of
  each;
- for OpenVINO, the previous bookkeeping (before the counters were read as running averages): the p50 of the
  per-run sums of ``get_profiling_info()``'s ``EXECUTED`` ``real_time`` against the latency p50.

JSON to benchmarks/results/diagnose_coverage.json. Pin it (taskset) and give the thread count: on a shared
machine the load average is recorded, not controlled.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workspace_args  # noqa: E402
from results_file import write  # noqa: E402

RUNS = 200


def _profiler_cost(fmt: str, path: Path, x: np.ndarray, threads: int) -> dict:
    """p50 ms of the file with the profiler on and off, two sessions (compiled models) of it run in turn:
    onnxruntime wall time around ``session.run``, OpenVINO the request's ``latency``."""
    times: dict[bool, list[float]] = {True: [], False: []}
    if fmt == "onnx":
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="edgeres-bench-") as tmp:
            runners = {}
            for profiled in (True, False):
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
                if profiled:
                    options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "ort")
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                feed = {session.get_inputs()[0].name: x}
                runners[profiled] = (lambda s, f: lambda: s.run(None, f))(session, feed)
            for _ in range(RUNS + 5):
                for profiled, run in runners.items():
                    t = time.perf_counter()
                    run()
                    times[profiled].append((time.perf_counter() - t) * 1000)
            source = "wall time around session.run"
    else:
        import openvino as ov

        core, requests = ov.Core(), {}
        for profiled in (True, False):
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": profiled,
                      "INFERENCE_NUM_THREADS": threads}
            requests[profiled] = core.compile_model(str(path), "CPU", config).create_infer_request()
        for _ in range(RUNS + 5):
            for profiled, request in requests.items():
                request.infer({0: x})
                times[profiled].append(request.latency)
        source = "request latency"
    return {"profiled_p50_ms": round(float(np.median(times[True][5:])), 4),
            "unprofiled_p50_ms": round(float(np.median(times[False][5:])), 4), "source": source,
            "runs": RUNS}


def _openvino_previous(path: Path, x: np.ndarray, threads: int) -> dict:
    """The bookkeeping before this change: each run's sum of EXECUTED real_time, p50 against latency p50."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True,
              "INFERENCE_NUM_THREADS": threads}
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    sums, latencies = [], []
    for i in range(RUNS + 5):
        request.infer({0: x})
        if i >= 5:
            sums.append(sum(p.real_time.total_seconds() * 1000 for p in request.get_profiling_info()
                            if p.status == p.Status.EXECUTED))
            latencies.append(request.latency)
    ops, p50 = float(np.median(sums)), float(np.median(latencies))
    return {"p50_ms": round(p50, 4), "ops_p50_ms": round(ops, 4), "coverage": round(ops / p50, 3)}


def main() -> None:
    parser = workspace_args.parser(__doc__)
    parser.add_argument("--artifact", action="append", default=[], help="Export artifact ids (default: the "
                        "newest ONNX and OpenVINO export per precision)")
    args = workspace_args.parse(parser)

    from edgeres import devices
    from edgeres.diagnose.oplatency import profile_files
    from edgeres.export.formats import FORMATS
    from edgeres.preprocessing import Preprocessing
    from edgeres.workspace import Workspace

    ws = Workspace(args.workspace)
    exports = [a for a in ws.artifacts() if a.kind == "export" and a.manifest["format"] in ("onnx", "openvino")]
    if args.artifact:
        exports = [next(a for a in exports if a.id == wanted) for wanted in args.artifact]
    else:
        newest: dict = {}
        for a in sorted(exports, key=lambda a: a.id):
            newest[(a.manifest["format"], a.manifest["precision"])] = a
        exports = list(newest.values())
    affinity = sorted(os.sched_getaffinity(0))
    files: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for export in exports:
            m = export.manifest
            entry = files.setdefault(export.id, {"artifact": export.id, "file": f"{m['format']} {m['precision']}",
                                                 "parent": m.get("parent"), "repeats": []})
            path = FORMATS[m["format"]].runnable_here(export.file(m["file"]))
            x = np.zeros(Preprocessing.from_dict(m["preprocessing"]).input_shape(1), np.float32)
            load_before = os.getloadavg()
            [f] = profile_files([export], profile=devices.get("cpu"), threads=args.threads, points=[],
                                image=x)["files"]
            row = {k: f.get(k) for k in ("p50_ms", "ops_p50_ms", "ops_statistic", "coverage", "outside_ops",
                                         "e2e_mean_ms", "ops_mean_ms", "ops_undercount_max_ms", "runs")}
            row["profiler_on_off"] = _profiler_cost(m["format"], path, x, args.threads)
            if m["format"] == "openvino":
                row["previous_bookkeeping"] = _openvino_previous(path, x, args.threads)
            row["load_average"] = {"before": [round(v, 2) for v in load_before],
                                   "after": [round(v, 2) for v in os.getloadavg()]}
            entry["repeats"].append(row)
            print(f"repeat {repeat}: {entry['file']}: coverage {row['coverage']} "
                  f"(ops {row['ops_p50_ms']} of {row.get('e2e_mean_ms') if m['format'] == 'openvino' else row['p50_ms']}"
                  f" ms), load {load_before[0]:.2f}", file=sys.stderr)
    for entry in files.values():
        entry["coverage_median"] = float(np.median([r["coverage"] for r in entry["repeats"]]))
        entry["outside_share_median"] = float(np.median([r["outside_ops"]["share"] for r in entry["repeats"]]))
    manifest = next(iter(files.values()))
    m0 = ws.resolve(manifest["artifact"]).manifest
    path = write("diagnose_coverage", {
        "model": m0["model"], "data": m0["dataset"] + " (latency input: zeros, batch 1)",
        "input_size": list(Preprocessing.from_dict(m0["preprocessing"]).input_shape(1)),
        "threads": args.threads, "cpu_affinity": affinity, "repeats": args.repeats,
        "note": "threads per runtime as given; the process pinned to the CPUs in cpu_affinity; the machine "
                "shared with other work (load_average per file and repeat)",
        "files": list(files.values())})
    print(path)


if __name__ == "__main__":
    main()
