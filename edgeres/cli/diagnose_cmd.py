from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, JsonOpt, WorkspaceOpt, workspace
from edgeres.cli.devices_cmd import DevicesDirOpt, TrustNewHostOpt
from edgeres.cli.options import step_options
from edgeres.recipe import DiagnoseOptions

SLOWEST = 3  # operators shown per file (diagnose.json keeps ten)


@step_options(DiagnoseOptions)
def diagnose(
    artifact: Annotated[Optional[str], typer.Argument(
        help="An export artifact, or a model (artifact id or name) whose newest exports to diagnose; default: "
             "the lineage of the newest export.")] = None,
    options: DiagnoseOptions = None,
    trust_new_host: TrustNewHostOpt = False,
    data: DataDirOpt = None,
    devices_dir: DevicesDirOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
    json_: JsonOpt = False,
) -> None:
    """Which layer lost the accuracy, in which file, and what fixes it; which operator takes the time.

    Every exported file is compared point by point (stem, every convolution and residual block, logits) with
    the torch model it came from (int8 files: the quantize artifact's int8 model) on real test images: SQNR,
    cosine and max |diff|, and the point where the error jumps. The int8 model's worst layers are re-quantized
    kept in float to measure what that recovers. On the device (--device: here, over ssh, or emulated), each file is
    profiled operator by operator by the device's runtime, and, off this host, its outputs and its tensors at
    every point are set against this host's. Saved as a diagnose artifact (diagnose.json, sqnr.png).

    --json: {"artifact", "path", "files": {"json", "png"}, "report"}, report being diagnose.json: "model",
    "root", "dataset", "images", "points", "files" (per file: "format", "precision", "reference", "layers"
    [{"point", "kind", "sqnr_db", "cosine", "max_abs_diff", "added_db", "sqnr_vs_fp32_db"}], "culprits", "min_sqnr_db",
    "top1", "agreement", "fallback", "placement", "on_device" ("kind", "images", "top1", "agreement_with_this_host",
    "agreement_with_reference", "layers": [{"point", "sqnr_db", ...}] against this host's tensors)),
    "quantization" ("layers", "culprits", "recovery", "fix"), "latency" ("device",
    "processor", "cpu", "files": "p50_ms", "ops_p50_ms", "coverage", "outside_ops", "by_type", "by_block",
    "slowest", "requantize_ops", "layout_ops", "speedup_vs_fp32"), "gates"."""
    from edgeres.console import emit_json, stdout_to_stderr
    from edgeres.diagnose.step import REPORT_FILES, DiagnoseRequest, run_diagnose
    from edgeres.errors import EdgeresError

    request = DiagnoseRequest(**options.model_dump(), artifact=artifact, data_dir=data, devices_dir=devices_dir,
                              trust_new_host=trust_new_host)
    with stdout_to_stderr(json_):
        result = run_diagnose(request, workspace(workspace_dir))
    files = {kind: str(result.artifact.path / name) for kind, name in REPORT_FILES.items()}
    if json_:
        emit_json({"artifact": result.artifact.id, "path": str(result.artifact.path), "files": files,
                   "report": result.report})
    else:
        show_report(result.report)
        from edgeres.console import out

        out.print(f"saved {result.artifact.id}:", markup=False)
        for path in files.values():
            out.print(f"  {path}", markup=False, soft_wrap=True)
    if result.failures:
        raise EdgeresError(f"{len(result.failures)} gate(s) not met: " + "; ".join(result.failures),
                           hint=f"the whole diagnosis is in {files['json']}")


