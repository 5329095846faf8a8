from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from edgeres.cli.common import DEFAULT_WORKSPACE, DataDirOpt, EvalLimitOpt, WorkspaceOpt, workspace


class Method(str, Enum):
    l1 = "l1"
    l2 = "l2"
    taylor = "taylor"
    bn_scale = "bn-scale"
    magnitude = "magnitude"


def prune(
    model: Annotated[str, typer.Argument(help="Model name (its latest FP32 train artifact) or an artifact id/path.")],
    ratio: Annotated[Optional[float], typer.Option(help="Fraction of channels to remove, in (0, 1); 0.3 when "
                                                        "not given. MACs fall roughly with the square of the kept "
                                                        "fraction.")] = None,
    method: Annotated[Method, typer.Option(help="Channel importance: group L1 / L2 weight norm, first-order "
                                                "Taylor (loss gradient) or BatchNorm scale; 'magnitude' zeroes "
                                                "single weights instead (needs --sparsity).")] = Method.l1,
    sparsity: Annotated[Optional[float], typer.Option(help="--method magnitude: fraction of weights to zero, "
                                                           "in (0, 1). Shrinks a compressed file, rarely "
                                                           "latency.")] = None,
    global_pruning: Annotated[bool, typer.Option("--global/--uniform", help="Rank channels across all layers "
                                                 "(--global) or remove the same fraction from every layer.")] = False,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="Fine-tune epochs after each pruning step (the "
                                                             "best by validation accuracy is kept).")] = 3,
    iterative: Annotated[int, typer.Option(min=1, help="Prune in this many equal steps, fine-tuning after "
                                                       "each.")] = 1,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak fine-tune learning rate (one-cycle).")] = 0.01,
    round_to: Annotated[Optional[int], typer.Option(min=1, help="Keep channel counts multiples of this, "
                                                                "which CPU kernels run without padding; default 8 "
                                                                "for ImageNet-layout ResNets, none for CIFAR ones; "
                                                                "1 turns it off.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset; default: the model's own (fashion-mnist when "
                                                   "one must be trained first).")] = None,
    data: DataDirOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Fine-tune on a seeded subset of the training "
                                                             "images.")] = None,
    val_limit: Annotated[Optional[int], typer.Option(min=1, help="Validation images that pick the best "
                                                                 "fine-tune epoch.")] = 2000,
    eval_limit: EvalLimitOpt = None,
    workspace_dir: WorkspaceOpt = DEFAULT_WORKSPACE,
) -> None:
    """Structured channel pruning (Torch-Pruning DepGraph): a narrower model, fine-tuned, ready to quantize.

    Prune before quantizing: the pruned artifact goes on to `edgeres quantize <id> --int8`."""
    from edgeres.prune import PruneRequest, run_prune

    request = PruneRequest(model=model, ratio=ratio, method=method.value, global_pruning=global_pruning,
                           finetune_epochs=finetune_epochs, iterative=iterative, lr=lr, round_to=round_to,
                           limit=limit, val_limit=val_limit, eval_limit=eval_limit, dataset=dataset, data_dir=data,
                           sparsity=sparsity)
    print(run_prune(request, workspace(workspace_dir)).path)
