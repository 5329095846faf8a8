from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, WorkspaceOpt, workspace


def run(
    recipe: Annotated[Path, typer.Argument(help="A recipe file, e.g. recipes/resnet18-fashion-int8-all.yaml.")],
    device: Annotated[Optional[str], typer.Option(help="Bench on this device instead of the recipe's.")] = None,
    from_step: Annotated[Optional[str], typer.Option("--from", help="Re-run from this step on.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show what would run.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Change a recipe key for "
                                                      "this run (repeatable): train.epochs=1, data=DIR, "
                                                      "export.targets=[onnx], bench=null drops a step.")] = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Run a recipe: train -> prune -> quantize -> export -> bench, skipping unchanged steps."""
    from edgeres import pipeline
    from edgeres.console import out
    from edgeres.recipe import load

    result = pipeline.run(load(recipe, set_ or ()), workspace(workspace_dir), from_step, device, dry_run)
    if dry_run:
        for o in result.outcomes:
            out.print(f"{o.step:9s} {'skip (unchanged)' if o.status == 'skipped' else 'run'}", markup=False)
        return
    from edgeres.cli.bench_cmd import show_results

    for bench in result.bench:
        show_results(bench.results)
        out.print(f"plot: {bench.file('plot.png')}", markup=False, soft_wrap=True)