def show_report(report: dict) -> None:
    """The diagnosis as tables on stdout."""
    from rich.text import Text

    from edgeres.console import out, show, table

    latency = {f["artifact"]: f for f in (report.get("latency") or {}).get("files", [])}
    files = table("file", "against", "min SQNR dB", "logits SQNR dB", "agreement %", "error jumps at",
                  "float ops", "p50 ms", "ops sum ms", "outside ops %", title=f"{report['model']}: {report['images']} test images")
    for f in report["files"]:
        lat = latency.get(f["artifact"], {})
        fallback = f.get("fallback")
        files.add_row(f"{f['format']} {f['precision']}", Text(f["reference"]), f"{f['min_sqnr_db']:.1f}",
                      f"{f['layers'][-1]['sqnr_db']:.1f}", f"{f['agreement']:.1f}", ", ".join(f["culprits"]) or "-",
                      f"{fallback['float_ops']} of {fallback['compute_ops']}" if fallback else "-",
                      f"{lat['p50_ms']:.3f}" if lat.get("p50_ms") else "-",
                      f"{lat['ops_p50_ms']:.3f}" if lat.get("ops_p50_ms") else "-",
                      f"{outside * 100:.1f}" if (outside := (lat.get("outside_ops") or {}).get("share")) is not None
                      else "-")
    show(files)
    layers = table("point", *[f"{f['format']} {f['precision']}" for f in report["files"]],
                   *(["int8 vs fp32"] if report["quantization"] else []),
                   title="SQNR (dB) against the source model, point by point")
    for i, point in enumerate(report["points"]):
        cells = [f"{f['layers'][i]['sqnr_db']:.1f}" + (" *" if f["culprits"][:1] == [point] else "")
                 for f in report["files"]]
        cells += [f"{q['layers'][i]['sqnr_db']:.1f}" for q in report["quantization"][:1]]
        layers.add_row(point, *cells)
    show(layers)
    for q in report["quantization"]:
        if q["recovery"]:
            trials = table("kept in float", "val top-1 %", "Δ top-1 pp", "agreement with fp32 %",
                           title=f"keep-float trials ({q['val_images']} val images; FP32 "
                                 f"{q['recovery'][0]['fp32_top1']:.2f}%)")
            for r in q["recovery"]:
                trials.add_row(Text(", ".join(r["float_layers"]) or "(as quantized)"), f"{r['top1']:.2f}",
                               f"{r.get('recovery_pp', 0):+.2f}", f"{r['agreement']:.1f}")
            show(trials)
        if q.get("fix"):
            command = f": `{q['fix']['command']}`" if "command" in q["fix"] else ""
            out.print(Text(f"fix: {q['fix']['text']}{command}"), soft_wrap=True)
    for f in report["files"]:
        for placed in f.get("placement") or []:
            where = f"{f['format']} {f['precision']} on the {placed['unit']}"
            if placed.get("unavailable"):
                out.print(Text(f"{where}: not here ({placed['unavailable']})"), soft_wrap=True)
                continue
            emulated = f" ({placed['emulated']})" if placed.get("emulated") else ""
            blocks = ", ".join(f"{b}: {n}" for b, n in (placed.get("cpu_by_block") or {}).items())
            compute = (f", {placed['compute_on_cpu']} of them compute" if placed.get("compute_on_cpu") is not None
                       else "")
            left = f"{placed['on_cpu']} of {placed['ops']} operators left to the CPU{compute}"
            out.print(Text(f"{where}{emulated}: {left}" + (f" ({blocks})" if blocks else "")), soft_wrap=True)
    on_device = [f for f in report["files"] if f.get("on_device")]
    if on_device:
        where = on_device[0]["on_device"]
        runs = table("file", "images", "top-1 %", "agreement with this host %", "agreement with the source %",
                     "min SQNR vs this host dB", title=f"each file on {where['device']} ({where['where']})")
        for f in on_device:
            d = f["on_device"]
            if d.get("unavailable"):
                runs.add_row(f"{f['format']} {f['precision']}", Text(f"not run: {d['unavailable']}"), "", "", "", "")
                continue
            layers = (f"{d['layers_min_sqnr_db']:.1f} at {d['layers_worst_point']}" if "layers" in d
                      else Text(f"- ({d.get('layers_unavailable', '')})"))
            runs.add_row(f"{f['format']} {f['precision']}", str(d["images"]), f"{d['top1']:.1f}",
                         f"{d['agreement_with_this_host']:.1f}", f"{d['agreement_with_reference']:.1f}", layers)
        show(runs)
    latency = report.get("latency")
    if latency:
        if latency.get("unavailable"):
            out.print(Text(f"operator times: {latency['unavailable']}"), soft_wrap=True)
        if latency.get("cpu"):
            on = f" ({latency['processor']})" if latency.get("processor") else ""
            out.print(Text(f"operator times on {latency['device']}{on}; its cpu: {latency['cpu']['note']}"),
                      soft_wrap=True)
        for f in latency["files"]:
            if f.get("unavailable"):
                out.print(Text(f"{f['format']} {f['precision']}: {f['unavailable']}"), soft_wrap=True)
        timed = [f for f in latency["files"] if f.get("by_block")]
        if timed:
            blocks = list(dict.fromkeys(b for f in timed for b in f["by_block"]))
            by_block = table("block", *[f"{f['format']} {f['precision']}" for f in timed],
                             title=f"time by block (ms per run) on {latency['device']}, batch 1")
            for block in blocks:
                by_block.add_row(block, *[f"{f['by_block'][block]:.3f}" if block in f["by_block"] else "-"
                                          for f in timed])
            show(by_block)
        _int8_checks(latency, {f["artifact"]: f for f in report["files"]})
        slow = [f for f in latency["files"] if f.get("slowest") and f.get("ops_p50_ms")]
        if slow:
            ops = table("file", "operator", "type", "ms per run", "share of the operators %",
                        title=f"slowest operators on {latency['device']}, batch 1")
            for f in slow:
                for o in f["slowest"][:SLOWEST]:
                    ops.add_row(f"{f['format']} {f['precision']}", Text(o["op"]), o["type"], f"{o['ms']:.3f}",
                                f"{o['ms'] / f['ops_p50_ms'] * 100:.0f}")
            show(ops)


def _int8_checks(latency: dict, files: dict[str, dict]) -> None:
    """Why an int8 file is (not) faster than fp32: its speed beside the same format's fp32 file, compute
    operators left in float, quantize / dequantize operators that run outside a fused kernel, layouts
    converted at run time, and the CPU's int8 instructions."""
    from edgeres.console import show, table

    int8 = [f for f in latency["files"] if f["precision"] == "int8" and f.get("ops_p50_ms")]
    if not int8:
        return
    cpu = latency.get("cpu") or {}
    checks = table("file", "int8 over fp32", "float compute ops", "Q/DQ outside kernels (ms)",
                   "layout conversions (ms)", title=f"int8 checks on {latency['device']}; CPU int8 instructions: "
                                                    f"{', '.join(cpu.get('int8_instructions') or ['-'])}")
    for f in int8:
        fallback = files.get(f["artifact"], {}).get("fallback")
        requant, layout = f.get("requantize_ops") or {}, f.get("layout_ops") or {}
        checks.add_row(f"{f['format']} int8", f"{f['speedup_vs_fp32']:.2f}x" if f.get("speedup_vs_fp32") else "-",
                       f"{fallback['float_ops']} of {fallback['compute_ops']}" if fallback else "-",
                       f"{requant.get('count', 0)} ({requant.get('ms', 0):.3f})",
                       f"{layout.get('count', 0)} ({layout.get('ms', 0):.3f})")
    show(checks)
