from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, workspace


def info(
    artifact: Annotated[Optional[str], typer.Argument(help="Artifact id, id prefix or path; none lists them all.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Show an artifact's manifest, or list the workspace's artifacts."""
    from rich.table import Table

    from edgeres.console import out

    ws = workspace(workspace_dir)
    if artifact is not None:
        out.print_json(json.dumps(ws.resolve(artifact).manifest, default=str))
        return
    table = Table("kind", "model", "dataset", "precision", "top-1 %", "id")
    table.columns[-1].no_wrap = True
    for a in ws.artifacts():
        m = a.manifest
        top1 = (m.get("metrics", {}).get("test") or {}).get("top1")
        table.add_row(a.kind, m.get("model", ""), m.get("dataset", ""),
                      " ".join(filter(None, [m.get("format"), m.get("precision")])),
                      f"{top1:.2f}" if isinstance(top1, (int, float)) else "", a.id)
    out.print(table)
