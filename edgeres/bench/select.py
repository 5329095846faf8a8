"""Choosing what to measure: one lineage's newest export per format and precision (or the exports named),
and the profile's rows of the torch model itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeres.console import say
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS, PRECISIONS
from edgeres.workspace import FP32_KINDS, Artifact, Workspace, fp32_root


@dataclass(frozen=True)
class Variant:
    """One thing to measure: an export artifact's file, or the torch model itself (``format`` torch)."""

    name: str
    artifact: Artifact
    format: str
    precision: str
    runtime: str
    file_name: str  # in the artifact

    @classmethod
    def export(cls, artifact: Artifact) -> "Variant":
        m = artifact.manifest
        return cls(f"{m['format']} {m['precision']}", artifact, m["format"], m["precision"], m["runtime"], m["file"])

    @classmethod
    def torch(cls, root: Artifact, precision: str, where: str) -> "Variant":
        from edgeres import baseline

        return cls(baseline.label(where, precision), root, "torch", precision, "torch", "model.pt")


def choices(values: list[str] | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if not values or "all" in values:
        return list(allowed)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise EdgeresError(f"unknown {what} {unknown[0]!r}", hint=f"choose from: {', '.join(allowed)}, all")
    return [v for v in allowed if v in values]


def _given_exports(ws: Workspace, refs: list[str],
                   index: dict[str, Artifact]) -> tuple[Artifact | None, list[Artifact]]:
    """The export artifacts ``refs`` name, checked: exports, one lineage, one per (format, precision)."""
    picked: dict[tuple[str, str], Artifact] = {}
    root = None
    for ref in refs:
        artifact = ws.resolve(ref)
        if artifact.kind != "export":
            raise EdgeresError(f"{artifact.id} is a {artifact.kind} artifact, not an export",
                               hint="name export artifacts (`edgeres info` lists them)")
        this_root = fp32_root(artifact, index)
        if root is not None and this_root.id != root.id:
            raise EdgeresError(f"the exports come from different models ({root.id} and {this_root.id})",
                               hint="bench one model's exports at a time")
        root = this_root
        key = (artifact.manifest.get("format"), artifact.manifest.get("precision"))
        if key in picked and picked[key].id != artifact.id:
            raise EdgeresError(f"two {' '.join(key)} exports given ({picked[key].id} and {artifact.id})",
                               hint="name one file per format and precision")
        picked[key] = artifact
    return root, list(picked.values())


def select_variants(ws: Workspace, ref: str | None, *, formats: list[str], precisions: list[str],
                    exports: list[str] | None = None, need_exports: bool = True,
                    runnable: Callable[[Artifact], bool] | None = None) -> tuple[Artifact, list[Artifact]]:
    """The lineage's root and its newest export per (format, precision) that the device can run
    (``runnable``), in the format table's order; with ``exports``, exactly those (filtered by
    ``formats``/``precisions``). Without ``need_exports`` (a device that runs the torch model itself) a
    lineage without exports is fine, its root the newest model."""
    index = {a.id: a for a in ws.artifacts()}
    all_exports = [a for a in index.values() if a.kind == "export"]  # newest first
    given_root = None
    if exports is not None:
        given_root, all_exports = _given_exports(ws, exports, index)
    picked = None
    if ref is not None:
        try:
            picked = ws.resolve(ref)
        except EdgeresError:
            picked = next((a for a in all_exports if a.manifest.get("model") == ref), None)
            if picked is None:
                raise EdgeresError(f"no artifact or exported model {ref!r} in workspace {ws.root}",
                                   hint=f"export it first: `edgeres export --model {ref} --target all`") from None
    elif given_root is not None:
        picked = given_root
    elif all_exports:
        picked = all_exports[0]
    elif not need_exports:
        picked = next((a for a in index.values() if a.kind in FP32_KINDS), None)
    if picked is None:
        raise EdgeresError(f"no export artifact in workspace {ws.root}",
                           hint="export a model first, e.g. `edgeres export --target all --precision all`")
    root = fp32_root(picked, index)
    if given_root is not None and given_root.id != root.id:
        raise EdgeresError(f"the exports given come from {given_root.id}, not from {root.id} (--model)")
    newest: dict[tuple[str, str], Artifact] = {}
    passed_over: dict[tuple[str, str], Artifact] = {}  # newer files this device cannot load
    for a in all_exports:
        key = (a.manifest.get("format"), a.manifest.get("precision"))
        if key[0] in formats and key[1] in precisions and key not in newest:
            if _root_id(a, index) == root.id:
                if runnable is None or runnable(a):
                    newest[key] = a
                else:
                    passed_over.setdefault(key, a)
    for key, a in passed_over.items():
        compiled = a.manifest["config"]["options"]["compile"]
        say(f"passing over {' '.join(key)} {a.id}: compiled for {compiled}, which this device does not load"
            + (f"; using the older {newest[key].id}" if key in newest else ""))
    variants = [newest[(f, p)] for f in FORMATS for p in PRECISIONS if (f, p) in newest]
    if not variants and need_exports:
        if exports is not None:
            raise EdgeresError(f"no {'/'.join(formats)} {'/'.join(precisions)} export of {root.describe()} among "
                               f"the exports given ({', '.join(exports) or 'none'})",
                               hint="name exports of those formats and precisions, or widen the filters")
        raise EdgeresError(f"no {'/'.join(formats)} {'/'.join(precisions)} export of {root.describe()}",
                           hint=f"export it first: `edgeres export --model {root.id} --target all --precision all`")
    say(f"benchmarking the exports of {root.describe()}")
    return root, variants


def _root_id(artifact: Artifact, index: dict[str, Artifact]) -> str | None:
    try:
        return fp32_root(artifact, index).id
    except EdgeresError:  # a broken lineage is not this one
        return None


def runnable(profile, export: Artifact) -> bool:
    """Whether ``profile`` can run ``export``'s file: a file compiled for an accelerator (``export
    --edgetpu``) runs only where the profile loads that accelerator's delegate."""
    compiled = ((export.manifest.get("config") or {}).get("options") or {}).get("compile", "none")
    delegate = getattr(getattr(profile.runtimes, "tflite", None), "delegate", None) or ""
    return compiled == "none" or compiled in delegate


def torch_variants(profile, root: Artifact, precisions: list[str], baseline_where: str) -> list[Variant]:
    """The profile's rows of the torch model itself (``torch.precisions``), less the one the baseline is."""
    settings = profile.runtimes.torch
    if settings is None or not settings.precisions:
        return []
    if profile.connection.type != "local":
        raise EdgeresError(f"{profile.path}: torch.precisions needs a local connection (torch runs on this host)")
    return [Variant.torch(root, p, settings.device) for p in settings.precisions
            if p in precisions and not (p == "fp32" and settings.device == baseline_where)]
