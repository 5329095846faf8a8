"""The ``diagnose`` step: exported files in, a ``diagnose`` artifact out that says, layer by layer and file
by file, where each file departs from the torch model it came from, which layers the quantization itself
hurt most and what keeping them in float recovers, which compute operators an int8 file leaves in float,
and where each file spends its time."""

from __future__ import annotations

import importlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeres import data, extras
from edgeres.console import say, warn
from edgeres.diagnose import culprit, metrics
from edgeres.diagnose.points import LOGITS, Point, block_level, find_points, torch_taps
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.preprocessing import Preprocessing
from edgeres.recipe import DiagnoseOptions, QuantizeStep
from edgeres.request import Request, flag
from edgeres.workspace import Artifact, Workspace

VAL_IMAGES = 500  # validation images of each keep-float trial
TAPS = {"onnx": "edgeres.diagnose.taps_onnx", "openvino": "edgeres.diagnose.taps_openvino",
        "tflite": "edgeres.diagnose.taps_tflite"}
REPORT_FILES = {"json": "diagnose.json", "png": "sqnr.png"}


class DiagnoseRequest(Request, DiagnoseOptions):
    """What ``edgeres diagnose`` asks for: its options, of one model or export."""

    artifact: Optional[str] = None  # export, quantize or train artifact, or a model name; None: the newest export
    data_dir: Optional[Path] = None
    devices_dir: Optional[Path] = None
    trust_new_host: bool = False  # record an ssh host key not yet in known_hosts (a changed one is refused)


@dataclass
class DiagnoseResult:
    artifact: Artifact
    report: dict[str, Any]
    failures: list[str] = field(default_factory=list)  # gates not met


def _device(req: DiagnoseRequest):
    """The device profile the files run on (its emulation where asked, or where its ssh device cannot be
    reached and the emulation is set up), checked usable before any work."""
    from edgeres import devices
    from edgeres.bench.plan import stand_in

    profile = devices.get(req.device, req.devices_dir)
    if req.trust_new_host:
        profile = devices.trusting_new_host(profile)
    refused = [t for t in req.targets or () if FORMATS[t].runtime not in profile.runtimes.names()]
    if refused:
        raise EdgeresError(f"device {profile.name} does not run {', '.join(refused)}",
                           hint=f"its runtimes: {', '.join(profile.runtimes.names())}")
    profile = stand_in(profile, emulate=req.emulate)
    devices.check_threads(profile, req.threads)
    ready, why = devices.usable(profile)
    if not ready:
        raise EdgeresError(f"cannot diagnose on {profile.name}: {why}",
                           hint="`edgeres devices` says what each device needs")
    return profile


def _exports(ws: Workspace, req: DiagnoseRequest, profile) -> tuple[Artifact, list[Artifact]]:
    """The FP32 root and the export artifacts to diagnose: the one named, or the lineage's newest per
    format and precision that the device runs (as bench picks them)."""
    from edgeres.bench.select import choices, select_variants
    from edgeres.workspace import NoSuchArtifact, fp32_root

    runs = profile.runtimes.names()
    formats = tuple(f for f in choices(req.targets, tuple(FORMATS), "target") if FORMATS[f].runtime in runs)
    if not formats:
        raise EdgeresError(f"device {profile.name} runs none of the export formats ({', '.join(FORMATS)})",
                           hint=f"its runtimes: {', '.join(runs)}")
    precisions = choices(req.precisions, PRECISIONS, "precision")
    named = None
    if req.artifact is not None:
        try:
            named = ws.resolve(req.artifact)
        except NoSuchArtifact:
            named = None
    if named is not None and named.kind == "export":
        root = fp32_root(named, {a.id: a for a in ws.artifacts()})
        exports = [named]
        if named.manifest["runtime"] not in runs:
            raise EdgeresError(f"{named.id} is a {named.manifest['format']} file, and device {profile.name} has no "
                               f"{named.manifest['runtime']} runtime", hint=f"its runtimes: {', '.join(runs)}")
    elif named is not None and named.kind not in ("train", "prune", "quantize"):
        raise EdgeresError(f"{named.id} is a {named.kind} artifact: diagnose takes an export, or a model whose "
                           "exports it diagnoses")
    else:
        from edgeres.console import console

        quiet, console.quiet = console.quiet, True  # its status line speaks of benchmarking; ours follows
        try:
            root, exports = select_variants(ws, req.artifact, formats=formats, precisions=precisions)
        finally:
            console.quiet = quiet
        if named is not None and named.kind == "quantize":  # that quantization's int8 files and the float ones
            exports = [a for a in exports if a.manifest["precision"] != "int8" or a.manifest["parent"] == named.id]
    usable = []
    for a in exports:
        fmt = FORMATS[a.manifest["format"]]
        if fmt.extra and extras.missing(fmt.extra):
            warn(f"passing over {a.id}: {fmt.name} is not installed ({extras.install_command(fmt.extra)})")
        else:
            usable.append(a)
    if not usable:
        raise EdgeresError(f"no exported file of {root.describe()} to diagnose",
                           hint="export it first, e.g. `edgeres export --target all --precision all`")
    return root, usable


