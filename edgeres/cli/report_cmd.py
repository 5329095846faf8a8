from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, workspace


def report(
    artifact: Annotated[Optional[str], typer.Argument(
        help="Bench artifact id, id prefix or path; default: the latest bench.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Show a saved benchmark as a table, and re-write its Markdown, CSV and PNG reports."""
    import json

    from edgeres.console import out
    from edgeres.errors import EdgeresError
    from edgeres.report import FILES, save, table

    bench = workspace(workspace_dir).pick(artifact, ("bench",))
    if bench.kind != "bench":
        raise EdgeresError(f"{bench.id} is a {bench.kind} artifact, not a bench artifact",
                           hint="`edgeres info` lists the artifacts; `edgeres bench` makes one")
    try:
        results = json.loads(bench.file(FILES["json"]).read_text())
    except json.JSONDecodeError as exc:
        raise EdgeresError(f"{bench.file(FILES['json'])} is not valid JSON: {exc}") from None
    out.print(table(results))
    for warning in results["warnings"]:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(f"re-wrote the reports of {bench.id}:")
    for path in save(results, bench.path, ("md", "csv", "png")).values():
        out.print(f"  {path}")
