from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, DatasetOpt, EvalLimitOpt, TrustPickleOpt, WorkspaceOpt,
                                 workspace)

ModelArg = Annotated[str, typer.Argument(help="Model name (see `edgeres models`).")]


def train(
    model: ModelArg,
    dataset: DatasetOpt = "fashion-mnist",
    data: DataDirOpt = None,
    epochs: Annotated[Optional[int], typer.Option(min=0, help="Training epochs; default: the model's (13 for the "
                                                  "ImageNet layout, 8 for CIFAR ResNets).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate of the one-cycle schedule.")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99, help="Label smoothing; it also bounds the "
                                                   "logits, which full-integer int8 quantizes.")] = 0.1,
    weights: Annotated[Optional[str], typer.Option(help="Start from 'imagenet' or a checkpoint file.")] = None,
    trust_pickle: TrustPickleOpt = False,
    num_classes: Annotated[Optional[int], typer.Option(min=2, help="Classifier size (default: the dataset's).")] = None,
    input_size: Annotated[Optional[int], typer.Option(min=8, help="Override the input size.")] = None,
    mean: Annotated[Optional[list[float]], typer.Option(help="Override the normalization mean (repeat per channel).")] = None,
    std: Annotated[Optional[list[float]], typer.Option(help="Override the normalization std (repeat per channel).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on a seeded subset of this many images.")] = None,
    eval_limit: EvalLimitOpt = None,
    seed: int = 0,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Train an FP32 model; the checkpoint becomes a `train` artifact in the workspace."""
    from edgeres.train import TrainConfig, TrainRequest, run_train

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, label_smoothing=label_smoothing, seed=seed,
                         limit=limit)
    request = TrainRequest(model, dataset, data, weights, num_classes, input_size, mean, std, eval_limit, config,
                           trust_pickle)
    artifact = run_train(request, workspace(workspace_dir))
    print(artifact.path)


def eval_(
    target: Annotated[str, typer.Argument(help="Artifact id/path, or a model name (its latest artifact).")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset (default: the artifact's).")] = None,
    data: DataDirOpt = None,
    eval_limit: EvalLimitOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Evaluate a model artifact on the test split: top-1 (and top-5)."""
    from edgeres.evaluate import run_eval

    result = run_eval(target, workspace(workspace_dir), dataset, data, eval_limit)
    line = f"top-1 {result['top1']:.2f}%"
    if "top5" in result:
        line += f"  top-5 {result['top5']:.2f}%"
    print(f"{line}  ({result['n']} test images)")
