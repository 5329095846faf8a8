"""How far apart two interpreters of the same TFLite file run: the error bar of TFLite's time per operator,
which takes each operator's time as the difference of two prefixes, each an interpreter of its own.

    taskset -c 1 python benchmarks/tflite_instances.py --workspace WS [--threads 1] [--repeats 3] [--instances 4]

The workspace's newest TFLite export per precision; ``--instances`` interpreters of each file (half loaded
from the file, half from its bytes, as the prefixes are), all run in rounds taken in turn as the prefixes
are (``opprofile._tflite_in_turn``), ``--repeats`` times with fresh interpreters. Per file and repeat: each
interpreter's p50 and the spread (max - min) / min. JSON to benchmarks/results/tflite_instances.json.
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
    parser.add_argument("--instances", type=int, default=4)
    args = workspace_args.parse(parser)

    from edgeres.preprocessing import Preprocessing
    from edgeres.runtimes.opprofile import _tflite_in_turn
    from edgeres.workspace import Workspace

    ws = Workspace(args.workspace)
    newest = workspace_args.newest_exports(ws, "tflite")
    files = []
    for precision, export in newest.items():
        path = export.file(export.manifest["file"])
        x = np.zeros(Preprocessing.from_dict(export.manifest["preprocessing"]).input_shape(1), np.float32)
        entry = {"file": f"tflite {precision}", "artifact": export.id, "repeats": []}
        for _ in range(args.repeats):
            models = {f"{'bytes' if i % 2 else 'path'} {i}": path.read_bytes() if i % 2 else path
                      for i in range(args.instances)}
            p50 = {name: round(float(np.median(t)), 4) for name, t in _tflite_in_turn(models, x, args.threads).items()}
            entry["repeats"].append({"p50_ms": p50, "spread": round((max(p50.values()) - min(p50.values()))
                                                                    / min(p50.values()), 4),
                                     "load_average": [round(v, 2) for v in os.getloadavg()]})
            print(f"tflite {precision}: {p50}", file=sys.stderr)
        files.append(entry)
    write("tflite_instances", {
        "model": next(iter(newest.values())).manifest["model"], "data": "a zeros image, batch 1",
        "input_size": list(x.shape), "threads": args.threads, "repeats": args.repeats,
        "instances": args.instances, "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "note": "interpreters of one file side by side, run in turn as edgeres diagnose runs a TFLite file's "
                "prefixes", "files": files})


if __name__ == "__main__":
    main()
