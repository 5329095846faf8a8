"""Where the TFLite int8 file's numbers come from: each int8 file against the torch int8 model it was exported from.

    python benchmarks/tflite_int8_source.py [--workspace WS] [--model resnet18] [--images 2000] [--threads 2]

For the model's FP32 Fashion-MNIST checkpoint in WS (trained there first when missing: --train-epochs on
--train-limit images; without --workspace, in a temporary one), two quantize artifacts:

- PTQ, as ``edgeres quantize MODEL --int8`` makes it (300 calibration images);
- QAT: that model trained one epoch on --qat-images training images with the quantize step's own loop and
  recipe, kept as trained (``quantize --qat`` keeps its best validation epoch, which at a small scale is
  often the PTQ one; then there would be nothing QAT to measure).

Each is exported by ``edgeres export`` to ONNX int8 and TFLite int8 (io=int8 and io=float) and every file
runs in its runtime on the same --images test images (a seeded subset; all 10,000 with --images 10000):
top-1, and top-1 agreement with the torch int8 model (the quantize artifact's NNCF model). The path
TFLite int8 took before (TF's converter quantizing the FP32 parent itself, calibrated on 200 training
images) is measured beside it, against both torch int8 models: it is the same file for both.
Prints a Markdown table; JSON to benchmarks/results/tflite_int8_source.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeres import data
from edgeres.export.step import ExportRequest, run_export
from edgeres.preprocessing import Preprocessing
from edgeres.quantize import engine
from edgeres.quantize.sensitivity import logits_of
from edgeres.quantize.step import QuantizeRequest, load_quantized, run_quantize
from edgeres.runtimes import open_session
from edgeres.train import TrainConfig, TrainRequest, fit, run_train, set_threads
from edgeres.workspace import Artifact, Workspace

OUT = Path(__file__).parent / "results" / "tflite_int8_source.json"


def qat_artifact(ws: Workspace, ptq: Artifact, images: int) -> Artifact:
    """The PTQ model trained one QAT epoch (the quantize step's recipe), saved as a quantize artifact."""
    prep = Preprocessing.from_dict(ptq.manifest["preprocessing"])
    model = load_quantized(ptq)
    defaults = QuantizeRequest(model="-")
    fit(model, data.load_split("fashion-mnist", "train", prep, limit=images),
        TrainConfig(epochs=1, lr=defaults.lr, augment=True), None, "QAT")
    fixed = {"id", "kind", "model", "dataset", "parent", "created", "command", "config", "metrics"}
    fields = {k: v for k, v in ptq.manifest.items() if k not in fixed} | {"method": "qat"}
    with ws.create("quantize", model=ptq.manifest["model"], dataset=ptq.manifest["dataset"],
                   parent=ws.resolve(ptq.manifest["parent"]), config={"qat_images": images, "epochs": 1},
                   **fields) as art:
        engine.save(model.to(memory_format=torch.contiguous_format).eval(), art.dir)
    return art.artifact


def previous_tflite_path(train: Artifact, path: Path, calib: np.ndarray) -> Path:
    """The TFLite int8 file as edgeres made it before: TF's converter quantizes the FP32 parent itself,
    calibrated on ``calib`` (what export/tflite.py did, in this process)."""
    import onnx2tf
    import tensorflow as tf

    from edgeres.export.onnx import torch_to_onnx
    from edgeres.export.tflite import _prepared_onnx
    from edgeres.quantize.fold import fold_batchnorm
    from edgeres.train import load_fp32

    prep = Preprocessing.from_dict(train.manifest["preprocessing"])
    float_onnx = torch_to_onnx(fold_batchnorm(load_fp32(train)), path.with_suffix(".onnx"), prep.input_shape(1))
    keras_model = onnx2tf.convert(onnx_graph=_prepared_onnx(str(float_onnx))[0], disable_model_save=True,
                                  output_folder_path=str(path.parent / "onnx2tf"), not_use_onnxsim=True,
                                  not_use_opname_auto_generate=True, output_integer_quantized_tflite=True,
                                  verbosity="error")
    module = tf.Module()
    module.serve = tf.function(lambda x: {"logits": keras_model(x)}, input_signature=[
        tf.TensorSpec([1, prep.input_size, prep.input_size, prep.channels], tf.float32, "input")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    nhwc = calib.transpose(0, 2, 3, 1)
    converter.representative_dataset = lambda: ([image[None]] for image in nhwc)
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def measure(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    return {"top1": round(float((logits.argmax(1) == labels).mean() * 100), 2),
            "agreement": round(float((logits.argmax(1) == reference.argmax(1)).mean() * 100), 2),
            "disagreements": int((logits.argmax(1) != reference.argmax(1)).sum()),
            "mean_abs_logit_diff": round(float(np.abs(logits - reference).mean()), 4)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="with (or to get) the FP32 checkpoint; default: a temporary one")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=2000, help="test images (seeded subset; 10000: all)")
    parser.add_argument("--qat-images", type=int, default=2048)
    parser.add_argument("--train-epochs", type=int, default=3, help="if a checkpoint must be trained first")
    parser.add_argument("--train-limit", type=int, default=10000, help="if a checkpoint must be trained first")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    start = time.perf_counter()
    set_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tflite-int8-source-"))
    try:
        ws = Workspace(args.workspace or tmp / "ws")
        train = ws.latest("train", model=args.model, dataset="fashion-mnist") or run_train(TrainRequest(
            model=args.model, config=TrainConfig(epochs=args.train_epochs, limit=args.train_limit)), ws)
        ptq = run_quantize(QuantizeRequest(model=train.id, eval_limit=args.images), ws)
        qat = qat_artifact(ws, ptq, args.qat_images)
        prep = Preprocessing.from_dict(train.manifest["preprocessing"])
        x, y = data.as_tensors(data.load_split("fashion-mnist", "test", prep, limit=args.images))
        calib = data.as_tensors(data.load_split("fashion-mnist", "train", prep, limit=200))[0].numpy()
        labels = y.numpy()
        previous = previous_tflite_path(train, tmp / "previous.tflite", calib)
        previous_logits = open_session(previous, threads=args.threads).run_batched(x.numpy())
        rows = []
        for name, source in (("PTQ", ptq), ("QAT", qat)):
            reference = logits_of(load_quantized(source), x)
            rows.append({"model": name, "file": "torch int8 (NNCF, the quantize artifact)",
                         **measure(reference, reference, labels)})
            for target, io in (("onnx", None), ("tflite", "int8"), ("tflite", "float")):
                (export,) = run_export(ExportRequest(targets=[target], precisions=["int8"], model=source.id,
                                                     io=io, verify=False), ws)
                session = open_session(export.path / export.manifest["file"], threads=args.threads)
                label = f"{target} int8" + (f" (io={io})" if io else "") + ", from the quantize artifact"
                rows.append({"model": name, "file": label,
                             "export_seconds": export.manifest["metrics"]["export_seconds"],
                             **measure(session.run_batched(x.numpy()), reference, labels)})
            rows.append({"model": name, "file": "tflite int8, previous path (TF's own PTQ of the FP32 parent, "
                                                "200 calibration images)",
                         **measure(previous_logits, reference, labels)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import ai_edge_litert
    import nncf
    import onnxruntime
    import tensorflow as tf

    result = {
        "what": "top-1 agreement of each int8 file with the torch int8 model it was exported from",
        "model": args.model, "data": f"Fashion-MNIST test, {len(labels)} images (seeded subset)",
        "input_size": f"{prep.input_size}x{prep.input_size}x{prep.channels}",
        "fp32_checkpoint": {"artifact": train.id, "config": train.manifest.get("config"),
                            "test_top1_same_images": ptq.manifest["metrics"]["fp32"]["test_top1"]},
        "ptq": {"artifact": ptq.id, "calib_samples": 300},
        "qat": {"artifact": qat.id, "epochs": 1, "train_images": args.qat_images},
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpu": cpu_name(), "cores": os.cpu_count()},
        "versions": {"torch": torch.__version__, "nncf": nncf.__version__, "tensorflow": tf.__version__,
                     "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
                     "onnxruntime": onnxruntime.__version__},
        "wall_seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model}, {result['data']}, {result['input_size']}, {args.threads} threads, {result['machine']['cpu']}")
    print("| model | file | top-1 | agreement with torch int8 | disagreements | mean abs logit diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['file']} | {r['top1']:.2f} % | {r['agreement']:.2f} % | {r['disagreements']} | "
              f"{r['mean_abs_logit_diff']:.4f} |")


if __name__ == "__main__":
    main()
