"""FP32 training and evaluation, and the ``train`` step that writes a checkpoint artifact.

The default recipe is tuned for a 2-core CPU: SGD with Nesterov momentum, a one-cycle learning rate,
light augmentation done on whole tensors (random shifts, horizontal flips and, when asked, random
erasing), channels-last memory format, bfloat16 autocast where the device computes bfloat16 natively
(``amp="auto"``; the weights stay float32), and a fixed seed. Images on disk stream through DataLoader
workers; those resized for evaluation (ImageNet-layout folders) train on random resized crops and flips.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgeres import data, distributed, models
from edgeres.console import progress, progress_line, say
from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing
from edgeres.recipe import EvalLimit, ImportStep, Origin, Training, TrainStep
from edgeres.request import Request
from edgeres.workspace import CHECKPOINT, Artifact, NoSuchArtifact, Workspace


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where autocast pays off."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TrainConfig(Request, Training):
    """How ``fit`` trains: the train step's options, and what only the library sets."""

    weight_decay: float = Field(5e-4, ge=0, le=1)
    augment: bool = True  # random shifts and flips (random resized crops for resized image folders)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The dtype ``fit`` computes in on ``device`` under autocast, or None for float32 throughout."""
        if self.amp == "off":
            return None
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else native_bf16()
        return torch.bfloat16 if self.amp == "bf16" or native else None


def set_threads(threads: int | None = None) -> None:
    """``threads``, else this machine's cores shared among the training processes on it (``--nproc``)."""
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // distributed.local_world_size()))


def _augment(x: torch.Tensor, gen: torch.Generator, shift: int) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (edge-replicated) and horizontal flips."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _erase(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Random erasing (Zhong et al., 2020): with probability ``p`` an image gets one rectangle of 2-40 %
    of its area, aspect ratio 0.3-3.3, set to 0 (the mean, after normalization)."""
    n, _, h, w = x.shape
    area = torch.empty(n).uniform_(0.02, 0.4, generator=gen) * h * w
    ratio = torch.exp(torch.empty(n).uniform_(math.log(0.3), math.log(1 / 0.3), generator=gen))
    eh = (area * ratio).sqrt().round().clamp(1, h).long()
    ew = (area / ratio).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
    rows, cols = torch.arange(h), torch.arange(w)
    inside = (((rows[None] >= top[:, None]) & (rows[None] < (top + eh)[:, None]))[:, :, None]
              & ((cols[None] >= left[:, None]) & (cols[None] < (left + ew)[:, None]))[:, None, :])
    chosen = (torch.rand(n, generator=gen) < p)[:, None, None]
    return x.masked_fill((inside & chosen)[:, None], 0.0)


def _batches(ds: Dataset, batch_size: int, shuffle: bool, gen: torch.Generator | None = None):
    """Batches of an in-memory dataset by indexing; of images on disk through a DataLoader whose workers
    decode them, streamed (memory independent of the dataset's size)."""
    if isinstance(ds, torch.utils.data.TensorDataset):
        x, y = ds.tensors
        order = torch.randperm(len(x), generator=gen) if shuffle else torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
    else:
        yield from DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, **data.loader_options())


