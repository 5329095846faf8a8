from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, JsonOpt, WorkspaceOpt, workspace

# What a results.json that passed the schema can still trip in a renderer (a value no bench writes):
# reported as a damaged file, not as a traceback.
_RENDER_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, OverflowError)


def report(
    artifact: Annotated[Optional[str], typer.Argument(
        help="Bench artifact id, id prefix or path; default: the latest bench.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
    json_: JsonOpt = False,
) -> None:
    """Show a saved benchmark as a table, and re-write its Markdown, CSV and PNG reports.

    --json: the same document as `edgeres bench --json`: {"artifact", "path", "files", "results"}."""
    from rich.text import Text

    from edgeres.cli.bench_cmd import show_results
    from edgeres.console import emit_json, out, plain, stdout_to_stderr
    from edgeres.errors import EdgeresError
    from edgeres.report import FILES, document, load, save

    ws = workspace(workspace_dir)
    # only results.json is checked: the other files are re-rendered from it (and re-hashed) below
    bench = ws.pick(artifact, ("bench",), verify=False)
    if bench.kind != "bench":
        raise EdgeresError(f"{bench.id} is a {bench.kind} artifact, not a bench artifact",
                           hint="`edgeres info` lists the artifacts; `edgeres bench` makes one")
    results = load(bench)
    results_file = bench.path / FILES["json"]
    try:
        if json_:
            emit_json(document(bench, results))
        else:
            show_results(results)
        with stdout_to_stderr(json_):
            paths = save(results, bench.path, ("md", "csv", "png"))
    except OSError as exc:
        raise EdgeresError(f"could not re-write the reports of {bench.id} in {bench.path}: {exc.strerror or exc}",
                           hint="the results above are complete; make the workspace writable to refresh the "
                                "Markdown, CSV and PNG files") from None
    except _RENDER_ERRORS as exc:
        raise EdgeresError(f"{results_file} cannot be shown: {type(exc).__name__}: {exc}",
                           hint=f"it holds a value no bench writes: re-run `edgeres bench`, or delete "
                                f"{bench.path}") from None
    ws.rehash(bench, [path.name for path in paths.values()])
    if json_:
        plain(f"re-wrote the reports of {bench.id}")
        return
    out.print(Text(f"re-wrote the reports of {bench.id}:"))
    for path in paths.values():
        out.print(Text(f"  {path}"), soft_wrap=True)
