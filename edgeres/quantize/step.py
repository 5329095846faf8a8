"""The ``quantize`` step: FP32 artifact in, int8 artifact out, with the truth about the accuracy drop."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from edgeres import data, extras
from edgeres.console import say, warn
from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing
from edgeres.quantize import engine
from edgeres.quantize.fold import fold_batchnorm
from edgeres.quantize.sensitivity import Evaluator, analyze, fit_budget, logits_of, top1
from edgeres.recipe import Epochs, QuantizeStep
from edgeres.request import Request
from edgeres.workspace import FP32_KINDS, Artifact, Workspace


class QuantizeRequest(Request, QuantizeStep):
    """What ``edgeres quantize`` asks for: a quantize step's options, of one model."""

    model: str  # model name (its latest FP32 artifact) or an artifact id / path
    dataset: Optional[str] = None  # None: the model's own (fashion-mnist when one must be trained first)
    data_dir: Optional[Path] = None  # None: the directory recorded in the model's lineage
    weights: Optional[Path] = None  # an FP32 checkpoint file to start from instead of the workspace's
    train_epochs: Epochs = None  # if an FP32 model must be trained first; None: the model's default
    trust_pickle: bool = False  # --trust-pickle: ``weights`` may hold pickled objects (runs their code)

    @property
    def qat(self) -> bool:
        return self.method == "qat"

    @classmethod
    def of(cls, options: QuantizeStep, **where) -> QuantizeRequest:
        """What a quantize step's declared options ask for, of the model ``where`` names (``edgeres quantize``,
        recipes)."""
        return cls(**options.model_dump(), **where)


def _source(req: QuantizeRequest, ws: Workspace) -> Artifact:
    """The FP32 artifact to quantize; imports ``weights`` or trains one first when there is none."""
    from edgeres.train import TrainRequest, fp32_model, run_import

    if req.weights is not None:
        say(f"importing FP32 checkpoint {req.weights}")
        return run_import(TrainRequest(model=req.model, dataset=req.dataset or "fashion-mnist", data=req.data_dir,
                                       weights=str(req.weights), eval_limit=req.eval_limit,
                                       trust_pickle=req.trust_pickle), ws)
    source = fp32_model(ws, req.model, kinds=("prune", "train"), dataset=req.dataset, data_dir=req.data_dir,
                        eval_limit=req.eval_limit, epochs=req.train_epochs)
    if source.kind == "quantize":
        raise EdgeresError(f"{source.id} is already int8", hint="quantize its FP32 parent instead: "
                           f"{source.manifest.get('parent')}")
    if source.kind not in FP32_KINDS:
        raise EdgeresError(f"{source.id} is a {source.kind} artifact; quantize needs an FP32 model")
    return source


def _splits(req: QuantizeRequest, prep: Preprocessing, source: data.DataSource):
    train_ds = source.load("train", prep)
    calib_n = req.calib_samples
    if calib_n > len(train_ds):
        say(f"[yellow]--calib-samples {calib_n} is more than the {len(train_ds)} training images: using all of them")
        calib_n = len(train_ds)
    calib_x, _ = data.as_tensors(source.load("train", prep, calib_n))
    val_x, val_y = data.as_tensors(source.load("val", prep, req.val_limit))
    test_x, test_y = data.as_tensors(source.load("test", prep, req.eval_limit))
    return train_ds, calib_x, (val_x, val_y.numpy()), (test_x, test_y.numpy())


def _check_layers(names: list[str], model: nn.Module, source: Artifact) -> None:
    """One clear error for a ``--keep-float`` name that is not a quantizable layer of the model."""
    layers = engine.quantizable_layers(model)
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise EdgeresError(f"--keep-float {', '.join(unknown)}: no such Conv2d or Linear layer in {source.id}",
                           hint=f"its layers: {', '.join(layers[:4])}, ..., {layers[-1]} ({len(layers)}; "
                                "`edgeres quantize --analyze` lists them all with their sensitivity)")


