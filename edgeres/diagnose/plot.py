"""The PNG of a diagnosis: SQNR by depth, one line per file against the torch model it came from, the
int8 torch model against FP32 dashed, each file's first culprit ringed; and, where files were timed, time
by block (int8 solid, fp32 dotted, as above) and time by operator type."""

from __future__ import annotations

import os
from pathlib import Path

_PRECISION_STYLE = {"fp32": ":", "fp16": "--", "int8": "-"}


def sqnr_by_depth(report: dict, path: Path) -> None:
    """Write the plot to ``path`` (via a temporary file)."""
    from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state

    from edgeres.runtimes import registry

    timed = (report.get("latency") or {}).get("files", [])
    panels = [panel for panel in (([f for f in timed if f.get("by_block")], _time_by_block),
                                  ([f for f in timed if f.get("by_type")], _time_by_type)) if panel[0]]
    fig = Figure(figsize=(max(10, 0.2 * len(report["points"])), 5 + 3.5 * len(panels)), dpi=110,
                 layout="constrained")
    axes = fig.subplots(1 + len(panels), 1, squeeze=False)[:, 0]
    ax = axes[0]
    names = report["points"]
    for f in report["files"]:
        color = getattr(registry.RUNTIMES.get(f["runtime"]), "color", "gray")
        values = [r["sqnr_db"] for r in f["layers"]]
        ax.plot(range(len(values)), values, _PRECISION_STYLE.get(f["precision"], "-"), color=color, marker="o",
                markersize=3, label=f"{f['format']} {f['precision']} vs {f['reference'].split(' (')[0]}")
        if f["culprits"]:
            at = names.index(f["culprits"][0])
            ax.scatter([at], [values[at]], s=160, facecolors="none", edgecolors="red", linewidths=1.5, zorder=4)
    for q in report["quantization"]:
        values = [r["sqnr_db"] for r in q["layers"]]
        ax.plot(range(len(values)), values, "--", color="black", alpha=0.6, label="torch int8 vs fp32")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 30 else 45, ha="right",
                  fontsize=8 if len(names) <= 30 else 6)
    ax.set_ylabel("SQNR (dB), higher is closer")
    ax.set_title(f"{report['model']} ({report['root']}): SQNR by depth on {report['images']} test images; "
                 "red ring: where each file's error jumps", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for panel_ax, (files, draw) in zip(axes[1:], panels):
        draw(panel_ax, files)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _time_by_type(ax, files: list[dict]) -> None:
    """Stacked bars: each file's per-run operator time by operator type (the six largest, the rest)."""
    totals: dict[str, float] = {}
    for f in files:
        for kind, ms in f["by_type"].items():
            totals[kind] = totals.get(kind, 0.0) + ms
    top = sorted(totals, key=totals.get, reverse=True)[:6]
    labels = [f"{f['format']} {f['precision']}" for f in files]
    bottom = [0.0] * len(files)
    for kind in [*top, "other"]:
        values = [sum(ms for k, ms in f["by_type"].items() if (k == kind) or (kind == "other" and k not in top))
                  for f in files]
        ax.bar(labels, values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("operator time per run (ms)")
    ax.set_title("time by operator type, batch 1 (runtime profilers)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(True, axis="y", alpha=0.3)


def _time_by_block(ax, files: list[dict]) -> None:
    """One line per file: its time per run in each block (a TFLite file's from its cuts)."""
    from edgeres.runtimes import registry

    blocks = list(dict.fromkeys(b for f in files for b in f["by_block"]))
    for f in files:
        color = getattr(registry.RUNTIMES.get(f.get("runtime", "")), "color", "gray")
        ax.plot([blocks.index(b) for b in f["by_block"]], list(f["by_block"].values()),
                _PRECISION_STYLE.get(f["precision"], "-"), color=color, marker="o", markersize=3,
                label=f"{f['format']} {f['precision']}")
    ax.set_xticks(range(len(blocks)), blocks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("time per run (ms)")
    ax.set_title("time by block, batch 1 (profilers' operator times; TFLite: differences of its prefixes' p50s)",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
