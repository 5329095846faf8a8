"""PTQ / QAT accuracy and speed on the full Fashion-MNIST test set, beside onnxruntime's quantizer.

    python benchmarks/quantize_ptq.py --workspace WS [--model resnet18] [--estimators default,minmax,...] [--qat]

Needs (or trains) the model's FP32 checkpoint in WS. For every range estimator: PTQ wall time (NNCF's
calibration pass included, evaluation excluded) and the test top-1 drop against FP32. The peer,
onnxruntime's ``quantize_static`` (QDQ, per-channel s8 weights, u8 activations, after
``quant_pre_process``), quantizes the same BN-folded FP32 model with the same calibration images and is
evaluated with onnxruntime on the same test set. Prints a Markdown table; JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import platform
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
from edgeres.train import TrainConfig, TrainRequest, load_fp32, run_train, set_threads
from edgeres.workspace import Workspace


def ort_peer(folded: torch.nn.Module, calib: np.ndarray, test_x: np.ndarray, prep: Preprocessing) -> tuple[float, float]:
    """onnxruntime static quantization of the same model: (seconds, logits)."""
    import onnxruntime as ort

    from edgeres.export.onnx import torch_to_onnx

    with tempfile.TemporaryDirectory() as tmp:
        fp32, q = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        torch_to_onnx(folded, fp32, prep.input_shape(1))
        start = time.perf_counter()
        quantize_static(fp32, q, calib)
        seconds = time.perf_counter() - start
        session = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
        logits = np.concatenate([session.run(None, {"input": test_x[i:i + 256]})[0] for i in range(0, len(test_x), 256)])
    return seconds, logits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--estimators", default="default,minmax,mean-minmax,percentile,mse")
    parser.add_argument("--calib-samples", type=int, default=300)
    parser.add_argument("--qat", action="store_true", help="also run QAT (1 epoch) through the quantize step")
    args = parser.parse_args()
    set_threads()
    ws = Workspace(args.workspace)
    source = ws.latest("train", model=args.model, dataset="fashion-mnist") or run_train(
        TrainRequest(model=args.model, config=TrainConfig()), ws)
    prep = Preprocessing.from_dict(source.manifest["preprocessing"])
    folded = fold_batchnorm(load_fp32(source))
    calib, _ = data.as_tensors(data.load_split("fashion-mnist", "train", prep, limit=args.calib_samples))
    test_x, test_y = data.as_tensors(data.load_split("fashion-mnist", "test", prep))
    y = test_y.numpy()
    fp32_logits = logits_of(folded, test_x)
    fp32 = top1(fp32_logits, y)
    rows = []
    for estimator in args.estimators.split(","):
        start = time.perf_counter()
        model = engine.ptq(folded, calib, estimator)
        seconds = time.perf_counter() - start
        logits = logits_of(model, test_x)
        rows.append({"method": f"edgeres PTQ (NNCF, {estimator})", "seconds": seconds, "top1": top1(logits, y),
                     "agreement": float((logits.argmax(1) == fp32_logits.argmax(1)).mean() * 100)})
    seconds, logits = ort_peer(folded, calib.numpy(), test_x.numpy(), prep)
    rows.append({"method": "onnxruntime quantize_static (QDQ, per-channel, u8/s8)", "seconds": seconds,
                 "top1": top1(logits, y), "agreement": float((logits.argmax(1) == fp32_logits.argmax(1)).mean() * 100)})
    if args.qat:
        start = time.perf_counter()
        qat = run_quantize(QuantizeRequest(model=source.id, qat=True, epochs=1), ws)
        m = qat.manifest["metrics"]
        rows.append({"method": "edgeres QAT (1 epoch, from PTQ)", "seconds": time.perf_counter() - start,
                     "top1": m["int8"]["test_top1"], "agreement": m["agreement_with_fp32"]})
    print(f"\n{args.model} / Fashion-MNIST, {len(y)} test images, FP32 top-1 {fp32:.2f}%, "
          f"{args.calib_samples} calibration images, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads\n")
    print("| method | int8 top-1 % | drop (pp) | agreement with FP32 % | wall s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['top1']:.2f} | {fp32 - r['top1']:+.2f} | {r['agreement']:.2f} | {r['seconds']:.1f} |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"quantize_{args.model}.json").write_text(json.dumps({"fp32": fp32, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