def _check_memory(per_image: int, images: int) -> None:
    """Refuse an image count whose tensors would not fit: each point's tensor of every image is held for
    FP32, the int8 model and the file under comparison, and compared in float64 (about 8x in all)."""
    import os

    needed = per_image * images * 8
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if needed > free * 0.8:
        fits = max(1, int(free * 0.8 / (per_image * 8)))
        raise EdgeresError(f"--images {images} needs about {needed / 2**30:.1f} GiB for this model's tensors, and "
                           f"{free / 2**30:.1f} GiB of memory is free", hint=f"use --images {min(fits, 256)} or fewer")


class _Models:
    """The torch models behind the files, their points' tensors on the images, each made once."""

    def __init__(self, ws: Workspace, root: Artifact, x: np.ndarray):
        from edgeres.quantize.fold import fold_batchnorm
        from edgeres.train import load_fp32

        self.ws, self.x = ws, x
        self.float_model = fold_batchnorm(load_fp32(root))
        try:
            self.points = find_points(self.float_model)
        except ValueError as exc:
            raise EdgeresError(f"cannot diagnose {root.id}: {exc}") from None
        _check_memory(sum(v.nbytes for v in torch_taps(self.float_model, self.points, x[:1]).values()), len(x))
        self.fp32 = torch_taps(self.float_model, self.points, x)
        self._int8: dict[str, tuple[Artifact, Any, dict[str, np.ndarray]]] = {}

    def int8(self, export: Artifact) -> tuple[Artifact, Any, dict[str, np.ndarray]]:
        """The quantize artifact an int8 file came from, its torch model and that model's tensors."""
        parent = export.manifest["parent"]
        if parent not in self._int8:
            from edgeres.quantize.step import load_quantized

            source = self.ws.resolve(parent, verify=True)
            if source.kind != "quantize":
                raise EdgeresError(f"{export.id} is int8 but was made from {source.id}, not a quantize artifact")
            model = load_quantized(source)
            self._int8[parent] = (source, model, torch_taps(model, self.points, self.x))
        return self._int8[parent]


def compare_points(points: list[Point], reference: dict[str, np.ndarray], got: dict[str, np.ndarray],
                   fp32: dict[str, np.ndarray] | None = None) -> list[dict]:
    """One row per point: its metrics against ``reference`` (and SQNR against FP32), with the noise each
    point added."""
    rows = []
    for p in points:
        if got[p.name].shape != reference[p.name].shape:
            raise EdgeresError(f"point {p.name}: the file's tensor is {got[p.name].shape}, torch's "
                               f"{reference[p.name].shape}: the file does not match the model")
        row = {"point": p.name, "kind": p.kind, "shape": list(reference[p.name].shape[1:]),
               **metrics.compare(reference[p.name], got[p.name])}
        if fp32 is not None:
            row["sqnr_vs_fp32_db"] = metrics.compare(fp32[p.name], got[p.name])["sqnr_db"]
        rows.append(row)
    metrics.added_noise(rows)
    return rows


