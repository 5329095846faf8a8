"""Bench results for people and tools: a rich table, JSON, CSV, Markdown and a PNG plot.

Every renderer takes the results dict that ``edgeres.bench`` saves as ``results.json``, so that
``edgeres report`` can redraw a saved benchmark without measuring again. A latency says what it is:
measured ones in ``p50 ms``, estimates in their own ``est. p50 ms`` column (``estimated_p50_ms``, with a
``~``), never the other way round; the plot draws estimated points hollow and labels them. Emulated rows
(the device's accuracy, from an emulator) say ``emulated`` and show only the estimate, never the
emulator's own speed. ``speedup`` is over the baseline measured on this host (a row measured on another
machine shows its ratio marked ``cross-machine``), ``vs fp32`` over the same runtime's fp32 file on the
same device. Results saved before estimates had their own field (``results_format`` < 2) are read as
they meant: an estimated row's ``p50_ms`` is its estimate.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

COLUMNS = ("variant", "runtime / device", "precision", "top-1 %", "Δ top-1 pp", "p50 ms", "p90 ms", "est. p50 ms",
           "speedup", "vs fp32", "size MB", "status")
CSV_FIELDS = ("variant", "role", "status", "latency_kind", "error", "format", "precision", "runtime", "device",
              "unit", "where", "group", "threads", "top1", "top1_where", "n", "delta_top1_pp", "agreement", "p50_ms", "p90_ms",
              "p99_ms", "mean_ms", "runs", "rounds", "p50_spread_pct", "throughput_ips", "throughput_batch",
              "estimated_p50_ms", "speedup", "speedup_vs_fp32", "speedup_cross_machine", "size_bytes", "size_ratio",
              "peak_rss_mb", "peak_gpu_memory_mb", "load_seconds", "verify_top1", "verify_n", "emulated",
              "emulated_p50_ms", "host_top1", "host_agreement", "profile_verified", "artifact")
FILES = {"json": "results.json", "csv": "results.csv", "md": "results.md", "png": "plot.png"}
_PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def upgrade(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` in the current form: a copy of an older ``results.json`` with each estimated row's
    latency moved from ``p50_ms`` to ``estimated_p50_ms`` (and its speedup, a ratio to an estimate, dropped)
    and ``latency_kind`` filled in. Current results come back as they are."""
    if results.get("results_format", 1) >= 2:
        return results
    rows = []
    for row in results["rows"]:
        row = dict(row)
        if row.get("status") == "estimated" and row.get("estimated_p50_ms") is None:
            row.update(estimated_p50_ms=row.get("p50_ms"), p50_ms=None, speedup=None)
        row.setdefault("latency_kind", None if row.get("status") == "failed" else row.get("status"))
        rows.append(row)
    return {**results, "rows": rows, "results_format": 2}


