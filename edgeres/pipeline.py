"""``edgeres run RECIPE``: the recipe's steps in order, each producing its artifacts, resumable.

Each step has a key: the hash of everything its result depends on (edgeres's own code, the recipe's model,
data and preprocessing, the contents of the data files and the weights, the step's options, the artifacts
it reads, and for bench the device profiles). The workspace remembers, per recipe, which artifacts each key
produced (``.pipeline/<recipe>.json``, written atomically after every step). A re-run skips a step whose key
is unchanged and whose artifacts are still there and intact (their hashes checked), so an interrupted run
resumes after its last finished step and an unchanged recipe costs seconds; a bench is replayed only if it
was measured on the device. A key does not hold the recipe's name: a step that another recipe ran with the
same key is reused too (recipes that train the same model on the same data train it once). ``--from STEP``
re-runs that step and everything after it. A recipe's bench measures the exports of its own run, never
other files of the workspace.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeres.console import say
from edgeres.errors import EdgeresError, first_line
from edgeres.recipe import Recipe
from edgeres.workspace import Artifact, Workspace


@dataclass
class StepOutcome:
    step: str
    status: str  # "ran" | "skipped" | "planned"
    artifacts: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    outcomes: list[StepOutcome]
    bench: list[Any] = field(default_factory=list)  # BenchResult per device


class _State:
    """Step key -> artifact ids, per recipe, in the workspace. Concurrent runs of one recipe merge their
    records under a file lock instead of overwriting each other's."""

    def __init__(self, ws: Workspace, recipe: Recipe):
        self.path = ws.root / ".pipeline" / f"{recipe.name}.json"
        self.data = self._read()

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def lookup(self, key: str, ws: Workspace) -> list[Artifact] | None:
        """The artifacts a step with this key made, if every one is still there and intact, and (for a
        bench) was measured on the device: an estimate made while a device was away is not replayed."""
        ids = self.data.get(key) or self._made_by_another_recipe(key)
        if not ids:
            return None
        try:
            found = [ws.resolve(i) for i in ids]
            for artifact in found:
                artifact.verify()
        except EdgeresError as exc:
            say(f"not reusing an earlier result: {first_line(exc) if str(exc).strip() else 'it is gone'}")
            return None  # deleted or damaged: run the step again
        if any(a.kind == "bench" and a.manifest.get("mode", "measured") != "measured" for a in found):
            return None
        return found

    def _made_by_another_recipe(self, key: str) -> list[str] | None:
        """What another recipe's step with this key made: a key holds everything a result depends on but
        the recipe's name, so three recipes that train the same model on the same data train it once."""
        for path in sorted(self.path.parent.glob("*.json")):
            if path == self.path:
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get(key), list) and data[key]:
                return data[key]
        return None

    def record(self, key: str, artifacts: list[Artifact]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.data = {**self._read(), key: [a.id for a in artifacts]}
            tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.data, indent=1))
            os.replace(tmp, self.path)


def _source_digest() -> str:
    """A hash of edgeres's own code: a new version never replays a step an older one made."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    from edgeres.workspace import sha256

    return sha256(path)


def _data_fingerprint(root: Path | None) -> str | None:
    """Names, sizes and modification times of the files under a data directory (cheap; a changed or
    replaced file changes it)."""
    if root is None or not root.exists():
        return None
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root) if root.is_dir() else path.name}:{stat.st_size}:"
                          f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _key(step: str, recipe: Recipe, options: Any, inputs: list[str]) -> str:
    """What a step's result depends on: edgeres's code, the recipe's model, data and preprocessing, the
    contents of the data and the weights, the step's options and the artifacts it reads (and for bench,
    the device profiles' contents)."""
    payload: dict[str, Any] = {
        "step": step, "code": _source_digest(), "options": options.model_dump(mode="json"), "inputs": inputs,
        "recipe": recipe.model_dump(mode="json", exclude={"steps", "name", "description"}),
    }
    if step in ("import", "train"):
        weights = Path(recipe.weights) if recipe.weights and recipe.weights != "imagenet" else None
        payload["weights_sha256"] = _file_digest(weights) if weights and weights.is_file() else None
        payload["data_files"] = _data_fingerprint(recipe.data)
    if step == "bench":
        from edgeres import devices

        payload["profiles"] = {name: hashlib.sha256(devices.get(name).path.read_bytes()).hexdigest()[:16]
                               for name in options.devices}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(recipe: Recipe, ws: Workspace, from_step: str | None = None, device: str | None = None,
        dry_run: bool = False) -> RunResult:
    """Execute (or with ``dry_run`` only plan) the recipe in ``ws``."""
    if from_step is not None and from_step not in recipe.enabled_steps():
        raise EdgeresError(f"--from {from_step!r} is not a step of recipe {recipe.name}",
                           hint=f"its steps: {', '.join(recipe.enabled_steps())}")
    if device is not None and recipe.steps.bench is not None:
        from edgeres import devices

        devices.get(device)  # unknown device: fail before any work
        recipe.steps.bench.devices = [device]
    _require_extras(recipe)
    state = _State(ws, recipe)
    forced = False
    unknown_inputs = False  # a step before would run: later keys cannot be known in a dry run
    outcomes: list[StepOutcome] = []
    current: dict[str, list[Artifact]] = {}
    result = RunResult(outcomes)
    for step in recipe.enabled_steps():
        options = recipe.step(step)
        forced = forced or step == from_step
        inputs = [a.id for s in ("import", "train", "prune", "quantize", "export") if s in current and s != step
                  for a in current[s]]
        key = _key(step, recipe, options, inputs)
        found = None if forced or unknown_inputs else state.lookup(key, ws)
        if found is not None:
            if state.data.get(key) != [a.id for a in found]:  # another recipe's: this recipe's now too
                state.record(key, found)
            current[step] = found
            outcomes.append(StepOutcome(step, "skipped", [a.id for a in found]))
            say(f"[dim]{step}: unchanged, skipped ({', '.join(a.id for a in found[:3])}"
                f"{' ...' if len(found) > 3 else ''})[/]")
            if step == "bench":
                result.bench = [_saved_bench(a) for a in found]
            continue
        if dry_run:
            outcomes.append(StepOutcome(step, "planned"))
            say(f"{step}: would run")
            unknown_inputs = True
            continue
        say(f"[bold]{step}[/]")
        produced = _RUNNERS[step](recipe, options, ws, current, result)
        state.record(key, produced)
        current[step] = produced
        outcomes.append(StepOutcome(step, "ran", [a.id for a in produced]))
    return result


