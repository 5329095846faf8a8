"""Emulated targets: int8 TFLite on emulated aarch64 against x86, and int8 QDQ on Qualcomm's HTP emulator.

    python benchmarks/emulated.py --workspace WS [--model resnet18] [--images 1000] [--qnn-images 300] [--fresh-root]

Uses the newest int8 TFLite and int8 ONNX (QDQ) exports of the model's FP32 checkpoint in WS (trains,
quantizes and exports what is missing, with the steps' defaults). On the same test images:
1. arm64 root: set-up wall time and disk size, as recorded by the set-up (``--fresh-root`` builds a new
   one in a temporary cache to measure it now; either way the cached root is built if missing);
2. TFLite int8 through the raspberrypi profile emulated (qemu-aarch64, Cortex-A72; LiteRT's aarch64
   build) and on this x86 host: top-1 each, their difference, prediction agreement, wall time of the
   emulated check;
3. the QDQ file on the qualcomm-npu profile (onnxruntime-qnn, HTP backend; Qualcomm's emulator on x86):
   top-1, drop against the FP32 model (PyTorch), agreement with the CPU execution provider, and the
   share of Conv/Gemm/Add/Relu/pooling nodes that ran on the NPU, with the nodes that fell back.
Prints Markdown; raw output to benchmarks/results/emulated_<model>.json. Emulated speed is not reported: it is
qemu's and the emulator's, not the devices'.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeres import backends, data, devices, emulation
from edgeres.bench import select_variants
from edgeres.errors import EdgeresError
from edgeres.evaluate import load_model, test_split
from edgeres.quantize.sensitivity import logits_of, top1
from edgeres.train import TrainRequest, run_train, set_threads
from edgeres.workspace import Artifact, Workspace

sys.path.insert(0, str(Path(__file__).parent))
import results_file  # noqa: E402

ACCURACY = {"warmup": 0, "min_runs": 1, "min_seconds": 0.0, "max_runs": 1, "throughput_batch": 1}


def exports(ws: Workspace, model: str) -> tuple[Artifact, dict[str, Artifact]]:
    """The FP32 root and its newest int8 export per format (tflite, onnx), made when missing."""
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.quantize.step import QuantizeRequest, run_quantize

    try:
        root, variants = select_variants(ws, model, formats=["tflite", "onnx"], precisions=["int8"])
    except EdgeresError:
        root, variants = None, []
    if len(variants) < 2:
        source = ws.latest("train", model=model, dataset="fashion-mnist") or run_train(TrainRequest(model=model), ws)
        int8 = ws.latest("quantize", where=lambda m: m.get("parent") == source.id) or run_quantize(
            QuantizeRequest(model=source.id), ws)
        run_export(ExportRequest(targets=["tflite", "onnx"], precisions=["int8"], model=int8.id), ws)
        root, variants = select_variants(ws, model, formats=["tflite", "onnx"], precisions=["int8"])
    return root, {v.manifest["format"]: v for v in variants}


def run(profile, variant: Artifact, x: np.ndarray, y: np.ndarray, tmp: Path) -> dict:
    """The runner's accuracy pass over (x, y) on ``profile``; its result (predictions included)."""
    job_dir = Path(tempfile.mkdtemp(dir=tmp))
    model = variant.file(variant.manifest["file"])
    (job_dir / model.name).symlink_to(model.resolve())
    np.savez(job_dir / "eval.npz", x=x, y=y)
    runtime = variant.manifest["runtime"]
    job = {"variant": {"name": runtime, "file": model.name, "runtime": runtime,
                       "options": devices.runtime_options(profile, runtime, os.cpu_count())},
           "data": "eval.npz", "method": ACCURACY}
    result = backends.run_variant(profile, job_dir, job, timeout=24 * 3600)["result"]
    if not result["ok"]:
        raise SystemExit(f"{runtime} on {profile.name} failed: {result['error']}")
    return result


def agreement(a: dict, b: dict) -> float:
    return float(np.mean(np.asarray(a["predictions"]) == np.asarray(b["predictions"])) * 100)


