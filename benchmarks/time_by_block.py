"""``edgeres diagnose``'s time-by-block table, repeated: how steady each file's block times are, and how a
TFLite file's (the differences of the p50s of the file's first operators: LiteRT has no operator profiler)
sit beside the ONNX and OpenVINO files' (their profilers' operator times summed by block).

    taskset -c 1 python benchmarks/time_by_block.py --workspace WS [--threads 1] [--repeats 3]

The workspace's newest export per format and precision of one model are diagnosed ``--repeats`` times through
the library call ``edgeres diagnose`` makes (8 test images, no keep-float trial, no placement), one thread per
runtime. Per file: the end-to-end p50 and every block's time in each repeat, their median, and the spread
(max - min) of each block over the repeats. For a TFLite file, whose p50 comes from the rounds in which its
prefixes run in turn, also the file's p50 run alone as bench runs it (``p50_alone_ms``, on a zeros image),
to show what running the prefixes in turn costs each. JSON to benchmarks/results/time_by_block.json. Pin it (taskset):
on a shared machine the load average is recorded, not controlled.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workspace_args  # noqa: E402
from results_file import write  # noqa: E402


def main() -> None:
    parser = workspace_args.parser(__doc__)
    args = workspace_args.parse(parser)

    from edgeres.diagnose.step import DiagnoseRequest, run_diagnose
    from edgeres.workspace import Workspace

    ws = Workspace(args.workspace)
    files: dict[str, dict] = {}
    loads = []
    report = None
    for repeat in range(args.repeats):
        before = os.getloadavg()
        report = run_diagnose(DiagnoseRequest(images=8, recover=0, placement=False, threads=args.threads),
                              ws).report
        loads.append({"before": [round(v, 2) for v in before], "after": [round(v, 2) for v in os.getloadavg()]})
        for f in report["latency"]["files"]:
            entry = files.setdefault(f["artifact"], {"file": f"{f['format']} {f['precision']}",
                                                     "artifact": f["artifact"], "source": _source(f),
                                                     "p50_ms": [], "by_block": []})
            entry["p50_ms"].append(f["p50_ms"])
            if f["format"] == "tflite":
                entry.setdefault("p50_alone_ms", []).append(_alone(ws.resolve(f["artifact"]), args.threads))
            entry["by_block"].append(f.get("by_block") or {})
            print(f"repeat {repeat}: {entry['file']}: p50 {f['p50_ms']} ms", file=sys.stderr)
    for entry in files.values():
        blocks = list(dict.fromkeys(b for r in entry["by_block"] for b in r))
        entry["block_median_ms"] = {b: round(float(np.median([r[b] for r in entry["by_block"] if b in r])), 4)
                                    for b in blocks}
        entry["block_spread_ms"] = {b: round(max(r[b] for r in entry["by_block"] if b in r)
                                             - min(r[b] for r in entry["by_block"] if b in r), 4) for b in blocks}
        entry["negative_block_times"] = sum(1 for r in entry["by_block"] for v in r.values() if v < 0)
    path = write("time_by_block", {
        "model": report["model"], "data": f"{report['dataset']} (latency: its first test image, batch 1)",
        "input_size": report["input_size"], "threads": args.threads, "repeats": args.repeats,
        "cpu_affinity": sorted(os.sched_getaffinity(0)), "load_average": loads,
        "note": "time by block as edgeres diagnose reports it on this CPU; the machine may be shared "
                "(load_average per repeat)",
        "files": list(files.values())})
    print(path)


def _alone(export, threads: int) -> float:
    """The TFLite file's p50, run alone (no prefixes) as the profile job runs each."""
    from edgeres.preprocessing import Preprocessing
    from edgeres.runtimes.opprofile import _tflite_alone

    m = export.manifest
    x = np.zeros(Preprocessing.from_dict(m["preprocessing"]).input_shape(1), np.float32)
    return round(float(np.median(_tflite_alone(export.file(m["file"]), x, threads))), 4)


def _source(f: dict) -> str:
    return f"{f.get('ops_statistic', 'profiler')}: operator times summed by block"


if __name__ == "__main__":
    main()