def _num(value: float | None, digits: int = 2, prefix: str = "", signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{prefix}{value:+.{digits}f}" if signed else f"{prefix}{value:.{digits}f}"


def offload_text(row: dict[str, Any]) -> str | None:
    """How much of the model the row's delegate / NPU took, where known."""
    o = row.get("offload")
    if not o:
        return None
    if o["unit"] == "Edge TPU":
        if not o["subgraphs"]:
            return f"Edge TPU took none of {o['ops']} ops (file not compiled by edgetpu_compiler)"
        return f"Edge TPU ran {o['subgraphs']} compiled subgraph(s); {o['on_cpu']} of {o['ops']} ops on the CPU"
    parts = f" ({o['subgraphs']} subgraph(s))" if o.get("subgraphs") is not None else ""
    return f"{o['unit']} took {o['ops'] - o['on_cpu']} of {o['ops']} nodes{parts}"


def status_text(row: dict[str, Any]) -> str:
    if row["status"] == "failed":
        return f"failed: {row.get('error')}"
    if row["status"] == "estimated":
        on = f" on the {row['unit']}" if row.get("unit") else ""
        text = f"estimated{on}" + (" (top-1 on this host)" if row.get("top1") is not None else f" ({row.get('error')})")
    elif row["status"] == "emulated":
        latency = "latency estimated" if row.get("estimated_p50_ms") is not None else "no latency"
        text = f"emulated ({row['emulated']}): top-1 only, {latency}"
    else:
        text = "measured" + (" (reference)" if row["role"] == "baseline" else "")
    extras = [offload_text(row)]
    if row.get("peak_gpu_memory_mb") is not None:
        extras.append(f"peak GPU memory {row['peak_gpu_memory_mb']:.0f} MB")
    if row.get("profile_verified") is False:
        extras.append("device profile not yet run on its hardware")
    return "; ".join([text, *(e for e in extras if e)])


def _ratio(value: float | None, approx: str = "") -> str:
    return f"{approx}{value:.2f}x" if value is not None else "-"


def cells(row: dict[str, Any]) -> list[str]:
    """The values of ``COLUMNS`` for one row, as text."""
    where = " (this host)" if row["role"] == "baseline" else f" @ {row['group']}" if row.get("group") else ""
    size = row.get("size_bytes")
    speedup = (_ratio(row.get("speedup")) if row.get("speedup_cross_machine") is None
               else f"{row['speedup_cross_machine']:.2f}x cross-machine")
    return [
        row["variant"], f"{row['runtime']} / {row['device']}{where}", row["precision"], _num(row.get("top1")),
        "ref" if row["role"] == "baseline" else _num(row.get("delta_top1_pp"), signed=True),
        _num(row.get("p50_ms"), 3), _num(row.get("p90_ms"), 3), _num(row.get("estimated_p50_ms"), 3, "~"),
        speedup, _ratio(row.get("speedup_vs_fp32")), _num(size / 1e6 if size else None), status_text(row),
    ]


def _baseline_text(results: dict[str, Any]) -> str:
    b = results.get("baseline") or {}
    text = f"{results['rows'][0]['variant']} on this host"
    if b.get("batchnorm") == "folded":
        text += ", BatchNorm folded into the convolutions (as in the exported files)"
    if b.get("tf32") is False:
        text += "; TF32 off (fp32 is fp32 on the GPU)"
    if b.get("choice"):
        text += f"; --baseline {b['choice']}"
    return text


def _method_text(results: dict[str, Any]) -> str:
    m, n = results["method"], results["eval"]["n"]
    rows = results["rows"]
    estimated = ("; est. p50 (~) = estimated from the profile's figures, not measured"
                 if any(r.get("estimated_p50_ms") is not None for r in rows) else "")
    cross = ("; cross-machine = baseline on this host / row on the device, two machines"
             if any(r.get("speedup_cross_machine") is not None for r in rows) else "")
    rounds = m.get("rounds", 1)  # results saved before rounds existed have one
    each = f" in each of {rounds} rounds (fresh processes; p50 = median of the rounds')" if rounds > 1 else ""
    tf32 = "; CUDA fp32 with TF32 off" if (results.get("baseline") or {}).get("tf32") is False else ""
    return (f"batch 1, {m['warmup']} warm-up runs, then at least {m['min_runs']} runs and {m['min_seconds']:g} s"
            f"{each}; top-1 on {n} {results['dataset']} test images; speedup = baseline p50 / row p50, both measured "
            f"on this host; vs fp32 = the same runtime's fp32 p50 / row p50 on the same device{tf32}{cross}"
            f"{estimated}")


def title(results: dict[str, Any]) -> str:
    d = results["device"]
    shown = results["mode"] in ("estimated", "emulated") and results["mode"] not in d["connection"]
    mode = f", {results['mode']}" if shown else ""
    return f"{results['model']} on {d['name']} ({d['connection']}{mode})"


def table(results: dict[str, Any]):
    """A rich table of every row; baseline first, estimated rows marked, failures in red."""
    from rich.text import Text

    from edgeres.console import table as results_table

    results = upgrade(results)
    t = results_table(*COLUMNS, title=Text(f"edgeres bench: {title(results)}"),
                      caption=Text(_method_text(results)))  # Text: names from results.json are not markup
    for row in results["rows"]:
        style = {"failed": "red", "estimated": "yellow", "emulated": "cyan"}.get(
            row["status"], "bold" if row["role"] == "baseline" else "")
        t.add_row(*map(Text, cells(row)), style=style or None)  # Text: error messages are not markup
    return t


def document(artifact, results: dict[str, Any]) -> dict[str, Any]:
    """What ``bench --json`` and ``report --json`` print: the bench artifact's id and directory, its report
    files by kind, and its results as ``results.json`` holds them (rows in their current form)."""
    return {"artifact": artifact.id, "path": str(artifact.path),
            "files": {kind: str(artifact.path / name) for kind, name in FILES.items()}, "results": upgrade(results)}


def to_json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, default=str)


