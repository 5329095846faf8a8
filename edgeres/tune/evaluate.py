"""Making and measuring one candidate with the library calls the commands use (``run_prune``,
``run_quantize``, ``run_export``, ``run_bench``). Each result is an artifact; before making one, the
workspace is searched for an intact artifact made from the same parent with the same configuration, so a
stopped or repeated search reuses every finished piece (a pruned model's fine-tuning, a quantization, an
export, a measurement) instead of redoing it."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from edgeres.console import say
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS
from edgeres.tune.space import Candidate, TuneRequest
from edgeres.workspace import Artifact, Workspace

# Request fields a step fills in itself when left None (the saved config then holds the value used).
_FILLED = {"round_to", "ratio", "dataset", "train_epochs"}


class Maker:
    """Finds or makes the artifacts behind candidates, for one search (``req``) from one FP32 model."""

    def __init__(self, ws: Workspace, req: TuneRequest, base: Artifact):
        self.ws, self.req, self.base = ws, req, base
        self.reused: list[str] = []  # artifact ids found again, in order
        self.made: list[str] = []

    # -- finding ---------------------------------------------------------------------------------
    def _find(self, kind: str, parent: Artifact, config: dict[str, Any], **fields: Any) -> Artifact | None:
        """The newest intact ``kind`` artifact of ``parent`` whose config has every entry of ``config``
        (entries a step fills in are skipped when None) and whose manifest has ``fields``."""
        def matches(m: dict) -> bool:
            saved = m.get("config") or {}
            return (m.get("parent") == parent.id and all(m.get(k) == v for k, v in fields.items())
                    and all(saved.get(k) == v for k, v in config.items()
                            if not (v is None and k in _FILLED)))

        for artifact in self.ws.artifacts(kind, where=matches):
            if artifact.intact():
                self.reused.append(artifact.id)
                return artifact
        return None

    def _made(self, artifact: Artifact) -> Artifact:
        self.made.append(artifact.id)
        return artifact

    # -- the models ------------------------------------------------------------------------------
    def pruned(self, ratio: float) -> Artifact:
        """The FP32 model at ``ratio`` (the base itself at 0): pruned and fine-tuned once, shared by every
        candidate of that ratio."""
        from edgeres.prune import PruneRequest, run_prune

        if ratio == 0:
            return self.base
        r = self.req
        request = PruneRequest(model=self.base.id, ratio=ratio, finetune_epochs=r.finetune_epochs, limit=r.limit,
                               val_limit=r.val_limit, eval_limit=r.eval_limit, data_dir=r.data_dir)
        found = self._find("prune", self.base, request.model_dump(mode="json"))
        if found is not None:
            say(f"pruned {ratio:g}: reusing {found.id}")
            return found
        say(f"pruning {ratio:g} and fine-tuning {r.finetune_epochs} epoch(s), once for every candidate of it")
        return self._made(run_prune(request, self.ws))

    def quantized(self, model: Artifact, quant: str) -> Artifact:
        """The int8 model of ``model`` by PTQ or QAT (shared by every int8 file of it)."""
        from edgeres.quantize.step import QuantizeRequest, run_quantize

        r = self.req
        qat = {"method": "qat", "epochs": r.qat_epochs, "train_limit": r.limit} if quant == "qat" else {}  # PTQ: unused
        request = QuantizeRequest(model=model.id, calib_samples=r.calib_samples, val_limit=r.val_limit,
                                  eval_limit=r.eval_limit, data_dir=r.data_dir, **qat)
        found = self._find("quantize", model, request.model_dump(mode="json"))
        if found is not None:
            say(f"{quant.upper()} int8 of {model.id}: reusing {found.id}")
            return found
        return self._made(run_quantize(request, self.ws))

    # -- one candidate ---------------------------------------------------------------------------
    def exported(self, source: Artifact, candidate: Candidate) -> Artifact:
        """The verified file of ``candidate`` exported from ``source`` (the float or the int8 model)."""
        from edgeres.export.step import ExportRequest, run_export

        fmt = FORMATS[candidate.target]
        request = ExportRequest(targets=[candidate.target], precisions=[candidate.precision], model=source.id,
                                data_dir=self.req.data_dir)
        options = {k: allowed[0] for k, allowed in fmt.options.items()}
        found = self._find("export", source, {"options": options, "verify_limit": request.verify_limit,
                                              "calib_samples": request.calib_samples},
                           format=candidate.target, precision=candidate.precision)
        if found is not None:
            return found
        return self._made(run_export(request, self.ws)[0])

    @cached_property
    def device_usable(self) -> bool:
        from edgeres import devices

        return devices.usable(devices.get(self.req.device, self.req.devices_dir))[0]

    def measured(self, export: Artifact) -> tuple[Artifact, dict[str, Any]]:
        """The bench of ``export`` alone on the device (beside its FP32 baseline, as bench always does) and
        its row. A bench estimated while the device was away is reused only while it still is away."""
        from edgeres.bench import BenchRequest, run_bench
        from edgeres.report import load

        r = self.req
        request = BenchRequest(device=r.device, exports=[export.id], eval_limit=r.eval_limit, rounds=r.rounds,
                               min_runs=r.min_runs, min_seconds=r.min_seconds, devices_dir=r.devices_dir,
                               data_dir=r.data_dir)
        found = self._find("bench", _root_of(self.ws, export),
                           request.model_dump(mode="json"))
        if found is not None and (found.manifest.get("mode") == "measured" or not self.device_usable):
            results = load(found)
        else:
            if found is not None:
                self.reused.remove(found.id)
            bench = run_bench(request, self.ws)
            found, results = self._made(bench.artifact), bench.results
        row = next(row for row in results["rows"] if row.get("role") == "variant")
        return found, row


def _root_of(ws: Workspace, export: Artifact) -> Artifact:
    """The FP32 artifact a bench of ``export`` hangs from (its parent, as bench records it)."""
    from edgeres.workspace import fp32_root

    index = {a.id: a for a in ws.artifacts()}
    return fp32_root(export, index)


def val_images(base: Artifact, req: TuneRequest) -> tuple[np.ndarray, np.ndarray]:
    """The validation images every decision is taken on (never the reported test images)."""
    from edgeres import data
    from edgeres.preprocessing import Preprocessing

    prep = Preprocessing.from_dict(base.manifest["preprocessing"])
    x, y = data.as_tensors(data.source_of(base.manifest, data_dir=req.data_dir).load("val", prep, req.val_limit))
    return np.ascontiguousarray(x.numpy(), np.float32), y.numpy()


def torch_val_top1(model: Artifact, x: np.ndarray, y: np.ndarray) -> float:
    """Val top-1 of a train/prune/quantize artifact's torch model (the cheap gate before exporting)."""
    import torch

    from edgeres.evaluate import load_model
    from edgeres.quantize.sensitivity import logits_of, top1

    return float(top1(logits_of(load_model(model), torch.from_numpy(x)), y))


def file_val_top1(export: Artifact, x: np.ndarray, y: np.ndarray) -> float:
    """Val top-1 of the exported file itself, in its runtime on this host: the accuracy decisions use."""
    from edgeres.runtimes import RuntimeUnavailable, open_session

    fmt = FORMATS[export.manifest["format"]]
    path = fmt.runnable_here(export.file(export.manifest["file"]))
    try:
        logits = open_session(path, fmt.runtime).run_batched(x)
    except RuntimeUnavailable as exc:
        raise EdgeresError(f"cannot run {path.name} for its val top-1: {exc}") from None
    return float((logits.argmax(1) == y).mean() * 100)


def macs(model: Artifact) -> float:
    """Multiply-accumulates of one inference of a train/prune model (bench's own count)."""
    from edgeres.bench.measure import macs_params

    return macs_params(model)[0]