def _shards(ds: Dataset, batch_size: int, gen: torch.Generator, rank: int, world: int):
    """What DistributedSampler gives, per global batch: the same seeded order on every rank, each global
    batch of ``batch_size`` split into ``world`` interleaved shards; this rank's shard and the global batch's
    size. A last batch smaller than the group is dropped (some rank would get no image)."""
    order = torch.randperm(len(ds), generator=gen)
    shards = []
    for start in range(0, len(ds), batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < world:
            break
        shards.append((idx[rank::world], len(idx)))
    if isinstance(ds, torch.utils.data.TensorDataset):
        x, y = ds.tensors
        for mine, size in shards:
            yield x[mine], y[mine], size
    else:  # decoded by the loader's workers, this rank's shards in order
        loader = DataLoader(ds, batch_sampler=[mine.tolist() for mine, _ in shards], **data.loader_options())
        for (x, y), (_, size) in zip(loader, shards):
            yield x, y, size


def _shard(ds: Dataset, rank: int, world: int) -> Dataset:
    """Every ``world``-th item from ``rank``: this rank's part of an evaluation."""
    if isinstance(ds, torch.utils.data.TensorDataset):
        return torch.utils.data.TensorDataset(*(t[rank::world] for t in ds.tensors))
    return torch.utils.data.Subset(ds, range(rank, len(ds), world))


def _top1(model: nn.Module, ds: Dataset, world: int) -> float:
    """Top-1 in percent over ``ds``, each rank evaluating its shard and the counts summed."""
    if world == 1:
        return evaluate(model, ds)["top1"]
    logits, labels = predict(model, _shard(ds, distributed.rank(), world))
    correct, n = distributed.all_sum([float((logits.argmax(1) == labels).sum()), float(len(labels))])
    return correct / n * 100


def _save_checkpoint(path: Path, state: dict) -> None:
    """Replace the epoch checkpoint atomically: a kill while saving keeps the previous epoch's."""
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def fit(model: nn.Module, train_ds: Dataset, config: TrainConfig, val_ds: Dataset | None = None,
        description: str = "train", keep_best: bool = False, *, checkpoint: Path | None = None
        ) -> list[dict[str, float]]:
    """Train in place with the default recipe; returns per-epoch loss (and val top-1).

    With ``keep_best`` (needs ``val_ds``) the model ends with the weights of its best validation epoch,
    the starting weights counting as epoch 0.

    Under torchrun (``--nproc``) this is DDP: every rank walks the same seeded order, each global batch of
    ``config.batch_size`` split among the ranks (the per-process batch is batch_size / N), the gradients
    averaged over the global batch. The global batch, the steps and the learning rate schedule are those of
    one process, so the learning rate needs no scaling and the model is the one process's up to
    BatchNorm's per-process statistics and the augmentation's random draws. Loss and val top-1 are summed
    over ranks; rank 0's model is the result.

    ``checkpoint``: a file where rank 0 saves model, optimizer, scheduler, random generators and history
    after every epoch; when it exists at the start, training resumes after its epoch."""
    distributed.join()
    world = distributed.world_size() if distributed.active() else 1
    rank = distributed.rank() if world > 1 else 0
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if world > 1 and torch.cuda.is_available()
                          else "cpu")
    gen = torch.Generator().manual_seed(config.seed)  # the data order: the same on every rank
    # augmentation: one generator with the order for one process (as before DDP); per rank under DDP
    aug = gen if world == 1 else torch.Generator().manual_seed(config.seed + 1_000_003 * (rank + 1))
    torch.manual_seed(config.seed)
    model = model.to(device=device, memory_format=torch.channels_last)
    n = len(train_ds)
    steps_per_epoch = n // config.batch_size + (n % config.batch_size >= world)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=config.lr, momentum=0.9, nesterov=True)
    total_steps = config.epochs * steps_per_epoch
    if total_steps >= 8:
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, config.lr, total_steps=total_steps, pct_start=0.25)
    else:  # too few steps for a warm-up and a decay phase
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    dtype = config.autocast_dtype(device)
    # images on disk that are resized for evaluation train on random resized crops (in the loader's workers)
    augmented = data.training_view(train_ds) if config.augment else None
    images = augmented if augmented is not None else train_ds
    history = []
    best: tuple[float, dict] | None = None
    first = 0
    saved = None
    if checkpoint is not None:
        saved = distributed.broadcast(torch.load(checkpoint, map_location="cpu", weights_only=True)
                                      if distributed.is_main() and checkpoint.is_file() else None)
    if saved is not None:
        if saved["world_size"] != world:
            raise EdgeresError(f"the checkpoint in {checkpoint.parent} was written by {saved['world_size']} "
                               f"process(es), not {world}",
                               hint=f"resume with --nproc {saved['world_size']} (or run without --resume)")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generators"][rank][0])
        aug.set_state(saved["generators"][rank][1])
        torch.set_rng_state(saved["torch_rng"])
        history, best, first = saved["history"], saved["best"], saved["epoch"]
        progress_line(f"{description}: resuming after epoch {first}/{config.epochs} from {checkpoint}")
    elif keep_best and val_ds is not None:
        start = _top1(model, val_ds, world)
        history.append({"epoch": 0, "val_top1": start})
        best = (start, copy.deepcopy(model.state_dict()))
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    with progress(log=False) as bar:  # one line per epoch, below
        task = bar.add_task(description, total=config.epochs * steps_per_epoch, status="")
        bar.update(task, completed=first * steps_per_epoch)
        for epoch in range(first, config.epochs):
            net.train()
            total, count = 0.0, 0
            batches = (_batches(images, config.batch_size, True, gen) if world == 1
                       else _shards(images, config.batch_size, gen, rank, world))
            for x, y, *size in batches:
                if config.augment and augmented is None:
                    x = _augment(x, aug, max(1, x.shape[-1] // 16))
                if config.erase:
                    x = _erase(x, aug, config.erase)
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                y = y.to(device)
                with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    logits = net(x)
                if world == 1:
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                    summed = loss.item() * len(y)
                else:  # DDP averages over ranks: scaled so that the gradient is the global batch's mean
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing,
                                           reduction="sum")
                    summed = loss.item()
                    loss = loss * (world / size[0])
                if not torch.isfinite(loss):
                    raise EdgeresError(f"training diverged in epoch {epoch + 1}: the loss is {loss.item()}",
                                       hint="lower --lr, or check the data's normalization (--mean/--std)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += summed
                count += len(y)
                bar.update(task, advance=1, status=f"epoch {epoch + 1}/{config.epochs} loss {total / count:.3f}")
            if world > 1:  # every rank evaluates (and keeps) rank 0's BatchNorm statistics
                total, count = distributed.all_sum([total, count])
                distributed.sync_buffers(model)
            record = {"epoch": epoch + 1, "loss": total / max(count, 1)}
            if first and epoch == first:
                record["resumed"] = True
            if val_ds is not None:
                record["val_top1"] = _top1(model, val_ds, world)
                bar.update(task, status=f"epoch {epoch + 1}/{config.epochs} val {record['val_top1']:.2f}%")
                if best is not None and record["val_top1"] > best[0]:
                    best = (record["val_top1"], copy.deepcopy(model.state_dict()))
            history.append(record)
            val = f", val top-1 {record['val_top1']:.2f}%" if "val_top1" in record else ""
            progress_line(f"{description}: epoch {epoch + 1}/{config.epochs}, loss {record['loss']:.4f}{val}")
            if checkpoint is not None:
                generators = distributed.gather([gen.get_state(), aug.get_state()])
                if distributed.is_main():
                    _save_checkpoint(checkpoint, {
                        "epoch": epoch + 1, "world_size": world, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "generators": generators, "torch_rng": torch.get_rng_state(), "history": history,
                        "best": best})
    if best is not None:
        model.load_state_dict(best[1])
    model.to("cpu")
    return history


@torch.no_grad()
def predict(model: nn.Module, ds: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels over a dataset."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for x, y in _batches(ds, batch_size, False):
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes), in percent."""
    result = {"top1": float((logits.argmax(1) == labels).mean() * 100), "n": int(len(labels))}
    if logits.shape[1] > 5:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        result["top5"] = float((top5 == labels[:, None]).any(1).mean() * 100)
    return result


def evaluate(model: nn.Module, ds: Dataset) -> dict[str, float]:
    return accuracy(*predict(model, ds))


# -- the train step ------------------------------------------------------------------------------
class TrainRequest(Request, Origin):
    """What ``edgeres train`` and ``edgeres import`` ask for: the model, where it comes from (``Origin``: data,
    preprocessing, checkpoint) and how it trains."""

    model: str
    eval_limit: EvalLimit = None
    config: TrainConfig = Field(default_factory=TrainConfig)
    resume: bool = False  # --resume: continue the interrupted run of this configuration from its last epoch

    @classmethod
    def of(cls, *, model: str, origin: Origin, options: TrainStep | ImportStep, resume: bool = False) -> TrainRequest:
        """What a train or import step's declared options ask for (``edgeres train``/``import``, recipes)."""
        config = TrainConfig(**options.model_dump(exclude={"eval_limit"}))
        return cls(**origin.model_dump(include=set(Origin.model_fields)), model=model, eval_limit=options.eval_limit,
                   config=config, resume=resume)


def prepare(req: TrainRequest) -> tuple[models.ModelSpec, data.DataSource, Preprocessing, int]:
    """Resolve model spec, data, preprocessing and class count, failing early and clearly."""
    spec = models.get_spec(req.model)
    validation = req.validation or ("test-split" if req.weights not in (None, "imagenet") else "holdout")
    source = data.open_source(req.dataset, req.data, validation)
    info = source.info()
    try:
        prep = models.default_preprocessing(spec, info).override(input_size=req.input_size, mean=req.mean,
                                                                 std=req.std, resize=req.resize)
    except ValueError as exc:
        raise EdgeresError(f"bad preprocessing for {info.name}: {exc}",
                           hint="--mean/--std take one value, or one per channel (repeat the option)") from None
    classes = req.num_classes or info.num_classes
    if classes < info.num_classes:
        raise EdgeresError(f"--num-classes {classes} is smaller than the {info.num_classes} classes of {info.name}")
    return spec, source, prep, classes


def run_train(req: TrainRequest, workspace: Workspace) -> Artifact:
    """Train an FP32 model (from scratch, ImageNet weights or a checkpoint) and save it, with its test
    accuracy, as a ``train`` artifact. With 0 epochs and a checkpoint it is ``run_import``."""
    spec = models.get_spec(req.model)
    if req.config.epochs is None:
        req = req.model_copy(update={"config": req.config.model_copy(update={"epochs": spec.default_epochs})})
        say(f"training {spec.name} for {spec.default_epochs} epochs (its default)")
    if req.config.epochs < 0:
        raise EdgeresError("--epochs must be >= 0")
    if req.config.epochs == 0 and req.weights not in (None, "imagenet"):
        return run_import(req, workspace)
    if req.resume and distributed.is_main():
        workspace.check_resumable()
    return _run(req, workspace, imported=False)


def run_import(req: TrainRequest, workspace: Workspace) -> Artifact:
    """Register a pretrained checkpoint as the FP32 ``train`` artifact of a lineage, unchanged (it must
    fit the model exactly), and evaluate it on the test split."""
    if req.weights in (None, "imagenet"):
        raise EdgeresError("import needs --weights FILE, a checkpoint of the model",
                           hint="ImageNet weights fine-tune to a dataset: `edgeres train MODEL --weights imagenet`")
    return _run(req.model_copy(update={"config": req.config.model_copy(update={"epochs": 0})}), workspace,
                imported=True)


def _run(req: TrainRequest, workspace: Workspace, imported: bool) -> Artifact:
    spec, source, prep, classes = prepare(req)
    set_threads()
    torch.manual_seed(req.config.seed)  # the initial weights too: a run is reproducible from its config
    model = models.create(spec.name, classes, prep.channels, req.weights, trust_pickle=req.trust_pickle,
                          adapt=not imported)
    say(f"loading {source.dataset} from {source.root} ({prep.describe()})")
    say(f"splits: {data.VALIDATIONS[source.validation]}")
    test_ds = source.load("test", prep, req.eval_limit)
    config = req.config.model_dump() | {"weights": req.weights, "validation": source.validation}
    with workspace.create("train", model=spec.name, dataset=source.dataset, config=config,
                          architecture={"name": spec.name, "num_classes": classes, "in_channels": prep.channels},
                          preprocessing=prep.to_dict(), classes=list(source.info().classes), precision="fp32",
                          data=source.to_manifest(), origin="imported" if imported else "trained",
                          resumable=bool(req.config.epochs),
                          resume="required" if req.resume else "if-any" if distributed.restarted() else None) as art:
        history, train_seconds, train_images = [], 0.0, 0
        if req.config.epochs:
            train_ds = source.load("train", prep, req.config.limit)
            val_ds = source.load("val", prep, req.eval_limit)
            start = time.perf_counter()
            history = fit(model, train_ds, req.config, val_ds, f"train {spec.name}", checkpoint=art.dir / CHECKPOINT)
            train_seconds, train_images = time.perf_counter() - start, len(train_ds)
        metrics: dict = {"test": evaluate(model, test_ds)}
        if source.validation == "test-split":  # also the whole test split, to compare with published figures
            metrics["test_full"] = evaluate(model, data.load_split(source.dataset, "test", prep, source.root,
                                                                   req.eval_limit))
        if req.config.epochs:
            metrics |= {"train_seconds": round(train_seconds, 1), "history": history, "train_images": train_images,
                        "processes": distributed.world_size(),
                        "resumed_after_epochs": [r["epoch"] - 1 for r in history if r.get("resumed")]}
        models.save_state_dict(model.to(memory_format=torch.contiguous_format), art.dir / "model.pt")
        art.manifest["metrics"] = metrics
    test = metrics["test"]
    how = "imported" if imported else f"trained in {train_seconds / 60:.1f} min"
    full = metrics.get("test_full")
    whole = f"; {full['top1']:.2f}% on the whole test split ({full['n']} images)" if full else ""
    say(f"[green]saved[/] {art.artifact.describe()}: test top-1 {test['top1']:.2f}% on {test['n']} images"
        f"{whole}; {how}")
    return art.artifact


def load_fp32(artifact: Artifact) -> nn.Module:
    """The FP32 torch model of a ``train`` (or ``prune``) artifact."""
    arch = artifact.manifest["architecture"]
    model = models.build_from_architecture(arch)
    models.load_state_dict(model, models.read_state_dict(artifact.file("model.pt")), artifact.id)
    return model.eval()


def fp32_model(ws: Workspace, ref: str, *, kinds: tuple[str, ...], dataset: str | None, data_dir: Path | None,
               eval_limit: int | None, epochs: int | None) -> Artifact:
    """The artifact ``ref`` names, or a model name's newest FP32 artifact of ``kinds`` (in that order of
    preference); with none, one is trained first (``epochs``: None for the model's default)."""
    from edgeres.models import get_spec

    try:
        return ws.resolve(ref)
    except NoSuchArtifact:
        get_spec(ref)  # an unknown name fails here, with suggestions
    source = next((a for a in (ws.latest(kind, model=ref, dataset=dataset) for kind in kinds) if a), None)
    if source is None:
        dataset = dataset or "fashion-mnist"
        say(f"no FP32 {ref} checkpoint for {dataset} in {ws.root}: training one first")
        return run_train(TrainRequest(model=ref, dataset=dataset, data=data_dir, eval_limit=eval_limit,
                                      config=TrainConfig(epochs=epochs)), ws)
    say(f"using {source.describe()}")
    return source
