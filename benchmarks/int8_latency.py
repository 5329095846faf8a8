"""int8 vs fp32 latency per runtime, and our int8 files against the peers' own int8 paths.

    python benchmarks/int8_latency.py [--models resnet18,resnet50] [--size 224] [--threads 2] [--rounds 10]

Random weights (latency does not depend on them) at ImageNet size, batch 1. For each model the same
BN-folded FP32 network is quantized by:
- edgeres: NNCF PTQ -> our ONNX QDQ (int8 weights) -> onnxruntime; the same QDQ -> OpenVINO IR;
  our TFLite full-integer int8 (onnx2tf + TFLite converter);
- peers: onnxruntime ``quantize_static`` (QDQ, per-channel s8 weights, u8 activations, after
  ``quant_pre_process``: the fastest onnxruntime setting on this CPU); NNCF applied to the OpenVINO model
  (``nncf.quantize(ov_model)``, OpenVINO's own int8 path); TFLite's path is onnx2tf + the converter,
  which is also ours, so its row is the same file.
Each file runs in our runtime sessions (warm-up, then timed batch-1 runs, all files of a model
interleaved in rounds: see ``interleaved_p50_ms``); the table gives p50 in ms and the ratios. Prints Markdown;
raw output to benchmarks/results/int8_latency_<size>.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ort_peer import quantize_static

from edgeres import models
from edgeres.export import onnx as onnx_export
from edgeres.export import openvino as openvino_export
from edgeres.export.formats import ExportJob
from edgeres.preprocessing import Preprocessing
from edgeres.quantize import engine
from edgeres.quantize.fold import fold_batchnorm
from edgeres.runtimes import open_session

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402


def interleaved_p50_ms(files: dict, x: np.ndarray, threads: int, rounds: int, block_seconds: float = 0.3) -> dict:
    """p50 per file over ``rounds`` rounds; in each round every file runs one block (3 untimed runs, then
    timed runs for at least 10 runs and ``block_seconds``). Interleaving spreads the machine's drift over
    the minutes of a run on every file alike (one file after the other would hand it to whichever ran in
    the slow minute). A pause before each block lets the previous session's worker threads stop spinning,
    so that they do not take cores from the session being timed."""
    sessions = {key: open_session(path, key[0], threads=threads) for key, path in files.items()}
    for session in sessions.values():
        for _ in range(10):
            session.run(x)
    times: dict = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            time.sleep(0.1)
            for _ in range(3):
                session.run(x)
            block: list[float] = []
            end = time.perf_counter() + block_seconds
            while len(block) < 10 or time.perf_counter() < end:
                start = time.perf_counter()
                session.run(x)
                block.append((time.perf_counter() - start) * 1000)
            times[key] += block
    return {key: float(np.median(t)) for key, t in times.items()}


def nncf_openvino_peer(fp32: Path, out: Path, calib: np.ndarray) -> Path:
    import nncf
    import openvino as ov

    model = ov.convert_model(str(fp32))
    quantized = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                              subset_size=len(calib))
    ov.save_model(quantized, str(out))
    return out


def bench_model(name: str, size: int, threads: int, rounds: int, tmp: Path, with_tflite: bool) -> list[dict]:
    torch.manual_seed(0)
    prep = Preprocessing(size, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    folded = fold_batchnorm(models.build(name, 1000, 3).eval())
    calib = torch.randn(64, *prep.input_shape(1)[1:])
    x = np.random.default_rng(0).standard_normal(prep.input_shape(1)).astype(np.float32)
    fp32_onnx = onnx_export.torch_to_onnx(folded, tmp / f"{name}-fp32.onnx", prep.input_shape(1))
    int8_torch = engine.ptq(folded, calib)

    def job(precision: str, path: Path) -> ExportJob:
        return ExportJob(precision=precision, out_path=path, preprocessing=prep,
                         torch_model=int8_torch if precision == "int8" else folded, float_onnx=lambda: fp32_onnx,
                         calibration=lambda: calib.numpy(), metadata={}, options={"io": "int8"})

    files = {
        ("onnxruntime", "fp32"): fp32_onnx,
        ("onnxruntime", "int8 edgeres"): onnx_export.export(job("int8", tmp / f"{name}-int8.onnx")),
        ("onnxruntime", "int8 peer: ort quantize_static"): quantize_static(fp32_onnx, tmp / f"{name}-ort.onnx", calib.numpy()),
        ("openvino", "fp32"): openvino_export.export(job("fp32", tmp / f"{name}-fp32.xml")),
        ("openvino", "int8 edgeres"): openvino_export.export(job("int8", tmp / f"{name}-int8.xml")),
        ("openvino", "int8 peer: NNCF on the OpenVINO model"): nncf_openvino_peer(fp32_onnx, tmp / f"{name}-nncf.xml",
                                                                              calib.numpy()),
    }
    if with_tflite:
        from edgeres.export import tflite as tflite_export

        files[("tflite", "fp32")] = tflite_export.export(job("fp32", tmp / f"{name}-fp32.tflite"))
        files[("tflite", "int8 edgeres (= onnx2tf peer)")] = tflite_export.export(job("int8", tmp / f"{name}-int8.tflite"))
    rows, fp32_ms = [], {}
    for (runtime, variant), ms in interleaved_p50_ms(files, x, threads, rounds).items():
        if variant == "fp32":
            fp32_ms[runtime] = ms
        rows.append({"model": name, "runtime": runtime, "variant": variant, "p50_ms": ms,
                     "speedup_vs_fp32": fp32_ms[runtime] / ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-tflite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += bench_model(name, args.size, args.threads, args.rounds, Path(tmp), not args.no_tflite)
    results_file.write(f"int8_latency_{args.size}", {
        "models": args.models.split(","), "weights": "random (latency does not depend on them)",
        "data": "one random input", "input_size": args.size, "batch": 1, "threads": args.threads,
        "rounds": args.rounds, "kind": "measured", "rows": rows})
    print(f"\nbatch 1, {args.size}x{args.size}x3, {args.threads} threads, p50 over {args.rounds} interleaved rounds "
          f"of >= 0.3 s per file, "
          f"random weights; {platform.processor() or platform.machine()}\n")
    print("| model | runtime | variant | p50 ms | speedup vs fp32 | ours / peer |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ours = next((o for o in rows if o["model"] == r["model"] and o["runtime"] == r["runtime"]
                     and o["variant"].startswith("int8 edgeres")), None)
        ratio = f"{ours['p50_ms'] / r['p50_ms']:.2f}" if "peer" in r["variant"] and ours else ""
        print(f"| {r['model']} | {r['runtime']} | {r['variant']} | {r['p50_ms']:.3g} | "
              f"{r['speedup_vs_fp32']:.2f}x | {ratio} |")


if __name__ == "__main__":
    main()
