from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, JsonOpt, WorkspaceOpt, workspace


def info(
    artifact: Annotated[Optional[str], typer.Argument(help="Artifact id, id prefix or path; none lists them all.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
    json_: JsonOpt = False,
) -> None:
    """Show an artifact's manifest and check its files, or list the workspace's artifacts.

    --json, listing: {"workspace", "artifacts": [{"id", "kind", "model", "dataset", "format", "precision",
    "top1", "parent", "created", "path"}]}, newest first, top1 being the test top-1 % or null. One artifact:
    {"id", "kind", "path", "files_ok", "problem", "manifest"}; a damaged artifact is still printed, with
    files_ok false and the problem, and the command exits 1."""
    from edgeres.console import emit_json, out, show, stdout_to_stderr, table
    from edgeres.errors import EdgeresError

    ws = workspace(workspace_dir)
    if artifact is not None:
        found = ws.resolve(artifact)
        if not json_:
            out.print_json(json.dumps(found.manifest, default=str))
            found.verify()  # after the manifest, so that a damaged artifact can still be looked at
            return
        try:
            found.verify()
            problem = None
        except EdgeresError as exc:
            problem = exc
        emit_json({"id": found.id, "kind": found.kind, "path": str(found.path), "files_ok": problem is None,
                   "problem": str(problem) if problem else None, "manifest": found.manifest})
        if problem:
            raise problem
        return
    with stdout_to_stderr(json_):
        rows = [_row(a) for a in ws.artifacts()]
    if json_:
        emit_json({"workspace": str(ws.root), "artifacts": rows})
        return
    from rich.text import Text

    shown = table("kind", "model", "dataset", "precision", "top-1 %", "id")
    for row in rows:
        top1 = f"{row['top1']:.2f}" if row["top1"] is not None else ""
        precision = " ".join(filter(None, [row["format"], row["precision"]]))
        shown.add_row(*map(Text, [row["kind"], row["model"], row["dataset"], precision, top1, row["id"]]))
    show(shown)  # Text: names from disk are not markup


def _row(a) -> dict[str, Any]:
    m = a.manifest
    test = (m.get("metrics") or {}).get("test")
    top1 = test.get("top1") if isinstance(test, dict) else None
    return {"id": a.id, "kind": a.kind, "model": m["model"], "dataset": m["dataset"], "format": m.get("format"),
            "precision": m.get("precision"),
            "top1": top1 if isinstance(top1, (int, float)) and not isinstance(top1, bool) else None,
            "parent": m.get("parent"), "created": m.get("created"), "path": str(a.path)}
