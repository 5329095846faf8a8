"""What ``edgeres tune`` shows and saves: the candidates as a table (front first), ``tune.json``, and
``tune.png``: val top-1 against p50, one marker per runtime and precision, the front joined, the budget
drawn, the chosen variant ringed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILES = {"json": "tune.json", "png": "tune.png"}


def ship_name(results: dict[str, Any], chosen: dict[str, Any]) -> str:
    """The chosen file's name in the tune artifact (and ``--output``): what it is, in the name."""
    pruned = "" if chosen["ratio"] == 0 else f"-pruned{chosen['ratio']:g}"
    quant = "" if chosen["quant"] == "none" else f"-{chosen['quant']}"
    return f"{results['model']}{pruned}{quant}-{chosen['target']}-{chosen['precision']}"


def _ordered(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Chosen first, then the front, then the other measured candidates by p50, then the rest."""
    def key(r: dict[str, Any]):
        return (r["name"] != results["chosen"], not r.get("on_front"), r["status"] != "measured",
                r.get("p50_ms") or float("inf"))
    return sorted(results["candidates"], key=key)


def table(results: dict[str, Any]):
    from rich.text import Text

    from edgeres.console import table as new_table

    t = new_table("candidate", "runtime", "val top-1", "val drop pp", "test top-1", "p50 ms", "size MB",
                  "MACs M", "front", "why",
                  title=Text(f"tune {results['model']} ({results['root']}) on {results['device']}: "
                             f"budget {results['max_drop_pp']:g} pp of val top-1 (FP32 {results['fp32_val_top1']:.2f}% "
                             f"on {results['val_images']} val images)"),
                  caption=Text(_caption(results)))
    for r in _ordered(results):
        measured = r["status"] == "measured"
        p50 = (f"{r['p50_ms']:.3g}" + ("" if r.get("latency_kind") == "measured" else f" ({r['latency_kind']})")
               if measured else "-")
        t.add_row(Text(r["name"]), r["marker"], f"{r['val_top1']:.2f}" if measured else "-",
                  f"{r['val_drop_pp']:+.2f}" if measured else "-",
                  f"{r['test_top1']:.2f}" if measured and r.get("test_top1") is not None else "-", p50,
                  f"{r['size_bytes'] / 1e6:.2f}" if measured else "-",
                  f"{r['macs'] / 1e6:.1f}" if r.get("macs") else "-", "yes" if r.get("on_front") else "",
                  Text(r.get("why") or ""))
    return t


def _caption(results: dict[str, Any]) -> str:
    lines = []
    if results["chosen"]:
        lines.append(f"chosen: {results['chosen']}")
        if results["speedup_vs_single_step"]:
            kind = next(r for r in results["candidates"] if r["name"] == results["chosen"])["latency_kind"]
            lines.append(f"{results['speedup_vs_single_step']:.2f}x the p50 of the best single-step variant "
                         f"({results['single_step']})" + ("" if kind == "measured" else f", both {kind}"))
        lines.append("lineage: " + " <- ".join(f"{a['id']} ({a['kind']})" for a in results["lineage"]))
    else:
        lines.append(f"no measured candidate kept val top-1 within {results['max_drop_pp']:g} pp")
    reused = len(results["reused"])
    lines.append(f"{reused} artifact(s) reused, {len(results['made'])} made, {results['minutes']:.1f} min"
                 + ("; stopped by the search budget: run it again to go on" if results["stopped"] else ""))
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Val top-1 against p50 (``FILES['png']``); hollow markers: latency estimated, not measured."""
    from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state

    from edgeres.report import _PRECISION_MARKERS
    from edgeres.runtimes import registry

    fig = Figure(figsize=(9, 5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    points = [r for r in results["candidates"] if r["status"] == "measured"]
    for marker in dict.fromkeys(r["marker"] for r in points):
        group = [r for r in points if r["marker"] == marker]
        runtime, precision = group[0]["marker"].rsplit(" ", 1)
        color = getattr(registry.RUNTIMES.get(runtime), "color", "gray")
        measured = [r for r in group if r["latency_kind"] == "measured"]
        for subset, hollow in ((measured, False), ([r for r in group if r not in measured], True)):
            if subset:
                ax.scatter([r["p50_ms"] for r in subset], [r["val_top1"] for r in subset], s=70, zorder=3,
                           marker=_PRECISION_MARKERS.get(precision, "o"), facecolors="none" if hollow else color,
                           edgecolors=color, linewidths=1.5,
                           label=f"{marker}" + (" (estimated latency)" if hollow else ""))
    front, best = [], float("-inf")  # the front in this plot's two dimensions (the table's also weighs size)
    for r in sorted(points, key=lambda r: (r["p50_ms"], -r["val_top1"])):
        if r["val_top1"] > best:
            front.append(r)
            best = r["val_top1"]
    if front:
        ax.step([r["p50_ms"] for r in front], [r["val_top1"] for r in front], "-", where="post", color="gray",
                alpha=0.6, zorder=2, label="Pareto front: val top-1 vs p50")
    ax.axhline(results["fp32_val_top1"] - results["max_drop_pp"], color="red", linestyle="--", linewidth=1,
               label=f"budget: FP32 - {results['max_drop_pp']:g} pp")
    chosen = next((r for r in points if r["name"] == results["chosen"]), None)
    if chosen:
        ax.scatter([chosen["p50_ms"]], [chosen["val_top1"]], s=260, facecolors="none", edgecolors="red",
                   linewidths=1.6, zorder=4, label=f"chosen: {chosen['name']}")
    for r in points:
        label = "unpruned" if r["ratio"] == 0 else f"{r['ratio']:g}"
        ax.annotate(label, (r["p50_ms"], r["val_top1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("p50 latency, batch 1 (ms)")
    ax.set_ylabel(f"val top-1 % ({results['val_images']} val images)")
    ax.set_title(f"tune {results['model']} on {results['device']}: val top-1 vs p50 (labels: pruning ratio)",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.savefig(path, format="png", metadata={"Software": None})


def save(results: dict[str, Any], directory: Path) -> None:
    from edgeres.report import _write

    _write(directory / FILES["json"], lambda p: p.write_text(json.dumps(results, indent=1)))
    _write(directory / FILES["png"], lambda p: plot(results, p))
