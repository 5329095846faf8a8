"""``run_tune``: the search, stage by stage, and the ``tune`` artifact.

1. The unpruned model's files, every target and precision asked (int8 by PTQ, and QAT with ``qat``), are
   exported and measured on the device: they are the single-step variants, and their p50s are the
   latency table the pruned models' files are estimated from (p50 scaled by the model's MACs).
2. Each pruning ratio, smallest first: the model is pruned and fine-tuned once (shared by all of its
   candidates) and scored on val in torch; over the budget, it and every larger ratio stop there (they
   would only lose more). Its int8 models likewise. Of its files, only those whose estimate is within
   ``ESTIMATE_SLACK`` of the fastest estimate of the same model and precision class are exported and
   measured; the others are recorded as dominated by that estimate.
3. Every measured candidate's accuracy for decisions is the val top-1 of its file in its runtime; its p50
   and test top-1 come from the same bench row, the same file at the model's own input size. The front,
   the choice and the reasons follow (``pareto``); the chosen file is copied into the ``tune`` artifact.

``budget_minutes`` stops the search from starting new work once spent; what was finished is kept as
artifacts and found again by the next run (``evaluate.Maker``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

from edgeres.console import plain, say, warn
from edgeres.errors import EdgeresError, first_line
from edgeres.tune import pareto
from edgeres.tune.evaluate import Maker, file_val_top1, macs, torch_val_top1, val_images
from edgeres.tune.space import ESTIMATE_SLACK, Candidate, TuneRequest, candidates, ratios, validate
from edgeres.workspace import Artifact, Workspace


@dataclass
class TuneResult:
    """The saved ``tune`` artifact and its results (``tune.json``)."""

    artifact: Artifact
    results: dict[str, Any]


class _Clock:
    """The search's time budget: no new work is started once it is spent."""

    def __init__(self, minutes: float | None):
        self.start, self.minutes = time.perf_counter(), minutes

    def spent(self) -> bool:
        return self.minutes is not None and time.perf_counter() - self.start > self.minutes * 60

    def minutes_used(self) -> float:
        return round((time.perf_counter() - self.start) / 60, 2)


def _record(c: Candidate, status: str, **values: Any) -> dict[str, Any]:
    return {"name": c.name, "ratio": c.ratio, "quant": c.quant, "target": c.target, "precision": c.precision,
            "marker": c.marker, "status": status, **values}