def run_quantize(req: QuantizeRequest, ws: Workspace) -> Artifact:
    """Quantize to int8 (PTQ, optionally QAT and an accuracy budget) and save a ``quantize`` artifact."""
    from edgeres.train import TrainConfig, fit, load_fp32, set_threads

    extras.require("quantize", "int8 quantization")
    set_threads()
    source = _source(req, ws)
    manifest = source.manifest
    folded = fold_batchnorm(load_fp32(source))
    _check_layers(req.keep_float, folded, source)
    prep = Preprocessing.from_dict(manifest["preprocessing"])
    images = data.source_of(manifest, dataset=req.dataset, data_dir=req.data_dir)
    dataset = images.dataset
    train_ds, calib_x, (val_x, val_y), (test_x, test_y) = _splits(req, prep, images)
    say(f"decisions on {len(val_y)} val images, reported on {len(test_y)} test images "
        f"({data.VALIDATIONS[images.validation]})")

    fp32_test = logits_of(folded, test_x)
    evaluator = Evaluator(val_x, val_y, logits_of(folded, val_x))
    fp32 = {"test_top1": top1(fp32_test, test_y), "val_top1": top1(evaluator.reference, val_y)}

    say(f"PTQ int8: {len(calib_x)} calibration images, estimator {req.estimator}, bias correction "
        f"{req.bias_correction}")
    start = time.perf_counter()
    model = engine.ptq(folded, calib_x, req.estimator, req.bias_correction, req.keep_float)
    ptq_seconds = time.perf_counter() - start
    ptq_val = evaluator.score(model)["top1"]
    report: dict = {"ptq_seconds": round(ptq_seconds, 2), "ptq_val_top1": round(ptq_val, 3)}

    sensitivity: list[dict] | None = None
    float_layers: list[str] = list(req.keep_float)
    over_budget = req.max_drop is not None and fp32["val_top1"] - ptq_val > req.max_drop
    if req.analyze or over_budget:
        start = time.perf_counter()
        sensitivity = analyze(folded, calib_x, evaluator, ptq_val, req.estimator, req.bias_correction,
                              already_float=req.keep_float)
        report["analysis_seconds"] = round(time.perf_counter() - start, 1)
    budget_met = True
    if over_budget:
        say(f"[yellow]PTQ val drop {fp32['val_top1'] - ptq_val:.2f} pp exceeds the budget of {req.max_drop} pp: "
            f"keeping the most sensitive layers in float")
        model, float_layers, trail, budget_met = fit_budget(folded, calib_x, evaluator, fp32["val_top1"],
                                                            req.max_drop, sensitivity or [], req.estimator,
                                                            req.bias_correction, already_float=req.keep_float)
        report["budget_search"] = trail

    if req.qat:
        start = time.perf_counter()
        qat_train = images.load("train", prep, req.train_limit) if req.train_limit else train_ds
        # fake quantization is calibrated in float32: no bf16 autocast in QAT
        config = TrainConfig(epochs=req.epochs, lr=req.lr, augment=True, amp="off")
        report["qat_history"] = fit(model, qat_train, config, images.load("val", prep, req.val_limit), "QAT",
                                    keep_best=True)
        model = model.to(memory_format=torch.contiguous_format)
        report["qat_seconds"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    int8_test = logits_of(model, test_x)
    report["eval_seconds"] = round(time.perf_counter() - start, 1)
    int8 = {"test_top1": top1(int8_test, test_y), "val_top1": evaluator.score(model)["top1"]}
    drop = fp32["test_top1"] - int8["test_top1"]
    metrics = {
        "test": {"top1": int8["test_top1"], "n": int(len(test_y))},
        "fp32": fp32, "int8": int8, "drop_pp": round(drop, 3),
        "agreement_with_fp32": float((fp32_test.argmax(1) == int8_test.argmax(1)).mean() * 100),
        "budget_met": budget_met if req.max_drop is not None else None, **report,
    }
    config = req.model_dump(mode="json") | {"calib_samples_used": int(len(calib_x))}
    with ws.create("quantize", model=manifest["model"], dataset=dataset, parent=source, config=config,
                   architecture=manifest["architecture"], preprocessing=prep.to_dict(),
                   classes=manifest.get("classes"), precision="int8", method="qat" if req.qat else "ptq",
                   engine="nncf", float_layers=float_layers, data=images.to_manifest()) as art:
        engine.save(model, art.dir)
        if sensitivity is not None:
            (art.dir / "sensitivity.json").write_text(json.dumps(sensitivity, indent=1))
        art.manifest["metrics"] = metrics
    artifact = art.artifact
    assert artifact is not None
    say(f"[green]saved[/] {artifact.describe()}: int8 top-1 {int8['test_top1']:.2f}% vs FP32 "
        f"{fp32['test_top1']:.2f}% (drop {drop:+.2f} pp) on {len(test_y)} test images; PTQ took {ptq_seconds:.1f} s")
    if float_layers:
        say(f"kept in float: {', '.join(float_layers)}")
    if req.max_drop is not None and not budget_met:
        message = (f"the accuracy budget of {req.max_drop} pp could not be met; saved the best model found "
                   f"({artifact.id})")
        if req.strict:
            raise EdgeresError(message)
        warn(f"{message}")
    return artifact


def load_quantized(artifact: Artifact) -> nn.Module:
    """The NNCF-quantized torch model of a ``quantize`` artifact."""
    from edgeres import models

    extras.require("quantize", f"the int8 model of {artifact.id}")

    artifact.verify(["model.pt", "quantizers.json"])  # the engine reads them by path: both must be vouched for
    artifact.verify()
    arch = artifact.manifest["architecture"]
    float_model = fold_batchnorm(models.build_from_architecture(arch))
    return engine.restore(float_model, artifact.path)
