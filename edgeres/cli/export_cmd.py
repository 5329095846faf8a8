from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, WorkspaceOpt, workspace
from edgeres.cli.options import step_options
from edgeres.recipe import ExportStep


@step_options(ExportStep)
def export(
    options: ExportStep,
    model: Annotated[Optional[str], typer.Option(
        help="Artifact id/path or model name; default: the latest model (int8 preferred).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Also copy the exported files into this directory.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files in --output.")] = False,
    data: DataDirOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Export to ONNX, OpenVINO IR and/or TFLite, and verify each file in its runtime."""
    from rich.text import Text

    from edgeres.console import show, stdout_to_stderr, table
    from edgeres.export.step import ExportRequest, run_export

    request = ExportRequest.of(options, model=model, output=output, force=force, data_dir=data)
    with stdout_to_stderr():  # converters' and NNCF's output: stdout is the table alone
        artifacts = run_export(request, workspace(workspace_dir))
    shown = table("format", "precision", "size MB", "top-1 %", "agreement %", "max |diff|", "artifact")
    for a in artifacts:
        m, v = a.manifest, a.manifest["metrics"].get("verify", {})
        shown.add_row(m["format"], m["precision"], f"{m['metrics']['size_bytes'] / 1e6:.2f}",
                      f"{v['top1']:.2f}" if v else "-", f"{v['agreement']:.2f}" if v else "-",
                      f"{v['max_abs_diff']:.3g}" if v else "-", Text(str(a.path)))
    show(shown)
