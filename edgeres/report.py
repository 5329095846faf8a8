"""Bench results for people and tools: a rich table, JSON, CSV, Markdown and a PNG plot.

Every renderer takes the results dict that ``edgeres.bench`` saves as ``results.json``, so that
``edgeres report`` can redraw a saved benchmark without measuring again. Estimated rows are never
shown as if measured: their status says ``estimated``, their latencies carry a ``~``, and the plot
draws them hollow and labels them. Emulated rows (the device's accuracy, from an emulator) say
``emulated`` and show only the estimated latency, with a ``~``: never the emulator's own speed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

COLUMNS = ("variant", "runtime / device", "precision", "top-1 %", "Δ top-1 pp", "p50 ms", "p90 ms", "speedup",
           "size MB", "status")
CSV_FIELDS = ("variant", "role", "status", "error", "format", "precision", "runtime", "device", "where", "threads",
              "top1", "top1_where", "n", "delta_top1_pp", "agreement", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs",
              "rounds", "p50_spread_pct", "throughput_ips", "throughput_batch", "speedup", "size_bytes", "size_ratio",
              "peak_rss_mb", "load_seconds", "verify_top1", "verify_n", "emulated", "emulated_p50_ms",
              "estimated_p50_ms", "host_top1", "host_agreement", "artifact")
FILES = {"json": "results.json", "csv": "results.csv", "md": "results.md", "png": "plot.png"}
_FORMAT_COLORS = {"torch": "black", "onnx": "tab:blue", "openvino": "tab:purple", "tflite": "tab:orange"}
_PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def _num(value: float | None, digits: int = 2, prefix: str = "", signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{prefix}{value:+.{digits}f}" if signed else f"{prefix}{value:.{digits}f}"


def status_text(row: dict[str, Any]) -> str:
    if row["status"] == "failed":
        return f"failed: {row.get('error')}"
    if row["status"] == "estimated":
        return "estimated" + (" (top-1 on this host)" if row.get("top1") is not None else f" ({row.get('error')})")
    if row["status"] == "emulated":
        latency = "latency estimated" if row.get("estimated_p50_ms") is not None else "no latency"
        return f"emulated ({row['emulated']}): top-1 only, {latency}"
    return "measured" + (" (reference)" if row["role"] == "baseline" else "")


def cells(row: dict[str, Any]) -> list[str]:
    """The values of ``COLUMNS`` for one row, as text."""
    approx = "~" if row["status"] in ("estimated", "emulated") else ""
    p50 = row.get("estimated_p50_ms") if row["status"] == "emulated" else row.get("p50_ms")
    where = " (this host)" if row["role"] == "baseline" else ""
    size = row.get("size_bytes")
    return [
        row["variant"], f"{row['runtime']} / {row['device']}{where}", row["precision"], _num(row.get("top1")),
        "ref" if row["role"] == "baseline" else _num(row.get("delta_top1_pp"), signed=True),
        _num(p50, 3, approx), _num(row.get("p90_ms"), 3, approx),
        f"{approx}{row['speedup']:.2f}x" if row.get("speedup") is not None else "-",
        _num(size / 1e6 if size else None), status_text(row),
    ]


def _method_text(results: dict[str, Any]) -> str:
    m, n = results["method"], results["eval"]["n"]
    estimated = ("; ~ estimated, not measured" if any(r["status"] in ("estimated", "emulated")
                                                       for r in results["rows"]) else "")
    rounds = m.get("rounds", 1)  # results saved before rounds existed have one
    each = f" in each of {rounds} rounds (fresh processes; p50 = median of the rounds')" if rounds > 1 else ""
    return (f"batch 1, {m['warmup']} warm-up runs, then at least {m['min_runs']} runs and {m['min_seconds']:g} s"
            f"{each}; top-1 on {n} {results['dataset']} test images; speedup = baseline p50 / row p50{estimated}")


def title(results: dict[str, Any]) -> str:
    d = results["device"]
    shown = results["mode"] in ("estimated", "emulated") and results["mode"] not in d["connection"]
    mode = f", {results['mode']}" if shown else ""
    return f"{results['model']} on {d['name']} ({d['connection']}{mode})"


def table(results: dict[str, Any]):
    """A rich table of every row; baseline first, estimated rows marked, failures in red."""
    from rich.table import Table
    from rich.text import Text

    t = Table(*COLUMNS, title=f"edgeres bench: {title(results)}", caption=_method_text(results),
              caption_justify="left")
    for row in results["rows"]:
        style = {"failed": "red", "estimated": "yellow", "emulated": "cyan"}.get(
            row["status"], "bold" if row["role"] == "baseline" else "")
        t.add_row(*map(Text, cells(row)), style=style or None)  # Text: error messages are not markup
    return t


def to_json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, default=str)


def to_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in results["rows"]:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buffer.getvalue()


def _md_row(values: list[str]) -> str:
    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"


def to_markdown(results: dict[str, Any]) -> str:
    host, device = results["host"], results["device"]
    lines = [f"# edgeres bench: {title(results)}", "",
             f"- **Device**: `{device['name']}`: {device['description']} ({device['connection']}, {device['arch']})",
             f"- **Model**: {results['model']} on {results['dataset']}; FP32 root artifact `{results['root']}`",
             f"- **Baseline**: {results['rows'][0]['variant']} on this host",
             f"- **Host**: {host['processor']}, {host['cores']} cores, {host['platform']}, Python {host['python']}"]
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
    estimated = [r for r in results["rows"] if r["status"] == "estimated"]
    if estimated:
        lines += ["", "## Estimated rows", "",
                  "Not measured: a roofline estimate of batch-1 latency from the model's MACs and weight bytes and "
                  "the device profile's figures (below); top-1 is that of the same file on this host, on the same "
                  "images. Assumptions:", ""]
        lines += [f"- {a}" for a in dict.fromkeys(a for r in estimated for a in r["estimate"]["assumptions"])]
        lines += ["", "Figures, per row:", ""]
        for row in estimated:
            e = row["estimate"]
            peak = e["sources"]["peak_gops"]
            lines.append(f"- {row['variant']}: {e['bound']}-bound (compute {e['compute_ms']:.3g} ms, weights "
                         f"{e['memory_ms']:.3g} ms); peak {peak['value']:g} GOPS: {peak['source']}")
        bandwidth = estimated[0]["estimate"]["sources"]["memory_bandwidth_gbs"]
        lines.append(f"- memory bandwidth {bandwidth['value']:g} GB/s: {bandwidth['source']}")
    emulated = [r for r in results["rows"] if r["status"] == "emulated"]
    if emulated:
        lines += ["", "## Emulated rows", "",
                  "Run on an emulation of the device here: its runtimes' own kernels (qemu-user running its aarch64 "
                  "builds, or Qualcomm's HTP emulator), so top-1 is the device's; the speed is the emulator's and is "
                  "not shown as latency (the latency column is the profile's estimate, ~). Each beside this host's "
                  "run of the same file on the same images:", ""]
        for row in emulated:
            host = (f"this host: top-1 {row['host_top1']:.2f}%, same prediction on {row['host_agreement']:.2f}% of "
                    "images" if row.get("host_top1") is not None else "no run on this host")
            lines.append(f"- {row['variant']}: {row['emulated']}; {host}; emulator time p50 "
                         f"{_num(row.get('emulated_p50_ms'), 1)} ms (not the device's)")
    for row in (r for r in results["rows"] if r.get("partitioning")):
        part = row["partitioning"]
        share = part["compute_on_provider"]
        lines += ["", f"## Partitioning of {row['variant']} on {part['provider']}", "",
                  f"{_num(share * 100 if share is not None else None, 1)} % of the Conv/Gemm/MatMul/Add/Relu/pooling "
                  f"nodes ran on {part['provider']} ({part['subgraphs']} subgraph(s)); {part['on_cpu']} of "
                  f"{part['nodes']} nodes ran on the CPU" + (":" if part["cpu_nodes"] else "."), ""]
        lines += [f"- `{node}`" for node in part["cpu_nodes"]]
    if results["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['variant']} (`{s['artifact']}`): {s['reason']}"
                                           for s in results["skipped"]]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Accuracy vs p50 latency, one point per variant (colour: format, marker: precision), named in the
    legend; the baseline a star; estimated points (and emulated ones, at their estimated latency) hollow
    and labelled so."""
    from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig = Figure(figsize=(9, 5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    def latency(row: dict[str, Any]) -> float | None:
        return row.get("estimated_p50_ms") if row["status"] == "emulated" else row.get("p50_ms")

    points = [r for r in results["rows"] if latency(r) and r.get("top1") is not None]
    notes = {"estimated": " (estimated latency)", "emulated": " (emulated top-1, estimated latency)"}
    for row in points:
        color = _FORMAT_COLORS.get(row["format"], "gray")
        baseline, estimated = row["role"] == "baseline", row["status"] in notes
        label = (f"baseline: {row['variant']}, this host" if baseline
                 else row["variant"] + notes.get(row["status"], ""))
        ax.scatter(latency(row), row["top1"], s=260 if baseline else 80, zorder=3, label=label,
                   marker="*" if baseline else _PRECISION_MARKERS.get(row["precision"], "o"),
                   facecolors="none" if estimated else color, edgecolors=color, linewidths=1.6)
    accuracies = [r["top1"] for r in points]
    if accuracies and max(accuracies) - min(accuracies) < 1:  # keep sub-point differences from looking large
        middle = (max(accuracies) + min(accuracies)) / 2
        ax.set_ylim(middle - 0.75, middle + 0.75)
    latencies = [latency(r) for r in points]
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
    p50_ms: float | None = Field(None, ge=0)
    p90_ms: float | None = Field(None, ge=0)
    p99_ms: float | None = Field(None, ge=0)
    estimated_p50_ms: float | None = Field(None, ge=0)
    emulated_p50_ms: float | None = Field(None, ge=0)
    speedup: float | None = Field(None, ge=0)
    size_bytes: float | None = Field(None, ge=0)
    throughput_ips: float | None = Field(None, ge=0)
    peak_rss_mb: float | None = Field(None, ge=0)
    estimate: _Estimate | None = None
    partitioning: _Partitioning | None = None

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