class _Search:
    def __init__(self, ws: Workspace, req: TuneRequest, base: Artifact):
        self.ws, self.req, self.base = ws, req, base
        self.maker = Maker(ws, req, base)
        self.clock = _Clock(req.budget_minutes)
        self.records: list[dict[str, Any]] = []
        self.x_val, self.y_val = val_images(base, req)
        self.base_val = torch_val_top1(base, self.x_val, self.y_val)
        self.base_macs = macs(base)
        self.anchor: dict[tuple[str, str, str], float] = {}  # (target, precision, quant) -> unpruned p50
        self.stopped = False
        say(f"tune {base.id} for {req.device}: budget {req.max_drop:g} pp of val top-1 (FP32 "
            f"{self.base_val:.2f}% on {len(self.y_val)} val images)"
            + (f", {req.budget_minutes:g} min" if req.budget_minutes else ""))

    def _out_of_time(self, pending: list[Candidate]) -> bool:
        if not self.clock.spent():
            return False
        if not self.stopped:
            warn(f"the search budget of {self.req.budget_minutes:g} min is spent: starting nothing new (run the "
                 "same command again to go on; finished candidates are reused)")
        self.stopped = True
        for c in pending:
            self.records.append(_record(c, "not-reached", reason="not reached: the search budget was spent"))
        return True

    def _measure(self, c: Candidate, source: Artifact, model_macs: float, estimate: float | None) -> None:
        """Export, score on val and measure one candidate; a failure is recorded and the search goes on."""
        before = len(self.maker.made)
        try:
            export = self.maker.exported(source, c)
            val = file_val_top1(export, self.x_val, self.y_val)
            bench, row = self.maker.measured(export)
        except EdgeresError as exc:
            self.records.append(_record(c, "failed", reason=f"failed: {first_line(exc)}", model=source.id))
            plain(f"candidate {c.name}: failed: {first_line(exc)}")
            return
        kind = row.get("latency_kind")
        p50 = row.get("p50_ms") if kind == "measured" else row.get("estimated_p50_ms")
        if row.get("status") == "failed" or p50 is None:
            self.records.append(_record(c, "failed", reason=f"failed on {self.req.device}: {row.get('error')}",
                                        model=source.id, export=export.id, bench=bench.id))
            plain(f"candidate {c.name}: failed on the device: {row.get('error')}")
            return
        reused = len(self.maker.made) == before
        record = _record(c, "measured", model=source.id, export=export.id, bench=bench.id, reused=reused,
                         val_top1=round(val, 3), val_drop_pp=round(self.base_val - val, 3), test_top1=row.get("top1"),
                         test_n=row.get("n"), p50_ms=p50, latency_kind=kind, size_bytes=export.manifest["metrics"]
                         ["size_bytes"], macs=model_macs, mac_estimate_ms=estimate,
                         file=str(export.file(export.manifest["file"])))
        self.records.append(record)
        if c.ratio == 0:
            self.anchor[(c.target, c.precision, c.quant)] = p50
        plain(f"candidate {c.name}: {'reused' if reused else kind}, val top-1 {val:.2f}% "
                      f"({self.base_val - val:+.2f} pp drop), p50 {p50:.3g} ms ({kind}), "
                      f"{record['size_bytes'] / 1e6:.2f} MB")

    def _sources(self, model: Artifact, wanted: list[Candidate]) -> dict[str, Artifact | None]:
        """The float model and each int8 model the candidates need (None: over the budget on val)."""
        sources: dict[str, Artifact | None] = {"none": model}
        for quant in dict.fromkeys(c.quant for c in wanted if c.quant != "none"):
            sources[quant] = self.maker.quantized(model, quant)
        return sources

    def unpruned(self) -> None:
        wanted = candidates(self.req, 0.0)
        sources = self._sources(self.base, wanted)
        for i, c in enumerate(wanted):
            if self._out_of_time(wanted[i:]):
                return
            self._measure(c, sources[c.quant], self.base_macs, None)

    def pruned(self, ratio: float) -> bool:
        """Search one ratio; False when it lost more than the budget on val (larger ratios are skipped)."""
        wanted = candidates(self.req, ratio)
        if self._out_of_time(wanted):
            return True
        model = self.maker.pruned(ratio)
        float_val = torch_val_top1(model, self.x_val, self.y_val)
        if self.base_val - float_val > self.req.max_drop:
            why = (f"pruned {ratio:g} loses {self.base_val - float_val:.2f} pp of val top-1 in torch after "
                   f"fine-tuning, over the budget: not exported")
            say(why)
            self.records += [_record(c, "dropped", reason=why, model=model.id) for c in wanted]
            return False
        if self._out_of_time(wanted):
            return True
        model_macs = macs(model)
        sources = self._sources(model, wanted)
        val = {quant: float_val if quant == "none" else torch_val_top1(src, self.x_val, self.y_val)
               for quant, src in sources.items()}
        estimates = {c: self.anchor[(c.target, c.precision, c.quant)] * model_macs / self.base_macs
                     for c in wanted if (c.target, c.precision, c.quant) in self.anchor}
        todo = []
        for c in wanted:
            if self.base_val - val[c.quant] > self.req.max_drop:
                self.records.append(_record(c, "dropped", model=sources[c.quant].id, reason=(
                    f"its torch model loses {self.base_val - val[c.quant]:.2f} pp of val top-1, over the budget: "
                    "not exported")))
                continue
            rivals = [(e, o) for o, e in estimates.items() if o.family == c.family and o != c]
            best = min(rivals, key=lambda t: t[0], default=None)
            if c in estimates and best is not None and estimates[c] > best[0] * ESTIMATE_SLACK:
                self.records.append(_record(c, "dropped", model=sources[c.quant].id, mac_estimate_ms=estimates[c],
                                            reason=f"estimated p50 {estimates[c]:.3g} ms, over {ESTIMATE_SLACK}x "
                                                   f"{best[1].name}'s {best[0]:.3g} ms (same model): not measured"))
                continue
            todo.append(c)
        for i, c in enumerate(todo):
            if self._out_of_time(todo[i:]):
                return True
            self._measure(c, sources[c.quant], model_macs, estimates.get(c))
        return True


