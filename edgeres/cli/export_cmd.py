from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, Precision, Target, TfliteIo, WorkspaceOpt, values,
                                 workspace)


def export(
    target: Annotated[list[Target], typer.Option(help="Formats (repeatable).")] = [Target.all],
    precision: Annotated[Optional[list[Precision]], typer.Option(
        help="Precisions (repeatable); default: the model's own precision.")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Artifact id/path or model name; default: the latest model (int8 preferred).")] = None,
    io: Annotated[Optional[TfliteIo], typer.Option(help="TFLite int8 input/output tensors.")] = None,
    edgetpu: Annotated[bool, typer.Option("--edgetpu", help="Compile the TFLite int8 file for the Coral Edge TPU "
                                          "with edgetpu_compiler (on PATH); the file it came from is kept and "
                                          "verified.")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Run and check every exported file.")] = True,
    verify_limit: Annotated[int, typer.Option(help="Test images used for verification.")] = 500,
    calib_samples: Annotated[int, typer.Option(min=1, max=100000, help="Calibration images for the one range the "
                                               "quantize artifact lacks: TFLite io=int8 logits.")] = 200,
    output: Annotated[Optional[Path], typer.Option(help="Also copy the exported files into this directory.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files in --output.")] = False,
    data: DataDirOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Export to ONNX, OpenVINO IR and/or TFLite, and verify each file in its runtime."""
    from rich.text import Text

    from edgeres.console import show, table
    from edgeres.export.step import ExportRequest, run_export

    options = ({"io": io.value} if io else {}) | ({"compile": "edgetpu"} if edgetpu else {})
    request = ExportRequest(targets=values(target), precisions=values(precision), model=model, options=options,
                            verify=verify, verify_limit=verify_limit, calib_samples=calib_samples, output=output, force=force,
                            data_dir=data)
    artifacts = run_export(request, workspace(workspace_dir))
    shown = table("format", "precision", "size MB", "top-1 %", "agreement %", "max |diff|", "artifact")
    for a in artifacts:
        m, v = a.manifest, a.manifest["metrics"].get("verify", {})
        shown.add_row(m["format"], m["precision"], f"{m['metrics']['size_bytes'] / 1e6:.2f}",
                      f"{v['top1']:.2f}" if v else "-", f"{v['agreement']:.2f}" if v else "-",
                      f"{v['max_abs_diff']:.3g}" if v else "-", Text(str(a.path)))
    show(shown)
