"""Whether reading a file's intermediate tensors changes what the file computes (``edgeres diagnose``'s
layer comparison rests on it).

    python benchmarks/point_taps.py --workspace WS [--images 64] [--threads 1]

For the newest int8 ONNX and OpenVINO files of the workspace, on the first ``--images`` test images: every
point's tensor (stem, each convolution's output, each block's output) made an output of the file, all at once
and each alone (beside the logits only), each against the torch int8 model it came from (SQNR, dB); and the
logits of the file with every point made an output against the file's own (SQNR, top-1 agreement). A runtime
whose fusions the extra outputs break shows it in both. For OpenVINO int8, ``edgeres diagnose`` reads each
point alone (``runtimes.taps.openvino_tensors``); the all-at-once figures come from the same taps made outputs
together. Seconds: wall time of each way of reading. JSON to benchmarks/results/point_taps.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workspace_args  # noqa: E402
from results_file import write  # noqa: E402


def _read(fmt: str, path: Path, points: list, x, threads: int, together: bool) -> dict:
    """The points' tensors with every one an output of one session (``together``) or each in a session of
    its own beside the logits."""
    import openvino as ov

    from edgeres.diagnose import taps_onnx, taps_openvino
    from edgeres.runtimes.taps import _openvino_run, onnx_tensors

    if fmt == "onnx":
        if together:
            model, names = taps_onnx._tapped(path, points)
            return onnx_tensors(model.SerializeToString(), names, x, threads)
        found = {}
        for point in points:
            model, names = taps_onnx._tapped(path, [point, points[-1]] if point is not points[-1] else [point])
            found.update(onnx_tensors(model.SerializeToString(), {point.name: names[point.name]}, x, threads))
        return found
    if together:
        model, outputs = taps_openvino._tapped(path, points)
        return _openvino_run(ov.Core(), model, outputs, x, threads)
    return taps_openvino.taps(path, points, x, threads)  # each alone: what diagnose does with an int8 IR


def main() -> None:
    parser = workspace_args.parser(__doc__)
    parser.add_argument("--images", type=int, default=64)
    args = workspace_args.parse(parser)

    from edgeres import data
    from edgeres.diagnose import metrics
    from edgeres.diagnose.points import LOGITS, find_points, torch_taps
    from edgeres.preprocessing import Preprocessing
    from edgeres.quantize.fold import fold_batchnorm
    from edgeres.quantize.step import load_quantized
    from edgeres.train import load_fp32, set_threads
    from edgeres.workspace import Workspace, fp32_root

    set_threads(args.threads)
    ws = Workspace(args.workspace)
    index = {a.id: a for a in ws.artifacts()}
    files = []
    for fmt in ("onnx", "openvino"):
        export = workspace_args.newest_exports(ws, fmt, ("int8",))["int8"]
        root = fp32_root(export, index)
        points = find_points(fold_batchnorm(load_fp32(root)))
        prep = Preprocessing.from_dict(root.manifest["preprocessing"])
        x, _ = data.as_tensors(data.source_of(root.manifest).load("test", prep, args.images))
        x = x.numpy()
        reference = torch_taps(load_quantized(ws.resolve(export.manifest["parent"])), points, x)
        path = export.file(export.manifest["file"])
        read, seconds = {}, {}
        for way in ("together", "alone"):
            start = time.perf_counter()
            read[way] = _read(fmt, path, points, x, args.threads, together=way == "together")
            seconds[way] = round(time.perf_counter() - start, 2)
        rows = [{"point": p.name, "kind": p.kind,
                 **{f"sqnr_{way}_db": metrics.compare(reference[p.name], read[way][p.name])["sqnr_db"]
                    for way in read}} for p in points]
        logits = metrics.compare(read["alone"][LOGITS], read["together"][LOGITS])
        files.append({
            "file": f"{fmt} int8", "artifact": export.id, "points": len(points) - 1, "seconds": seconds,
            "logits_together_vs_file": {"sqnr_db": logits["sqnr_db"], "max_abs_diff": logits["max_abs_diff"],
                                        "agreement": round(metrics.agreement(read["together"][LOGITS],
                                                                             read["alone"][LOGITS]), 3)},
            "largest_gap_db": max(abs(r["sqnr_together_db"] - r["sqnr_alone_db"]) for r in rows),
            "rows": rows})
        print(f"{fmt} int8: logits with every point read {logits['sqnr_db']} dB from the file's own; largest "
              f"gap of a point {files[-1]['largest_gap_db']:.2f} dB", file=sys.stderr)
    model = index[files[0]["artifact"]].manifest["model"]
    print(write("point_taps", {"model": model, "data": "test split of the workspace's dataset",
                               "input_size": prep.input_size, "threads": args.threads, "images": len(x),
                               "workspace": str(args.workspace), "files": files}))


if __name__ == "__main__":
    main()