def _require_extras(recipe: Recipe) -> None:
    """Fail before any work when a step needs an extra that is not installed (int8, OpenVINO, TFLite)."""
    from edgeres import extras
    from edgeres.export.formats import get_format
    from edgeres.recipe import formats

    steps = recipe.enabled_steps()
    export = recipe.step("export") if "export" in steps else None
    if "quantize" in steps or (export is not None and "int8" in export.precisions):
        extras.require("quantize", f"recipe {recipe.name} (int8)")
    for target in formats(export.targets) if export is not None else ():
        extra = get_format(target).extra
        if extra:
            extras.require(extra, f"recipe {recipe.name} (export to {target})")


def _saved_bench(artifact: Artifact):
    from edgeres.bench import BenchResult
    from edgeres.report import load

    return BenchResult(artifact, load(artifact))


# -- the steps --------------------------------------------------------------------------------------
def _float_source(current: dict[str, list[Artifact]]) -> str | None:
    """The id of this run's FP32 model, None when the recipe starts from the workspace's."""
    for step in ("prune", "train", "import"):
        if step in current:
            return current[step][0].id
    return None


def _import(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.train import TrainRequest, run_import

    return [run_import(TrainRequest.of(model=recipe.model, origin=recipe, options=o), ws)]


def train_request(recipe: Recipe):
    """The ``TrainRequest`` a recipe's train step makes (also what benchmarks/train_fp32.py trains)."""
    from edgeres.train import TrainRequest

    return TrainRequest.of(model=recipe.model, origin=recipe, options=recipe.steps.train)


def _train(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.train import run_train

    return [run_train(train_request(recipe), ws)]


def _prune(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.prune import PruneRequest, run_prune

    source = _float_source(current)
    return [run_prune(PruneRequest.of(o, model=source or recipe.model, dataset=None if source else recipe.dataset,
                                      data_dir=recipe.data), ws)]


def _quantize(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.quantize.step import QuantizeRequest, run_quantize

    source = _float_source(current)
    return [run_quantize(QuantizeRequest.of(o, model=source or recipe.model,
                                            dataset=None if source else recipe.dataset, data_dir=recipe.data), ws)]


def _export(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.export.step import ExportRequest, run_export

    source = current["quantize"][0].id if "quantize" in current else _float_source(current)
    return run_export(ExportRequest.of(o, model=source or recipe.model, data_dir=recipe.data), ws)


def _bench(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.bench import BenchRequest, run_bench

    model = current["export"][0].id if "export" in current else None
    exports = [a.id for a in current["export"]] if "export" in current else None  # this run's, not stale ones
    produced = []
    for device in o.devices:
        bench = run_bench(BenchRequest.of(o, device=device, model=model, exports=exports, data_dir=recipe.data), ws)
        result.bench.append(bench)
        produced.append(bench.artifact)
    return produced


def _tune(recipe: Recipe, o, ws: Workspace, current, result) -> list[Artifact]:
    from edgeres.tune import TuneRequest, run_tune

    source = next((current[s][0].id for s in ("train", "import") if s in current), None)  # not a pruned one
    return [run_tune(TuneRequest(**o.model_dump(), model=source or recipe.model, data_dir=recipe.data), ws).artifact]


_RUNNERS: dict[str, Callable[..., list[Artifact]]] = {
    "import": _import, "train": _train, "prune": _prune, "quantize": _quantize, "export": _export,
    "bench": _bench, "tune": _tune,
}
