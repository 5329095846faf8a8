from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, workspace

# What a results.json that passed the schema can still trip in a renderer (a value no bench writes):
# reported as a damaged file, not as a traceback.
_RENDER_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, OverflowError)


def report(
    artifact: Annotated[Optional[str], typer.Argument(
        help="Bench artifact id, id prefix or path; default: the latest bench.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Show a saved benchmark as a table, and re-write its Markdown, CSV and PNG reports."""
    from rich.text import Text

    from edgeres.console import out
    from edgeres.errors import EdgeresError
    from edgeres.report import FILES, load, save, table

    ws = workspace(workspace_dir)
    # only results.json is checked: the other files are re-rendered from it (and re-hashed) below
    bench = ws.pick(artifact, ("bench",), verify=False)
    if bench.kind != "bench":
        raise EdgeresError(f"{bench.id} is a {bench.kind} artifact, not a bench artifact",
                           hint="`edgeres info` lists the artifacts; `edgeres bench` makes one")
    results = load(bench)
    results_file = bench.path / FILES["json"]
    try:
        shown = table(results)
        shown.title, shown.caption = Text(str(shown.title or "")), Text(str(shown.caption or ""))  # not markup
        out.print(shown)
        for warning in results["warnings"]:
            out.print(Text.assemble(("warning:", "yellow"), " ", warning))
        paths = save(results, bench.path, ("md", "csv", "png"))
    except OSError as exc:
        raise EdgeresError(f"could not re-write the reports of {bench.id} in {bench.path}: {exc.strerror or exc}",
                           hint="the table above is complete; make the workspace writable to refresh the "
                                "Markdown, CSV and PNG files") from None
    except _RENDER_ERRORS as exc:
        raise EdgeresError(f"{results_file} cannot be shown: {type(exc).__name__}: {exc}",
                           hint=f"it holds a value no bench writes: re-run `edgeres bench`, or delete "
                                f"{bench.path}") from None
    ws.rehash(bench, [path.name for path in paths.values()])
    out.print(Text(f"re-wrote the reports of {bench.id}:"))
    for path in paths.values():
        out.print(Text(f"  {path}"), soft_wrap=True)
