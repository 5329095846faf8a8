from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, DatasetOpt, NprocOpt, WorkspaceOpt, spread, workspace
from edgeres.cli.options import step_options
from edgeres.recipe import PruneStep


@step_options(PruneStep)
def prune(
    model: Annotated[str, typer.Argument(help="Model name (its latest FP32 train artifact) or an artifact id/path.")],
    options: PruneStep,
    global_pruning: Annotated[Optional[bool], typer.Option("--global/--uniform", help="Same as --scope global / "
                                                           "--scope uniform.")] = None,
    dataset: DatasetOpt = None,
    data: DataDirOpt = None,
    nproc: NprocOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Structured channel pruning (Torch-Pruning DepGraph): a narrower model, fine-tuned, ready to quantize.

    Prune before quantizing: the pruned artifact goes on to `edgeres quantize <id> --int8`. With --nproc
    (or under torchrun) every process prunes alike and the fine-tuning is DDP."""
    spread(nproc)
    from edgeres import distributed
    from edgeres.console import stdout_to_stderr
    from edgeres.prune import PruneRequest, run_prune

    if global_pruning is not None:
        options = options.model_copy(update={"scope": "global" if global_pruning else "uniform"})
    request = PruneRequest.of(options, model=model, dataset=dataset and dataset.value, data_dir=data)
    with distributed.joined(), stdout_to_stderr():  # stdout: the artifact's path alone
        artifact = run_prune(request, workspace(workspace_dir))
    if distributed.is_main():
        print(artifact.path)
