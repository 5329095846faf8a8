from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, workspace


def info(
    artifact: Annotated[Optional[str], typer.Argument(help="Artifact id, id prefix or path; none lists them all.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Show an artifact's manifest and check its files, or list the workspace's artifacts."""
    from rich.table import Table
    from rich.text import Text

    from edgeres.console import out

    ws = workspace(workspace_dir)
    if artifact is not None:
        found = ws.resolve(artifact)
        out.print_json(json.dumps(found.manifest, default=str))
        found.verify()  # after the manifest, so that a damaged artifact can still be looked at
        return
    table = Table("kind", "model", "dataset", "precision", "top-1 %", "id")
    table.columns[-1].no_wrap = True
    for a in ws.artifacts():
        m = a.manifest
        test = (m.get("metrics") or {}).get("test")
        top1 = test.get("top1") if isinstance(test, dict) else None
        shown = f"{top1:.2f}" if isinstance(top1, (int, float)) and not isinstance(top1, bool) else ""
        cells = [a.kind, m["model"], m["dataset"], " ".join(filter(None, [m.get("format"), m.get("precision")])),
                 shown, a.id]
        table.add_row(*map(Text, cells))  # Text: names from disk are not markup
    out.print(table)