def _diagnose_file(export: Artifact, models: _Models, labels: np.ndarray, req: DiagnoseRequest, profile) -> dict:
    m = export.manifest
    fmt = FORMATS[m["format"]]
    path = fmt.runnable_here(export.file(m["file"]))
    start = time.perf_counter()
    if m["precision"] == "int8":
        source, _, reference = models.int8(export)
        reference_name, fp32 = f"torch int8 ({source.id})", models.fp32
    else:
        reference_name, reference, fp32 = "torch fp32", models.fp32, None
    taps = importlib.import_module(TAPS[fmt.name])
    try:
        got = taps.taps(path, models.points, models.x, req.threads)
    except EdgeresError:
        raise
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types for a file it cannot run
        from edgeres.errors import first_line

        raise EdgeresError(f"{fmt.name} could not run {path.name} of {export.id}: {first_line(exc)}") from None
    rows = compare_points(models.points, reference, got, fp32)
    logits = got[LOGITS]
    named = culprit.culprits(rows)
    result = {
        "artifact": export.id, "format": fmt.name, "precision": m["precision"], "runtime": fmt.runtime,
        "file": str(path.relative_to(export.path)), "reference": reference_name, "layers": rows, "culprits": named,
        "min_sqnr_db": min(r["sqnr_db"] for r in rows),
        "top1": round(float((logits.argmax(1) == labels).mean() * 100), 3),
        "agreement": round(metrics.agreement(logits, reference[LOGITS]), 3),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if profile.connection.type != "local":  # the file's outputs on the device itself
        from edgeres.diagnose.on_device import outputs

        say(f"running {fmt.name} {m['precision']} on {profile.name} ({profile.describe_connection()})")
        result["on_device"] = outputs(profile, path, fmt.runtime, x=models.x, labels=labels, here=logits,
                                      reference=reference[LOGITS], threads=req.threads)
        from edgeres.diagnose.on_device import layers  # and its tensors at every point, against this host's

        result["on_device"].update(layers(profile, path, fmt.runtime, taps.device_job, points=models.points,
                                          x=models.x, labels=labels, here=got, threads=req.threads))
    if m["precision"] == "int8":
        from edgeres.diagnose.fallback import float_ops

        result["fallback"] = float_ops(fmt.name, path)
    if req.placement:
        from edgeres.diagnose.placement import placement

        blocks = [p.name for p in block_level(models.points)]
        result["placement"] = placement(fmt.name, m["precision"], export.file(m["file"]), blocks)
    return result


def _quantization(models: _Models, source: Artifact, req: DiagnoseRequest) -> dict:
    """The torch int8 model against FP32, point by point, and the keep-float trials of its worst points."""
    rows = compare_points(models.points, models.fp32, models._int8[source.id][2])
    named = culprit.culprits(rows, max(req.recover, culprit.NAMED))
    result: dict[str, Any] = {"artifact": source.id, "method": source.manifest.get("method", "ptq"),
                              "layers": rows, "culprits": named, "recovery": []}
    if req.recover == 0 or not named:
        return result
    config = source.manifest["config"]
    prep = Preprocessing.from_dict(source.manifest["preprocessing"])
    images = data.source_of(source.manifest, data_dir=req.data_dir)
    calib_n = int(config.get("calib_samples_used", config.get("calib_samples", 300)))
    calibration, _ = data.as_tensors(images.load("train", prep, calib_n))
    x, y = data.as_tensors(images.load("val", prep, VAL_IMAGES))
    by_name = {p.name: p for p in models.points}
    say(f"keeping each of {', '.join(named[:req.recover])} in float in turn, re-quantized as {source.id} was "
        f"({len(calibration)} calibration images), measured on {len(y)} val images")
    trials = culprit.recover(float_model=models.float_model, points=[by_name[n] for n in named[:req.recover]],
                             calibration=calibration, x=x, labels=y.numpy(),
                             settings={"estimator": config.get("estimator", "default"),
                                       "bias_correction": config.get("bias_correction", "none")},
                             already_float=list(source.manifest.get("float_layers") or []))
    result["recovery"], result["val_images"] = trials, int(len(y))
    best = max(trials[1:], key=culprit.gain)
    base = trials[0]
    if best["recovery_pp"] <= 0:
        tried = ", ".join(dict.fromkeys(r["point"] for r in trials[1:]))
        result["fix"] = {"text": f"keeping no single one of {tried} (nor one of their layers) in float recovers "
                                 "val top-1: the int8 loss is spread over the network (or there is none)"}
    else:
        budget = max(0.0, math.ceil((base["fp32_top1"] - best["top1"]) * 10) / 10)
        result["fix"] = {
            "point": best["point"], "float_layers": best["float_layers"], "recovery_pp": best["recovery_pp"],
            "agreement_gain_pp": best["agreement_gain_pp"], "max_drop": budget,
            "command": _quantize_command(source, [*trials[0]["float_layers"], *best["float_layers"]]),
            "text": (f"keeping {', '.join(best['float_layers'])} in float takes val top-1 from {base['top1']:.2f}% "
                     f"to {best['top1']:.2f}% ({best['recovery_pp']:+.2f} pp; agreement with FP32 "
                     f"{base['agreement']:.1f}% -> {best['agreement']:.1f}%)"),
        }
    return result


def _quantize_command(source: Artifact, float_layers: list[str]) -> str:
    """The command that makes ``source`` (a quantize artifact) again, with ``float_layers`` kept in float: the
    model a keep-float trial measured, for PTQ."""
    config = source.manifest["config"]
    words = ["edgeres", "quantize", source.manifest["parent"], "--int8"]
    for name in ("method", "calib_samples", "estimator", "bias_correction", "epochs", "lr", "train_limit"):
        field = QuantizeStep.model_fields[name]
        if config.get(name, field.default) != field.default:
            words += [flag(name, field), str(config[name])]
    for layer in dict.fromkeys(float_layers):
        words += ["--keep-float", layer]
    return " ".join(words)


def gates(report: dict, req: DiagnoseRequest) -> list[str]:
    """The gates not met, one line each."""
    failures = []
    for f in report["files"]:
        name = f"{f['format']} {f['precision']}"
        if req.min_sqnr is not None and f["min_sqnr_db"] < req.min_sqnr:
            worst = min(f["layers"], key=lambda r: r["sqnr_db"])
            failures.append(f"{name}: SQNR {worst['sqnr_db']:.1f} dB at {worst['point']} against the "
                            f"{f['reference']} model is below --min-sqnr {req.min_sqnr:g} (the error jumps at "
                            f"{', '.join(f['culprits'][:1]) or '-'})")
        fallback = f.get("fallback")
        if req.max_fallback is not None and fallback and fallback["float_ops"] > req.max_fallback:
            failures.append(f"{name}: {fallback['float_ops']} of {fallback['compute_ops']} compute operators run in "
                            f"float (--max-fallback {req.max_fallback}), e.g. {fallback['float_names'][0]}")
        for placed in f.get("placement") or []:
            left = placed.get("compute_on_cpu", placed.get("on_cpu")) or 0
            if req.max_fallback is not None and left > req.max_fallback:
                failures.append(f"{name}: the {placed['unit']} leaves {left} compute operators to the CPU "
                                f"(--max-fallback {req.max_fallback})")
    return failures


def run_diagnose(req: DiagnoseRequest, ws: Workspace) -> DiagnoseResult:
    """Diagnose the files and save a ``diagnose`` artifact; the gates' verdicts come back in ``failures``."""
    from edgeres.train import set_threads

    set_threads(req.threads)
    profile = _device(req)
    root, exports = _exports(ws, req, profile)
    start = time.perf_counter()
    prep = Preprocessing.from_dict(root.manifest["preprocessing"])
    images = data.source_of(root.manifest, data_dir=req.data_dir)
    x, y = data.as_tensors(images.load("test", prep, req.images))
    x, labels = x.numpy(), y.numpy()
    say(f"diagnosing {len(exports)} file(s) of {root.id} on {len(labels)} test images")
    models = _Models(ws, root, x)
    files = []
    for export in exports:
        say(f"comparing {export.manifest['format']} {export.manifest['precision']} ({export.id}) layer by layer")
        files.append(_diagnose_file(export, models, labels, req, profile))
    quantization = [_quantization(models, source, req) for source, _, _ in models._int8.values()]
    latency = None
    if req.latency and profile.connection.type == "emulated":
        latency = {"device": profile.name, "where": profile.describe_connection(), "files": [],
                   "unavailable": f"{profile.name} runs emulated here: the speed is the emulator's, not the "
                                  "device's, so no operator is timed"}
    elif req.latency:
        from edgeres.diagnose.oplatency import profile_files

        latency = profile_files(exports, profile=profile, threads=req.threads, points=models.points, image=x[:1])
    report = {"model": root.manifest["model"], "root": root.id, "device": profile.name,
              "where": profile.describe_connection(), "dataset": images.dataset, "images": int(len(labels)),
              "input_size": prep.input_size, "points": [p.name for p in models.points], "files": files,
              "quantization": quantization, "latency": latency,
              "seconds": round(time.perf_counter() - start, 1)}
    failures = gates(report, req)
    report["gates"] = {"min_sqnr_db": req.min_sqnr, "max_fallback": req.max_fallback, "failures": failures}
    artifact = _save(ws, root, exports, report, req)
    return DiagnoseResult(artifact, report, failures)


def _save(ws: Workspace, root: Artifact, exports: list[Artifact], report: dict, req: DiagnoseRequest) -> Artifact:
    from edgeres.diagnose import plot

    parent = exports[0] if len(exports) == 1 else root
    config = req.model_dump(mode="json", include=set(DiagnoseOptions.model_fields)) | {
        "exports": [a.id for a in exports]}
    worst = {f"{f['format']} {f['precision']}": {"min_sqnr_db": f["min_sqnr_db"], "culprits": f["culprits"]}
             for f in report["files"]}
    with ws.create("diagnose", model=root.manifest["model"], dataset=report["dataset"], parent=parent,
                   config=config) as art:
        (art.dir / REPORT_FILES["json"]).write_text(json.dumps(report, indent=1, allow_nan=False))
        plot.sqnr_by_depth(report, art.dir / REPORT_FILES["png"])
        art.manifest["metrics"] = {"files": worst, "gates_failed": len(report["gates"]["failures"])}
    assert art.artifact is not None
    return art.artifact
