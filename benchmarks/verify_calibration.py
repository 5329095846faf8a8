"""Calibrates export verification: the logit error of correct int8 files against files with one layer broken.

    python benchmarks/verify_calibration.py --workspace WS [--workspace WS2 ...] [--images 300]
        [--corrupt 1.5,2,8]

For every int8 export artifact in the workspaces (each verified against the torch int8 model it came
from, on the first N test images of its lineage): top-1 agreement, logit SQNR, flips, and flips within
the tie band (``edgeres.export.verify``). Then, for each ONNX int8 file, copies with the weight scale of
one conv (early, middle, late) multiplied by each factor: what verification says of a broken file. The
threshold ``INT8_MIN_SQNR_DB`` must lie between the two groups. Raw output to
benchmarks/results/verify_calibration.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from edgeres.export.step import ExportRequest, Sources
from edgeres.export.verify import INT8_MIN_SQNR_DB, THRESHOLDS, compare, passes
from edgeres.runtimes import open_session
from edgeres.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402


def scale_one_weight(src: Path, dst: Path, position: float, factor: float) -> str:
    """Copy an ONNX QDQ file with the scale of one int8 weight (at ``position`` in 0..1 of the network)
    multiplied by ``factor``; returns the DequantizeLinear's name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    inits = {i.name: i for i in model.graph.initializer}
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    node = weights[min(int(position * len(weights)), len(weights) - 1)]
    scale = inits[node.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * factor, scale.name))
    onnx.save(model, dst)
    return node.name


def measure(path: Path, runtime: str, x, y, reference) -> dict:
    result = compare(open_session(path, runtime).run_batched(x), reference, y)
    result["passes_agreement_alone"] = result["agreement"] >= THRESHOLDS["int8"]
    result["passes"] = passes(result, "int8")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, action="append", required=True)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--corrupt", default="1.5,2,8")
    args = parser.parse_args()
    correct, broken = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for root in args.workspace:
            ws = Workspace(root)
            for art in ws.artifacts("export"):
                m = art.manifest
                if m.get("precision") != "int8" or not (art.path / m["file"]).is_file():
                    continue
                quantized = ws.resolve(m["parent"])
                src = Sources(ws, quantized, ExportRequest(targets=[m["format"]], verify_limit=args.images), Path(tmp))
                x, y = src.verify_data
                reference = src.reference("int8")
                fp32_top1 = quantized.manifest["metrics"]["fp32"]["test_top1"]
                try:
                    row = measure(art.path / m["file"], m["runtime"], x, y, reference)
                except Exception as exc:  # e.g. a file compiled for the Edge TPU: runs only with its delegate
                    print(f"skipped {art.id}: {str(exc).splitlines()[0][:100]}")
                    continue
                correct.append({"artifact": art.id, "model": m["model"], "format": m["format"],
                                "fp32_test_top1": fp32_top1, **row})
                print(f"correct {m['model']} {m['format']}: agreement {row['agreement']:.2f} %, "
                      f"SQNR {row['sqnr_db']:.1f} dB, flips {row['flipped']} ({row['flipped_near_ties']} near-ties)")
                if m["format"] != "onnx":
                    continue
                for position in (0.1, 0.5, 0.9):
                    for factor in (float(f) for f in args.corrupt.split(",")):
                        copy = Path(tmp) / "broken.onnx"
                        layer = scale_one_weight(art.path / m["file"], copy, position, factor)
                        row = measure(copy, m["runtime"], x, y, reference)
                        broken.append({"artifact": art.id, "model": m["model"], "layer": layer, "factor": factor,
                                       **row})
                        print(f"broken x{factor} {layer}: agreement {row['agreement']:.2f} %, "
                              f"SQNR {row['sqnr_db']:.1f} dB, passes {row['passes']}")
    path = results_file.write("verify_calibration", {
        "workspaces": [str(w) for w in args.workspace], "images": args.images, "data": "each lineage's test split",
        "input_size": "each model's own", "threads": "onnxruntime's, OpenVINO's and LiteRT's defaults",
        "int8_min_sqnr_db": INT8_MIN_SQNR_DB, "correct": correct, "broken": broken,
        "summary": {"correct_sqnr_min": min((r["sqnr_db"] for r in correct), default=None),
                    "correct_failing": sum(not r["passes"] for r in correct),
                    "correct_failing_agreement_alone": sum(not r["passes_agreement_alone"] for r in correct),
                    "broken_sqnr_max": max((r["sqnr_db"] for r in broken), default=None),
                    "broken_passing": sum(r["passes"] for r in broken),
                    "broken_passing_agreement_alone": sum(r["passes_agreement_alone"] for r in broken)}})
    print(f"raw output {path}")


if __name__ == "__main__":
    main()
