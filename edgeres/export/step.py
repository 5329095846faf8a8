"""The ``export`` step: a model artifact in, one verified ``export`` artifact per target and precision out."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgeres import __version__, data, extras
from edgeres.console import say, warn
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, ExportJob, Format, get_format
from edgeres.export.verify import failure, verify
from edgeres.preprocessing import Preprocessing
from edgeres.recipe import ExportStep
from edgeres.request import Request
from edgeres.workspace import FP32_KINDS, Artifact, Workspace


class ExportRequest(Request, ExportStep):
    """What ``edgeres export`` asks for: an export step's options, of one model."""

    model: Optional[str] = None  # artifact id/path or model name; None: the latest (int8 preferred)
    output: Optional[Path] = None  # also copy the exported files here
    force: bool = False
    data_dir: Optional[Path] = None  # None: the data directory recorded in the model's lineage

    @property
    def options(self) -> dict[str, str]:
        """The per-format options asked for (``Format.options`` keys), e.g. ``{"io": "float"}``."""
        return ({"io": self.io} if self.io else {}) | ({"compile": "edgetpu"} if self.edgetpu else {})

    @classmethod
    def of(cls, options: ExportStep, **where) -> ExportRequest:
        """What an export step's declared options ask for, of the model ``where`` names (``edgeres export``,
        recipes)."""
        return cls(**options.model_dump(), **where)


def _validate(req: ExportRequest) -> list[Format]:
    """The formats to export, each one's extra installed (``all``: those installed, the others named)."""
    formats = [get_format(t) for t in dict.fromkeys(list(FORMATS) if "all" in req.targets else req.targets)]
    if "all" in req.targets:
        skipped = [f for f in formats if f.extra and extras.missing(f.extra)]
        if skipped:
            warn("not exporting " + ", ".join(f"{f.name} ({extras.install_command(f.extra)})" for f in skipped))
        formats = [f for f in formats if f not in skipped]
    for fmt in formats:
        if fmt.extra:
            extras.require(fmt.extra, f"export --target {fmt.name}")
        for precision in req.precisions or []:
            if precision not in fmt.precisions:
                raise EdgeresError(f"{fmt.name} cannot export {precision}",
                                   hint=f"it offers {', '.join(fmt.precisions)}")
    if req.edgetpu:
        from edgeres.export import edgetpu

        edgetpu.require()  # before any conversion
    return formats


class Sources:
    """The float and int8 torch models behind an export, and the data to calibrate and verify with,
    each made once and only when needed."""

    def __init__(self, ws: Workspace, picked: Artifact, req: ExportRequest, tmp: Path):
        self.ws, self.req, self.tmp = ws, req, tmp
        if picked.kind == "quantize":
            self.int8_artifact: Artifact | None = picked
            parent = ws.parent_of(picked)
            if parent is None:
                raise EdgeresError(f"{picked.id} records no FP32 parent")
            self.float_artifact = parent
        elif picked.kind in FP32_KINDS:
            self.float_artifact = picked
            self.int8_artifact = ws.latest("quantize", where=lambda m: m.get("parent") == picked.id)
        else:
            raise EdgeresError(f"{picked.id} is a {picked.kind} artifact; export needs a model artifact")
        self.prep = Preprocessing.from_dict(self.float_artifact.manifest["preprocessing"])
        self.images = data.source_of(self.float_artifact.manifest, data_dir=req.data_dir)
        self.dataset = self.images.dataset
        self.reference_logits: dict[str, np.ndarray] = {}

    def artifact_for(self, precision: str) -> Artifact:
        if precision != "int8":
            return self.float_artifact
        if self.int8_artifact is None:
            raise EdgeresError(f"no int8 model of {self.float_artifact.id} to export",
                               hint=f"quantize it first: `edgeres quantize {self.float_artifact.id} --int8`")
        return self.int8_artifact

    @cached_property
    def float_model(self) -> torch.nn.Module:
        from edgeres.quantize.fold import fold_batchnorm
        from edgeres.train import load_fp32

        return fold_batchnorm(load_fp32(self.float_artifact))

    @cached_property
    def int8_model(self) -> torch.nn.Module:
        from edgeres.quantize.step import load_quantized

        return load_quantized(self.artifact_for("int8"))

    def float_onnx(self) -> Path:
        path = self.tmp / "float.onnx"
        if not path.exists():
            from edgeres.export.onnx import torch_to_onnx

            torch_to_onnx(self.float_model, path, self.prep.input_shape(1))
        return path

    @cached_property
    def calibration(self) -> np.ndarray:
        x, _ = data.as_tensors(self.images.load("train", self.prep, self.req.calib_samples))
        return x.numpy()

    @cached_property
    def verify_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = data.as_tensors(self.images.load("test", self.prep, self.req.verify_limit))
        return x.numpy(), y.numpy()

    def reference(self, which: str) -> np.ndarray:
        if which not in self.reference_logits:
            from edgeres.quantize.sensitivity import logits_of

            model = self.int8_model if which == "int8" else self.float_model
            self.reference_logits[which] = logits_of(model, torch.from_numpy(self.verify_data[0]))
        return self.reference_logits[which]

    def metadata(self, source: Artifact, fmt: Format, precision: str) -> dict[str, str]:
        m = source.manifest
        return {
            "edgeres.version": __version__,
            "edgeres.model": m["model"],
            "edgeres.dataset": m["dataset"],
            "edgeres.precision": precision,
            "edgeres.format": fmt.name,
            "edgeres.parent": source.id,
            "edgeres.preprocessing": json.dumps(self.prep.to_dict()),
            "edgeres.classes": json.dumps(m.get("classes") or []),
        }


