from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from edgeres.cli.common import (DEFAULT_WORKSPACE, DataDirOpt, DatasetOpt, EvalLimitOpt, NprocOpt, TrustPickleOpt,
                                 WorkspaceOpt, spread, workspace)

ModelArg = Annotated[str, typer.Argument(help="Model name (see `edgeres models`).")]
NumClassesOpt = Annotated[Optional[int], typer.Option(min=2, max=100000,
                                                      help="Classifier size (default: the dataset's).")]
InputSizeOpt = Annotated[Optional[int], typer.Option(min=8, max=4096, help="Input size (default: the model "
                                                     "family's for the dataset).")]
ResizeOpt = Annotated[Optional[int], typer.Option(min=0, max=8192, help="Images not already at the input size: "
                                                  "shorter side resized to this, then center-cropped (default: "
                                                  "input size / 0.875 for ImageNet-layout models on image folders, "
                                                  "else the input size; 0: the input size).")]
MeanOpt = Annotated[Optional[list[float]], typer.Option(help="Normalization mean: one value, or one per channel "
                                                        "(repeat the option).")]
StdOpt = Annotated[Optional[list[float]], typer.Option(help="Normalization std: one value, or one per channel "
                                                       "(repeat the option).")]
class Amp(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    off = "off"


class Validation(str, Enum):
    holdout = "holdout"
    test_split = "test-split"


ValidationOpt = Annotated[Optional[Validation], typer.Option(help="Images for decisions: holdout (1/12 of the training "
                                                      "images, kept out of training) or test-split (20 % of the "
                                                      "test split; the other 80 % is reported). Default: "
                                                      "test-split for a checkpoint file, else holdout.")]


def train(
    model: ModelArg,
    dataset: DatasetOpt = "fashion-mnist",
    data: DataDirOpt = None,
    epochs: Annotated[Optional[int], typer.Option(min=0, max=10000, help="Training epochs; default: the model's "
                                                  "(13 for the ImageNet layout, 8 for CIFAR ResNets).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=65536)] = 128,
    lr: Annotated[float, typer.Option(min=1e-6, max=10.0,
                                      help="Peak learning rate of the one-cycle schedule.")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99, help="Label smoothing; it also bounds the "
                                                   "logits, which full-integer int8 quantizes.")] = 0.1,
    erase: Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability of random erasing (one "
                                         "rectangle of each training image set to 0).")] = 0.0,
    amp: Annotated[Amp, typer.Option(help="Mixed precision: bf16 autocast (weights stay float32); auto uses it "
                                     "where the CPU computes bf16 natively (AVX512-BF16, AMX).")] = Amp.auto,
    weights: Annotated[Optional[str], typer.Option(help="Fine-tune from 'imagenet' or a checkpoint file (a "
                                                   "classifier of another size starts fresh). To use a "
                                                   "checkpoint as it is: `edgeres import`.")] = None,
    trust_pickle: TrustPickleOpt = False,
    num_classes: NumClassesOpt = None,
    input_size: InputSizeOpt = None,
    resize: ResizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    validation: ValidationOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on a seeded subset of this many images.")] = None,
    eval_limit: EvalLimitOpt = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
    nproc: NprocOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run of this very command "
                                         "(same options) from its last finished epoch.")] = False,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Train an FP32 model; the checkpoint becomes a `train` artifact in the workspace."""
    from edgeres import distributed

    if resume and distributed.is_main():  # before any process starts; rank 0 holds the checkpoints
        workspace(workspace_dir).check_resumable()
    spread(nproc)
    from edgeres.train import TrainConfig, TrainRequest, run_train

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, label_smoothing=label_smoothing, erase=erase,
                         amp=amp.value, seed=seed, limit=limit)
    request = TrainRequest(model=model, dataset=dataset, data_dir=data, weights=weights, num_classes=num_classes,
                           input_size=input_size, resize=resize, mean=mean, std=std, validation=validation.value if validation else None,
                           eval_limit=eval_limit, config=config, trust_pickle=trust_pickle, resume=resume)
    with distributed.joined():
        artifact = run_train(request, workspace(workspace_dir))
    if distributed.is_main():
        print(artifact.path)


def import_(
    model: ModelArg,
    weights: Annotated[str, typer.Option(help="The checkpoint file: a state_dict, or a training script's dict "
                                         "holding one (state_dict / model / net / state_dict_ema; "
                                         "module. and model. prefixes are removed).")],
    dataset: DatasetOpt = "fashion-mnist",
    data: DataDirOpt = None,
    trust_pickle: TrustPickleOpt = False,
    num_classes: NumClassesOpt = None,
    input_size: InputSizeOpt = None,
    resize: ResizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    validation: ValidationOpt = None,
    eval_limit: EvalLimitOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Register a pretrained checkpoint as an FP32 artifact (unchanged) and evaluate it on the test split.

    Give the preprocessing it was trained with (--mean/--std/--input-size); quantize, prune, export and bench
    then take it like a model edgeres trained."""
    from edgeres.train import TrainRequest, run_import

    request = TrainRequest(model=model, dataset=dataset, data_dir=data, weights=weights, num_classes=num_classes,
                           input_size=input_size, resize=resize, mean=mean, std=std, validation=validation.value if validation else None,
                           eval_limit=eval_limit, trust_pickle=trust_pickle)
    print(run_import(request, workspace(workspace_dir)).path)


def eval_(
    target: Annotated[str, typer.Argument(help="Artifact id/path, or a model name (its latest artifact).")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset (default: the artifact's; another is an "
                                                   "error).")] = None,
    data: DataDirOpt = None,
    eval_limit: EvalLimitOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Evaluate a model artifact on the test split of its data: top-1 (and top-5)."""
    from edgeres.evaluate import run_eval

    result = run_eval(target, workspace(workspace_dir), dataset=dataset, data_dir=data, limit=eval_limit)
    line = f"top-1 {result['top1']:.2f}%"
    if "top5" in result:
        line += f"  top-5 {result['top5']:.2f}%"
    print(f"{line}  ({result['n']} test images)")