def _lineage(ws: Workspace, artifact_id: str) -> list[dict[str, Any]]:
    """The chosen file's artifacts, from the export up to the FP32 root."""
    chain, current = [], ws.resolve(artifact_id)
    while current is not None:
        chain.append({"id": current.id, "kind": current.kind, "what": current.describe()})
        current = ws.parent_of(current)
    return chain


def run_tune(req: TuneRequest, ws: Workspace) -> TuneResult:
    """Search, choose and save a ``tune`` artifact (``tune.json``, ``tune.png`` and the chosen file)."""
    from edgeres import devices
    from edgeres.export.step import _files_of
    from edgeres.train import fp32_model, set_threads
    from edgeres.tune import report

    validate(req)
    devices.get(req.device, req.devices_dir)  # an unknown device fails before any work
    if req.output is not None and req.output.exists() and not req.output.is_dir():
        raise EdgeresError(f"--output {req.output} exists and is not a directory")
    set_threads()
    base = fp32_model(ws, req.model, kinds=("train",), dataset=None, data_dir=req.data_dir,
                      eval_limit=req.eval_limit, epochs=None)
    if base.kind != "train":
        raise EdgeresError(f"{base.id} is a {base.kind} artifact; tune starts from an FP32 train artifact",
                           hint="name the trained model (or its train artifact); tune prunes and quantizes it")
    search = _Search(ws, req, base)
    search.unpruned()
    for ratio in ratios(req)[1:]:
        if not search.pruned(ratio):
            for later in [r for r in ratios(req) if r > ratio]:
                search.records += [_record(c, "dropped", reason=f"not tried: pruning {ratio:g} already lost more "
                                           "than the budget on val") for c in candidates(req, later)]
            break
    records = search.records
    chosen = pareto.choose(records, req.max_drop)
    pareto.explain(records, chosen, req.max_drop)
    single = [r for r in records if r["ratio"] == 0 and r["quant"] == "ptq" and r["status"] == "measured"]
    single_best = min(single, key=lambda r: r["p50_ms"], default=None)
    results: dict[str, Any] = {
        "model": base.manifest["model"], "dataset": base.manifest["dataset"], "root": base.id,
        "device": req.device, "max_drop_pp": req.max_drop, "fp32_val_top1": round(search.base_val, 3),
        "val_images": int(len(search.y_val)), "fp32_macs": search.base_macs,
        "stopped": search.stopped, "minutes": search.clock.minutes_used(),
        "reused": search.maker.reused, "made": search.maker.made,
        "chosen": chosen["name"] if chosen else None,
        "single_step": single_best["name"] if single_best else None,
        "speedup_vs_single_step": (round(single_best["p50_ms"] / chosen["p50_ms"], 3)
                                   if chosen and single_best else None),
        "front": [r["name"] for r in pareto.front(records)],
        "lineage": _lineage(ws, chosen["export"]) if chosen else [],
        "candidates": records,
    }
    config = req.model_dump(mode="json")
    parent = ws.resolve(chosen["export"]) if chosen else base
    with ws.create("tune", model=base.manifest["model"], dataset=base.manifest["dataset"], parent=parent,
                   config=config) as art:
        report.save(results, art.dir)
        if chosen:
            export = ws.resolve(chosen["export"])
            for f in _files_of(export.file(export.manifest["file"])):
                shutil.copy2(f, art.dir / f"{report.ship_name(results, chosen)}{f.suffix}")
        art.manifest["metrics"] = {k: results[k] for k in ("chosen", "speedup_vs_single_step", "stopped")}
    assert art.artifact is not None
    if chosen and req.output is not None:
        req.output.mkdir(parents=True, exist_ok=True)
        for f in art.artifact.path.glob(f"{report.ship_name(results, chosen)}.*"):
            shutil.copy2(f, req.output / f.name)
    return TuneResult(art.artifact, results)
