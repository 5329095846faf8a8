"""PTQ settings chosen on validation images, reported on the test split, beside onnxruntime's quantizer.

    python benchmarks/quantize_ptq.py --workspace WS [--artifact ID] [--estimators default,minmax,...]
        [--bias-corrections none,fast] [--qat]

Takes the newest FP32 ResNet-18 artifact in WS (or --artifact) and the images its lineage records. For
every range estimator and bias correction: PTQ wall time (NNCF's calibration pass included, evaluation
excluded) and the top-1 drop against FP32 on the validation images (held out of training) and on the
test split. The default is the setting with the smallest validation drop (ties within one validation
image go to the simpler setting, listed first); the test figures are reported, never used to choose.
The peer, onnxruntime's ``quantize_static`` (QDQ, per-channel s8 weights, u8 activations, after
``quant_pre_process``), quantizes the same BN-folded FP32 model with the same calibration images.
Prints a Markdown table; raw output to benchmarks/results/quantize_ptq.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ort_peer import quantize_static

from edgeres import data
from edgeres.preprocessing import Preprocessing
from edgeres.quantize import engine
from edgeres.quantize.fold import fold_batchnorm
from edgeres.quantize.sensitivity import logits_of, top1
from edgeres.quantize.step import QuantizeRequest, run_quantize
from edgeres.train import load_fp32, set_threads
from edgeres.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402


def ort_peer(folded: torch.nn.Module, calib: np.ndarray, inputs: dict[str, np.ndarray],
             prep: Preprocessing) -> tuple[float, dict[str, np.ndarray]]:
    """onnxruntime static quantization of the same model, quantized once: (seconds, logits per input set)."""
    import onnxruntime as ort

    from edgeres.export.onnx import torch_to_onnx

    with tempfile.TemporaryDirectory() as tmp:
        fp32, q = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        torch_to_onnx(folded, fp32, prep.input_shape(1))
        start = time.perf_counter()
        quantize_static(fp32, q, calib)
        seconds = time.perf_counter() - start
        session = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
        logits = {name: np.concatenate([session.run(None, {"input": x[i:i + 256]})[0] for i in range(0, len(x), 256)])
                  for name, x in inputs.items()}
    return seconds, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--artifact", help="the FP32 artifact (default: the newest resnet18 train artifact)")
    parser.add_argument("--estimators", default="default,minmax,mean-minmax,percentile,mse")
    parser.add_argument("--bias-corrections", default="none,fast")
    parser.add_argument("--calib-samples", type=int, default=300)
    parser.add_argument("--qat", action="store_true", help="also QAT (1 epoch) through the quantize step")
    args = parser.parse_args()
    set_threads()
    ws = Workspace(args.workspace)
    source = ws.resolve(args.artifact) if args.artifact else ws.latest("train", model="resnet18")
    if source is None:
        raise SystemExit(f"no FP32 resnet18 artifact in {ws.root}: run benchmarks/train_fp32.py first")
    prep = Preprocessing.from_dict(source.manifest["preprocessing"])
    images = data.source_of(source.manifest)
    folded = fold_batchnorm(load_fp32(source))
    calib, _ = data.as_tensors(images.load("train", prep, args.calib_samples))
    split = {name: data.as_tensors(images.load(name, prep)) for name in ("val", "test")}
    labels = {name: y.numpy() for name, (_, y) in split.items()}
    fp32_logits = {name: logits_of(folded, x) for name, (x, _) in split.items()}
    fp32 = {name: top1(fp32_logits[name], labels[name]) for name in split}

    def row(method: str, seconds: float, logits: dict, **setting) -> dict:
        return {"method": method, **setting, "seconds": round(seconds, 2),
                **{f"{name}_top1": top1(logits[name], labels[name]) for name in split},
                **{f"{name}_drop_pp": round(fp32[name] - top1(logits[name], labels[name]), 3) for name in split},
                "test_agreement_with_fp32": float((logits["test"].argmax(1) == fp32_logits["test"].argmax(1))
                                                  .mean() * 100)}

    rows = []
    for estimator in args.estimators.split(","):
        for bias in args.bias_corrections.split(","):
            start = time.perf_counter()
            model = engine.ptq(folded, calib, estimator, bias)
            seconds = time.perf_counter() - start
            rows.append(row("edgeres PTQ (NNCF)", seconds, {n: logits_of(model, x) for n, (x, _) in split.items()},
                            estimator=estimator, bias_correction=bias))
            print(f"{estimator} / bias correction {bias}: val drop {rows[-1]['val_drop_pp']:+.2f} pp, "
                  f"{seconds:.1f} s", flush=True)
    one_image = 100 / len(labels["val"])
    best = min(r["val_drop_pp"] for r in rows)
    chosen = next(r for r in rows if r["val_drop_pp"] <= best + one_image)
    chosen["chosen_on_val"] = True
    seconds, peer = ort_peer(folded, calib.numpy(), {name: x.numpy() for name, (x, _) in split.items()}, prep)
    rows.append(row("onnxruntime quantize_static (QDQ, per-channel, u8/s8)", seconds, peer))
    if args.qat:
        start = time.perf_counter()
        qat = run_quantize(QuantizeRequest(model=source.id, method="qat", epochs=1, estimator=chosen["estimator"],
                                           bias_correction=chosen["bias_correction"]), ws)
        m = qat.manifest["metrics"]
        rows.append({"method": "edgeres QAT (1 epoch, from the chosen PTQ)", "seconds": time.perf_counter() - start,
                     "val_top1": m["int8"]["val_top1"], "test_top1": m["int8"]["test_top1"],
                     # the quantize step decides on its own val subset (--val-limit): the drop is against
                     # the FP32 model on those images
                     "val_images": "the quantize step's val subset",
                     "val_drop_pp": round(m["fp32"]["val_top1"] - m["int8"]["val_top1"], 3),
                     "test_drop_pp": round(fp32["test"] - m["int8"]["test_top1"], 3),
                     "qat_history": m["qat_history"], "artifact": qat.id})
    path = results_file.write("quantize_ptq", {
        "model": source.manifest["model"], "artifact": source.id, "data": source.manifest["data"],
        "input_size": prep.input_size, "threads": torch.get_num_threads(), "calibration_images": len(calib),
        "val_images": len(labels["val"]), "test_images": len(labels["test"]),
        "fp32": {"val_top1": fp32["val"], "test_top1": fp32["test"]}, "rows": rows,
        "chosen_on_val": {"estimator": chosen["estimator"], "bias_correction": chosen["bias_correction"]}})
    print(f"\n{source.manifest['model']}: FP32 val {fp32['val']:.2f} % ({len(labels['val'])} images), test "
          f"{fp32['test']:.2f} % ({len(labels['test'])}); {len(calib)} calibration images; "
          f"{torch.get_num_threads()} threads; raw output {path}\n")
    print("| method | estimator | bias correction | val drop (pp) | test drop (pp) | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mark = " (chosen on val)" if r.get("chosen_on_val") else ""
        print(f"| {r['method']}{mark} | {r.get('estimator', '-')} | {r.get('bias_correction', '-')} | "
              f"{r['val_drop_pp']:+.2f} | {r['test_drop_pp']:+.2f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