def root_figures(fresh: bool) -> dict:
    if fresh:
        with tempfile.TemporaryDirectory(prefix="edgeres-root-bench-") as cache:
            start = time.perf_counter()
            root = emulation.setup(path=Path(cache) / "arm64-root")
            return {"seconds": time.perf_counter() - start, "bytes": root.info["bytes"], "fresh": True}
    root = emulation.setup()
    return {"seconds": root.info["seconds"], "bytes": root.info["bytes"], "fresh": False, "built": root.info["created"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=1000, help="test images for the emulated-ARM check")
    parser.add_argument("--qnn-images", type=int, default=300,
                        help="test images on the HTP emulator (about 2-10 s per ResNet-18 image on this machine)")
    parser.add_argument("--fresh-root", action="store_true", help="time a new arm64 root set-up now")
    args = parser.parse_args()
    set_threads()
    ws = Workspace(args.workspace)
    root_art, variants = exports(ws, args.model)
    figures = root_figures(args.fresh_root)
    x_all, y_all = (t.numpy() for t in data.as_tensors(test_split(root_art, limit=max(args.images, args.qnn_images))))
    x_all = np.ascontiguousarray(x_all, np.float32)
    pi, cpu, npu = devices.emulated(devices.get("raspberrypi")), devices.get("cpu"), devices.get("qualcomm-npu")
    with tempfile.TemporaryDirectory(prefix="edgeres-emulated-bench-") as tmp:
        x, y = x_all[:args.images], y_all[:args.images]
        start = time.perf_counter()
        arm = run(pi, variants["tflite"], x, y, Path(tmp))
        arm_seconds = time.perf_counter() - start
        x86 = run(cpu, variants["tflite"], x, y, Path(tmp))
        xq, yq = x_all[:args.qnn_images], y_all[:args.qnn_images]
        start = time.perf_counter()
        htp = run(npu, variants["onnx"], xq, yq, Path(tmp))
        htp_seconds = time.perf_counter() - start
        cpu_ep = run(cpu, variants["onnx"], xq, yq, Path(tmp))
    with torch.inference_mode():
        fp32 = top1(logits_of(load_model(root_art), torch.from_numpy(xq)), yq)
    part = htp["info"]["partitioning"]
    compute = {op: v for op, v in part["ops"].items() if op in ("Conv", "Gemm", "Add", "Relu", "MaxPool",
                                                                  "AveragePool", "GlobalAveragePool")}
    results = {
        "model": args.model, "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "root": figures,
        "arm": {"images": len(y), "emulated_top1": arm["top1"], "x86_top1": x86["top1"],
                "diff_pp": arm["top1"] - x86["top1"], "agreement": agreement(arm, x86), "seconds": arm_seconds,
                "emulator": arm["emulated"], "runtime": f"{arm['info']['interpreter']} {arm['info']['version']}"},
        "htp": {"images": len(yq), "top1": htp["top1"], "fp32_top1": fp32, "drop_pp": fp32 - htp["top1"],
                "cpu_ep_top1": cpu_ep["top1"], "agreement_cpu_ep": agreement(htp, cpu_ep), "seconds": htp_seconds,
                "emulator": htp["emulated"], "compute_on_npu": part["compute_on_provider"], "compute_ops": compute,
                "nodes": part["nodes"], "on_cpu": part["on_cpu"], "cpu_nodes": part["cpu_nodes"]},
    }
    a, h, r = results["arm"], results["htp"], results["root"]
    print(f"\n{args.model} / Fashion-MNIST int8 on emulated targets; host {results['host']}\n")
    print(f"arm64 root set-up: {r['seconds']:.0f} s, {r['bytes'] / 1e6:.0f} MB on disk "
          f"({'measured now' if r['fresh'] else 'recorded at set-up, ' + r['built']})\n")
    print("| target | images | top-1 % | reference top-1 % | diff pp | agreement % | wall s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| TFLite int8, aarch64 ({a['emulator']}, {a['runtime']}) vs x86 | {a['images']} | "
          f"{a['emulated_top1']:.2f} | {a['x86_top1']:.2f} | {a['diff_pp']:+.2f} | {a['agreement']:.2f} | "
          f"{a['seconds']:.0f} |")
    print(f"| ONNX QDQ int8, {h['emulator']} vs CPU EP | {h['images']} | {h['top1']:.2f} | {h['cpu_ep_top1']:.2f} | "
          f"{h['top1'] - h['cpu_ep_top1']:+.2f} | {h['agreement_cpu_ep']:.2f} | {h['seconds']:.0f} |")
    print(f"\nHTP top-1 drop vs FP32 (PyTorch, {h['fp32_top1']:.2f}%): {h['drop_pp']:+.2f} pp. "
          f"Conv/Gemm/Add/Relu/pool nodes on the NPU: {h['compute_on_npu'] * 100:.1f}% "
          + ", ".join(f"{op} {v['nodes'] - v['cpu']}/{v['nodes']}" for op, v in h["compute_ops"].items())
          + f"; {h['on_cpu']} of {h['nodes']} nodes ran on the CPU: " + ", ".join(h["cpu_nodes"][:8])
          + (" ..." if len(h["cpu_nodes"]) > 8 else ""))
    results_file.write(f"emulated_{args.model}", {"data": "fashion-mnist test images", "kind": "emulated",
                                                  **results})


if __name__ == "__main__":
    main()