def _files_of(path: Path) -> list[Path]:
    """The main file and its companions (OpenVINO's .bin)."""
    companion = path.with_suffix(".bin")
    return [path, companion] if path.suffix == ".xml" and companion.exists() else [path]


def _check_output(req: ExportRequest) -> None:
    if req.output is None:
        return
    if req.output.exists() and not req.output.is_dir():
        raise EdgeresError(f"--output {req.output} exists and is not a directory")
    if req.output.exists() and any(req.output.iterdir()) and not req.force:
        raise EdgeresError(f"--output {req.output} is not empty; refusing to overwrite",
                           hint="pass --force to overwrite, or choose another directory")


def run_export(req: ExportRequest, ws: Workspace) -> list[Artifact]:
    """Export, verify and save; keeps going past a failing target and raises at the end if any failed."""
    from edgeres.train import set_threads

    formats = _validate(req)
    _check_output(req)
    set_threads()
    picked = ws.pick(req.model, ("quantize", "prune", "train"))
    done: list[Artifact] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeres-export-") as tmp:
        src = Sources(ws, picked, req, Path(tmp))
        wanted = req.precisions or [picked.manifest.get("precision", "fp32")]
        if "int8" in wanted:
            src.artifact_for("int8")  # fail before any work when there is no int8 model
            extras.require("quantize", "int8 export")
        for fmt in formats:
            for precision in wanted:
                try:
                    done.append(_export_one(ws, src, fmt, precision, req))
                except EdgeresError as exc:
                    failures.append(f"{fmt.name} {precision}: {exc}")
                    say(f"[red]failed[/] {fmt.name} {precision}: {exc}")
    if req.output is not None and done:
        req.output.mkdir(parents=True, exist_ok=True)
        for artifact in done:
            for f in _files_of(artifact.file(artifact.manifest["file"])):
                shutil.copy2(f, req.output / f"{artifact.manifest['model']}-{artifact.manifest['precision']}{f.suffix}")
    if failures:
        raise EdgeresError(f"{len(failures)} of {len(failures) + len(done)} exports failed: " + "; ".join(failures))
    return done


def _export_one(ws: Workspace, src: Sources, fmt: Format, precision: str, req: ExportRequest) -> Artifact:
    source = src.artifact_for(precision)
    options = {k: v for k, v in req.options.items() if k in fmt.options}
    options = {k: options.get(k, allowed[0]) for k, allowed in fmt.options.items()}
    say(f"exporting {fmt.name} {precision} from {source.id}")
    with ws.create("export", model=source.manifest["model"], dataset=src.dataset, parent=source,
                   config={"options": options, "verify_limit": req.verify_limit, "calib_samples": req.calib_samples},
                   format=fmt.name, precision=precision, runtime=fmt.runtime, file=f"model{fmt.suffix}",
                   architecture=source.manifest.get("architecture"), preprocessing=src.prep.to_dict(),
                   classes=source.manifest.get("classes"), data=src.images.to_manifest()) as art:
        job = ExportJob(precision=precision, out_path=art.dir / f"model{fmt.suffix}", preprocessing=src.prep,
                        torch_model=src.int8_model if precision == "int8" else src.float_model,
                        float_onnx=src.float_onnx, calibration=lambda: src.calibration,
                        metadata=src.metadata(source, fmt, precision), options=options)
        start = time.perf_counter()
        path = fmt.export_function()(job)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in _files_of(path))
        metrics: dict = {"export_seconds": round(seconds, 2), "size_bytes": size, **job.report}
        if req.verify:
            x, y = src.verify_data  # each file against the torch model it was exported from
            checked = fmt.runnable_here(path)
            result = verify(checked, fmt.runtime, x, y, src.reference("int8" if precision == "int8" else "fp32"),
                            precision)
            result["reference"] = "torch int8" if precision == "int8" else "torch fp32"
            if checked != path:
                result["file"] = f"{checked.name}, the file {path.name} was compiled from (same int8 weights)"
            metrics["verify"] = result
            metrics["test"] = {"top1": result["top1"], "n": result["n"]}
            if not result["passed"]:
                raise EdgeresError(f"verification failed: {failure(result)}")
        art.manifest["metrics"] = metrics
    assert art.artifact is not None
    verdict = ""
    if req.verify:
        v = metrics["verify"]
        verdict = (f": top-1 {v['top1']:.2f}%, agreement {v['agreement']:.2f}% with {v['reference']}, "
                   f"logit SQNR {v['sqnr_db']:.1f} dB, max |diff| {v['max_abs_diff']:.3g}")
    if "edgetpu" in metrics:
        o = metrics["edgetpu"]["offload"]
        verdict += (f"; Edge TPU: {o['subgraphs']} compiled subgraph(s), {o['on_cpu']} of the file's {o['ops']} "
                    "operators left to the CPU")
    say(f"[green]saved[/] {art.artifact.id} ({size / 1e6:.2f} MB, {seconds:.1f} s){verdict}")
    return art.artifact