def to_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in upgrade(results)["rows"]:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buffer.getvalue()


def _md_row(values: list[str]) -> str:
    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"


def _estimate_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each estimated row's unit and bound, then the figures they used with their sources (each once)."""
    lines, sources = [], {}
    for row in rows:
        e = row["estimate"]
        on = f" on the {e['unit_description']}" if e.get("unit_description") else ""
        lines.append(f"- {row['variant']}{on}: {e['bound']}-bound (compute {e['compute_ms']:.3g} ms, weights "
                     f"{e['memory_ms']:.3g} ms)")
        peak, bandwidth = e["sources"]["peak_gops"], e["sources"]["memory_bandwidth_gbs"]
        sources[f"peak {peak['value']:g} GOPS: {peak['source']}"] = None
        sources[f"memory bandwidth {bandwidth['value']:g} GB/s: {bandwidth['source']}"] = None
    return lines + ["", "Figures:", ""] + [f"- {source}" for source in sources]


def to_markdown(results: dict[str, Any]) -> str:
    results = upgrade(results)
    host, device = results["host"], results["device"]
    lines = [f"# edgeres bench: {title(results)}", "",
             f"- **Device**: `{device['name']}`: {device['description']} ({device['connection']}, {device['arch']})",
             f"- **Model**: {results['model']} on {results['dataset']}; FP32 root artifact `{results['root']}`",
             f"- **Baseline**: {_baseline_text(results)}",
             f"- **Host**: {host['processor']}, {host['cores']} cores, {host['platform']}, Python {host['python']}"]
    if device.get("verified_on_hardware") is False:
        lines.append(f"- **Profile**: `{device['name']}` has not yet been run on its hardware: its settings and "
                     "figures are unchecked there")
    if results.get("device_host"):
        dh = results["device_host"]
        lines.append(f"- **Measured on**: {dh['processor']}, {dh['cores']} cores, {dh['platform']}")
    lines += [f"- **Method**: {_method_text(results)}", "",
              _md_row(list(COLUMNS) + ["p99 ms", "images/s", "peak RSS MB"]), _md_row(["---"] * (len(COLUMNS) + 3))]
    for row in results["rows"]:
        extra = [_num(row.get("p99_ms"), 3), _num(row.get("throughput_ips"), 1), _num(row.get("peak_rss_mb"), 1)]
        lines.append(_md_row(cells(row) + extra))
    if results["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
    estimated = [r for r in results["rows"] if r["status"] == "estimated" and r.get("estimate")]
    if estimated:
        lines += ["", "## Estimated rows", "",
                  "Not measured: a roofline estimate of batch-1 latency from the model's MACs and weight bytes and "
                  "the device profile's figures for the unit that runs each file (below), in the est. p50 column; "
                  "top-1 is that of the same file on this host, on the same images. Assumptions:", ""]
        lines += [f"- {a}" for a in dict.fromkeys(a for r in estimated for a in r["estimate"]["assumptions"])]
        lines += ["", "Per row:", ""] + _estimate_lines(estimated)
    emulated = [r for r in results["rows"] if r["status"] == "emulated"]
    if emulated:
        lines += ["", "## Emulated rows", "",
                  "Run on an emulation of the device here: its runtimes' own kernels (qemu-user running its aarch64 "
                  "builds, or Qualcomm's HTP emulator), so top-1 is the device's; the speed is the emulator's and is "
                  "not shown as latency (est. p50 is the profile's estimate). Each beside this host's run of the "
                  "same file on the same images:", ""]
        for row in emulated:
            host = (f"this host: top-1 {row['host_top1']:.2f}%, same prediction on {row['host_agreement']:.2f}% of "
                    "images" if row.get("host_top1") is not None else "no run on this host")
            lines.append(f"- {row['variant']}: {row['emulated']}; {host}; emulator time p50 "
                         f"{_num(row.get('emulated_p50_ms'), 1)} ms (not the device's)")
        priced = [row for row in emulated if row.get("estimate")]
        if priced:
            lines += ["", "Their estimated latency (est. p50), per row:", ""] + _estimate_lines(priced)
    for row in (r for r in results["rows"] if r.get("partitioning")):
        part = row["partitioning"]
        share = part["compute_on_provider"]
        lines += ["", f"## Partitioning of {row['variant']} on {part['provider']}", "",
                  f"{_num(share * 100 if share is not None else None, 1)} % of the Conv/Gemm/MatMul/Add/Relu/pooling "
                  f"nodes ran on {part['provider']} ({part['subgraphs']} subgraph(s)); {part['on_cpu']} of "
                  f"{part['nodes']} nodes ran on the CPU" + (":" if part["cpu_nodes"] else "."), ""]
        lines += [f"- `{node}`" for node in part["cpu_nodes"]]
    for row in (r for r in results["rows"] if (r.get("offload") or {}).get("unit") == "Edge TPU"):
        o = row["offload"]
        lines += ["", f"## Edge TPU placement of {row['variant']}", "", offload_text(row) + "; read from the file's "
                  "operators: the delegate runs only edgetpu_compiler's subgraphs, everything else runs on the CPU"
                  + (":" if o["cpu_ops"] else "."), ""]
        lines += [f"- `{op}` x {count}" for op, count in o["cpu_ops"].items()]
    if results["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['variant']} (`{s['artifact']}`): {s['reason']}"
                                           for s in results["skipped"]]
    return "\n".join(lines) + "\n"


def _latency(row: dict[str, Any]) -> float | None:
    """Where a row sits on the plot's latency axis: its measurement, else its estimate (drawn hollow)."""
    return row.get("p50_ms") if row["status"] == "measured" else row.get("estimated_p50_ms")


def plot(results: dict[str, Any], path: Path) -> None:
    """Accuracy vs p50 latency, one point per variant (colour: runtime, marker: precision), named in the
    legend; the baseline a star; estimated points (and emulated ones, at their estimated latency) hollow
    and labelled so."""
    from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state
    from matplotlib.ticker import FuncFormatter, LogLocator

    from edgeres.runtimes import registry

    results = upgrade(results)
    fig = Figure(figsize=(9, 5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    points = [r for r in results["rows"] if _latency(r) and r.get("top1") is not None]
    notes = {"estimated": " (estimated latency)", "emulated": " (emulated top-1, estimated latency)"}
    for row in points:
        color = getattr(registry.RUNTIMES.get(row.get("runtime")), "color", "gray")
        baseline, estimated = row["role"] == "baseline", row["status"] in notes
        label = (f"baseline: {row['variant']}, this host" if baseline
                 else row["variant"] + notes.get(row["status"], ""))
        ax.scatter(_latency(row), row["top1"], s=260 if baseline else 80, zorder=3, label=label,
                   marker="*" if baseline else _PRECISION_MARKERS.get(row["precision"], "o"),
                   facecolors="none" if estimated else color, edgecolors=color, linewidths=1.6)
    accuracies = [r["top1"] for r in points]
    if accuracies and max(accuracies) - min(accuracies) < 1:  # keep sub-point differences from looking large
        middle = (max(accuracies) + min(accuracies)) / 2
        ax.set_ylim(middle - 0.75, middle + 0.75)
    latencies = [_latency(r) for r in points]
    if latencies and max(latencies) / min(latencies) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    hollow = "; hollow points: estimated, not measured" if any(r["status"] in notes for r in points) else ""
    ax.set_xlabel(f"p50 latency, batch 1 (ms){hollow}")
    ax.set_ylabel(f"top-1 % ({results['eval']['n']} test images)")
    ax.set_title(f"{title(results)}: accuracy vs latency", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.savefig(path, format="png", metadata={"Software": None})


def _write(path: Path, write) -> None:
    """Write via a temporary file and rename, so that a reader never sees half a report."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(results: dict[str, Any], directory: Path, kinds: tuple[str, ...] = tuple(FILES)) -> dict[str, Path]:
    """Write the reports of ``kinds`` (json, csv, md, png) into ``directory``; their paths by kind."""
    renderers = {"json": to_json, "csv": to_csv, "md": to_markdown}
    paths = {}
    for kind in kinds:
        path = Path(directory) / FILES[kind]
        if kind == "png":
            _write(path, lambda p: plot(results, p))
        else:
            _write(path, lambda p, text=renderers[kind](results): p.write_text(text))
        paths[kind] = path
    return paths


# -- reading a saved results.json: untrusted, it may have been edited, cut short or damaged --------------
class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)  # "3" is not a number


class _Source(_Strict):
    value: float
    source: str


class _Sources(_Strict):
    peak_gops: _Source
    memory_bandwidth_gbs: _Source


class _Estimate(_Strict):
    bound: str
    compute_ms: float
    memory_ms: float
    assumptions: list[str]
    sources: _Sources


class _Partitioning(_Strict):
    provider: str
    compute_on_provider: float | None = Field(None, ge=0, le=1)
    subgraphs: int
    on_cpu: int
    nodes: int
    cpu_nodes: list[str]


class _Offload(_Strict):
    unit: str
    subgraphs: int | None = Field(None, ge=0)  # none for OpenVINO's query_model
    ops: int = Field(ge=0)
    on_cpu: int = Field(ge=0)
    cpu_ops: dict[str, int] = Field(default_factory=dict)


class _Row(_Strict):
    variant: str
    role: Literal["baseline", "variant"]
    status: Literal["measured", "estimated", "emulated", "failed"]
    format: str
    precision: str
    runtime: str
    device: str
    error: str | None = None
    emulated: str | None = None
    top1: float | None = Field(None, ge=0, le=100)
    host_top1: float | None = Field(None, ge=0, le=100)
    host_agreement: float | None = Field(None, ge=0, le=100)
    delta_top1_pp: float | None = None
    threads: int | None = Field(None, ge=1)
    p50_ms: float | None = Field(None, ge=0)
    p90_ms: float | None = Field(None, ge=0)
    p99_ms: float | None = Field(None, ge=0)
    estimated_p50_ms: float | None = Field(None, ge=0)
    emulated_p50_ms: float | None = Field(None, ge=0)
    speedup: float | None = Field(None, ge=0)
    speedup_vs_fp32: float | None = Field(None, ge=0)
    speedup_cross_machine: float | None = Field(None, ge=0)
    latency_kind: Literal["measured", "estimated", "emulated"] | None = None
    peak_gpu_memory_mb: float | None = Field(None, ge=0)
    size_bytes: float | None = Field(None, ge=0)
    throughput_ips: float | None = Field(None, ge=0)
    peak_rss_mb: float | None = Field(None, ge=0)
    estimate: _Estimate | None = None
    partitioning: _Partitioning | None = None
    offload: _Offload | None = None

    @model_validator(mode="after")
    def _status_fields(self) -> "_Row":
        if self.status == "estimated" and self.estimate is None:
            raise ValueError("an estimated row needs its estimate")
        if self.status == "emulated" and self.emulated is None:
            raise ValueError("an emulated row needs the emulator's name (emulated)")
        return self


class _Device(_Strict):
    name: str
    description: str
    arch: str
    connection: str


class _Machine(_Strict):
    processor: str
    cores: int
    platform: str


class _Host(_Machine):
    python: str


class _Method(_Strict):
    warmup: float = Field(ge=0)
    min_runs: float = Field(ge=1)
    min_seconds: float = Field(ge=0)
    rounds: int = Field(1, ge=1)


class _Eval(_Strict):
    n: int = Field(ge=0)


class _Skipped(_Strict):
    variant: str
    artifact: str
    reason: str


class _Results(_Strict):
    model: str
    dataset: str
    root: str
    device: _Device
    mode: Literal["measured", "estimated", "emulated"]
    host: _Host
    device_host: _Machine | None = None
    method: _Method
    eval: _Eval
    rows: list[_Row] = Field(min_length=1)
    skipped: list[_Skipped]
    warnings: list[str]


def load(artifact) -> dict[str, Any]:
    """The results a ``bench`` artifact saved, checked before any renderer sees them: ``results.json``
    matches its manifest's hash, is JSON without NaN, and has the fields the reports read. Any fault is
    one EdgeresError naming the file."""
    from edgeres.errors import EdgeresError
    from edgeres.workspace import read_json, validation_problem

    path = artifact.path / FILES["json"]
    artifact.verify([FILES["json"]])
    hint = f"re-run `edgeres bench`, or delete {artifact.path}"
    results = read_json(path, hint)
    try:
        _Results.model_validate(results)
    except ValidationError as exc:
        raise EdgeresError(f"{path} is not valid bench results: {validation_problem(exc)}", hint=hint) from None
    return results
