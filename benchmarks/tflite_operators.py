"""TFLite time per operator, as ``edgeres diagnose`` measures it (the differences of the p50s of the file's
first k operators, all prefixes run in turn on XNNPACK: ``edgeres/runtimes/opprofile.py``), repeated: how
steady each operator's time is, whether convolutions of the same shape (filter and output) come out with
about the same time (a check that needs no second profiler), and how the file's p50 among its prefixes
compares with its p50 run alone.

    taskset -c 1 python benchmarks/tflite_operators.py --workspace WS [--threads 1] [--repeats 3]

The workspace's newest TFLite export per precision of one model; the operators are named after their blocks
as diagnose names them. JSON to benchmarks/results/tflite_operators.json. Pin it (taskset): on a shared
machine the load average is recorded, not controlled.
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

    from edgeres.diagnose.oplatency import _cuts
    from edgeres.diagnose.points import find_points
    from edgeres.preprocessing import Preprocessing
    from edgeres.runtimes.opprofile import _tflite_alone, profile
    from edgeres.train import load_fp32
    from edgeres.workspace import Workspace, fp32_root

    ws = Workspace(args.workspace)
    index = {a.id: a for a in ws.artifacts()}
    newest = workspace_args.newest_exports(ws, "tflite")
    files = []
    for precision, export in newest.items():
        m = export.manifest
        path = export.file(m["file"])
        pre = Preprocessing.from_dict(m["preprocessing"])
        x = np.zeros(pre.input_shape(1), np.float32)
        points = find_points(load_fp32(fp32_root(export, index)))
        cuts = _cuts(path, points)
        entry = {"file": f"tflite {precision}", "artifact": export.id, "repeats": []}
        for repeat in range(args.repeats):
            before = os.getloadavg()
            found = profile("tflite", path, x, args.threads, cuts=cuts)
            alone = _tflite_alone(path, x, args.threads)
            entry["repeats"].append({
                "p50_ms": found["p50_ms"], "p50_alone_ms": round(float(np.median(alone)), 4),
                "ops_sum_ms": found["ops_p50_ms"], "call_ms": found["outside_ops"]["ms"], "runs": found["runs"],
                "ops": {name: round(ms, 4) for name, (_, ms) in found["ops"].items()},
                "load_average": {"before": [round(v, 2) for v in before],
                                 "after": [round(v, 2) for v in os.getloadavg()]}})
            print(f"repeat {repeat}: tflite {precision}: p50 {found['p50_ms']} ms, alone "
                  f"{entry['repeats'][-1]['p50_alone_ms']} ms", file=sys.stderr)
        entry["statistic"] = found["ops_statistic"]
        entry["operators"] = _operators(path, entry["repeats"])
        entry["same_shaped_convolutions"] = _same_shapes(entry["operators"])
        entry["convolution_share_of_ops_sum"] = round(
            sum(o["median_ms"] for o in entry["operators"] if o["type"] == "CONV_2D")
            / sum(o["median_ms"] for o in entry["operators"]), 3)
        files.append(entry)
    write("tflite_operators", {
        "model": next(iter(newest.values())).manifest["model"],
        "data": "a zeros image, batch 1", "input_size": list(x.shape), "threads": args.threads,
        "repeats": args.repeats, "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "note": "TFLite operator times as edgeres diagnose reports them on this CPU; the machine may be shared "
                "(load_average per repeat)", "files": files})


def _shapes(path: Path) -> dict[int, str]:
    """Operator index -> "filter -> output" shapes of each CONV_2D."""
    from edgeres.runtimes.taps import tflite_interpreter

    interpreter = tflite_interpreter(path, 1)
    shapes = {t["index"]: "x".join(str(int(v)) for v in t["shape"]) for t in interpreter.get_tensor_details()}
    return {i: f"{shapes[int(op['inputs'][1])]} -> {shapes[int(op['outputs'][0])]}"
            for i, op in enumerate(interpreter._get_ops_details()) if op["op_name"] == "CONV_2D"}  # noqa: SLF001


def _operators(path: Path, repeats: list[dict]) -> list[dict]:
    """Per operator: its median time over the repeats, the spread (max - min), a convolution's shapes."""
    shapes = _shapes(path)
    rows = []
    for index, name in enumerate(repeats[0]["ops"]):
        times = [r["ops"][name] for r in repeats]
        rows.append({"op": name, "type": name.split()[-1].split("#")[0], "median_ms": round(float(np.median(times)), 4),
                     "spread_ms": round(max(times) - min(times), 4),
                     **({"shapes": shapes[index]} if index in shapes else {})})
    return rows


def _same_shapes(operators: list[dict]) -> list[dict]:
    """Convolutions grouped by shape (two or more): their median times and (max - min) / median."""
    groups: dict[str, list[dict]] = {}
    for o in operators:
        if "shapes" in o:
            groups.setdefault(o["shapes"], []).append(o)
    return [{"shapes": shape, "ops": [o["op"] for o in ops], "median_ms": [o["median_ms"] for o in ops],
             "relative_range": round((max(o["median_ms"] for o in ops) - min(o["median_ms"] for o in ops))
                                     / float(np.median([o["median_ms"] for o in ops])), 3)}
            for shape, ops in groups.items() if len(ops) > 1]


if __name__ == "__main__":
    main()
