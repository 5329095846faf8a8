from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, Dataset, EvalLimitOpt, NprocOpt, WorkspaceOpt, spread,
                                 workspace)
from edgeres.cli.options import step_options
from edgeres.recipe import ImportStep, Origin, TrainStep

ModelArg = Annotated[str, typer.Argument(help="Model name (see `edgeres models`).")]


@step_options(TrainStep)
@step_options(Origin, into="origin")
def train(
    model: ModelArg,
    origin: Origin,
    options: TrainStep,
    nproc: NprocOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run of this very command "
                                         "(same options) from its last finished epoch.")] = False,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Train an FP32 model; the checkpoint becomes a `train` artifact in the workspace."""
    from edgeres import distributed
    from edgeres.console import stdout_to_stderr

    if resume and distributed.is_main():  # before any process starts; rank 0 holds the checkpoints
        workspace(workspace_dir).check_resumable()
    spread(nproc)
    from edgeres.train import TrainRequest, run_train

    request = TrainRequest.of(model=model, origin=origin, options=options, resume=resume)
    with distributed.joined(), stdout_to_stderr():  # stdout: the artifact's path alone
        artifact = run_train(request, workspace(workspace_dir))
    if distributed.is_main():
        print(artifact.path)


@step_options(ImportStep)
@step_options(Origin, into="origin")
def import_(
    model: ModelArg,
    weights: Annotated[str, typer.Option(help="The checkpoint file: a state_dict, or a training script's dict "
                                         "holding one (state_dict / model / net / state_dict_ema; "
                                         "module. and model. prefixes are removed).")],
    origin: Origin,
    options: ImportStep,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Register a pretrained checkpoint as an FP32 artifact (unchanged) and evaluate it on the test split.

    Give the preprocessing it was trained with (--mean/--std/--input-size); quantize, prune, export and bench
    then take it like a model edgeres trained."""
    from edgeres.console import stdout_to_stderr
    from edgeres.train import TrainRequest, run_import

    origin = origin.model_copy(update={"weights": weights})
    with stdout_to_stderr():
        artifact = run_import(TrainRequest.of(model=model, origin=origin, options=options), workspace(workspace_dir))
    print(artifact.path)


def eval_(
    target: Annotated[str, typer.Argument(help="Artifact id/path, or a model name (its latest artifact).")],
    dataset: Annotated[Optional[Dataset], typer.Option(help="Dataset (default: the artifact's; another is an "
                                                       "error).")] = None,
    data: DataDirOpt = None,
    eval_limit: EvalLimitOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Evaluate a model artifact on the test split of its data: top-1 (and top-5)."""
    from edgeres.evaluate import run_eval

    result = run_eval(target, workspace(workspace_dir), dataset=dataset and dataset.value, data_dir=data, limit=eval_limit)
    line = f"top-1 {result['top1']:.2f}%"
    if "top5" in result:
        line += f"  top-5 {result['top5']:.2f}%"
    print(f"{line}  ({result['n']} test images)")
