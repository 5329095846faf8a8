"""The model zoo: ResNets by name, their default preprocessing, and checkpoint loading.

Two families:
- ``imagenet``: torchvision's ResNet-18/34/50/101/152, unchanged (7x7 stride-2 stem and max-pool), so
  torchvision/ImageNet checkpoints load and the exported graphs are the ones device vendors tune for.
- ``cifar``: He et al.'s CIFAR ResNet-20/32/44/56/110 with option-A shortcuts.

Small grayscale images (Fashion-MNIST) keep their single channel: the stem takes ``in_channels=1``
instead of repeating the grey channel three times, which saves input bandwidth on the device and costs
no accuracy; ImageNet RGB stem weights are summed over the colour axis to fit (as timm does).
The ImageNet family sees Fashion-MNIST at 32x32 (bilinear upsampling from 28x28): the smallest size at
which its five stride-2 stages still leave a 1x1 map; the CIFAR family sees it at its native 28x28.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgeres.data import DatasetInfo
from edgeres.errors import EdgeresError
from edgeres.preprocessing import Preprocessing


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "imagenet" | "cifar"
    depth: int
    description: str
    builder: Callable[[int, int], nn.Module]
    default_epochs: int  # FP32 training epochs of the default recipe (benchmarks/RESULTS.md)
    imagenet_weights_file: str | None = None  # torchvision's file name in the torch hub cache
    # Structured pruning keeps channel counts multiples of this unless told otherwise: the CPU kernels pad
    # other widths (ResNet-18 pruned 30 %: 1.70x faster on onnxruntime with widths of 8s, 1.5x without;
    # benchmarks/RESULTS.md). None for the CIFAR ResNets, whose 16-64 channels steps of 8 would cut coarsely.
    prune_round_to: int | None = None


def _torchvision(arch: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return model

    return build


def _cifar(depth: int) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        from edgeres.cifar_resnet import CifarResNet

        return CifarResNet(depth, num_classes, in_channels)

    return build


_TV_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-11ad3fa6.pth",
    "resnet101": "resnet101-cd907fc2.pth",
    "resnet152": "resnet152-f82ba261.pth",
}

REGISTRY: dict[str, ModelSpec] = {}
for _depth in (18, 34, 50, 101, 152):
    _name = f"resnet{_depth}"
    REGISTRY[_name] = ModelSpec(_name, "imagenet", _depth, f"torchvision ResNet-{_depth} (ImageNet layout)",
                                _torchvision(_name), 13, _TV_FILES[_name], prune_round_to=8)
for _depth in (20, 32, 44, 56, 110):
    _name = f"resnet{_depth}"
    REGISTRY[_name] = ModelSpec(_name, "cifar", _depth, f"CIFAR ResNet-{_depth} (He et al. 2016, option A)",
                                _cifar(_depth), 8)


def list_models(pattern: str = "*") -> list[str]:
    """Model names matching a shell-style pattern, e.g. ``resnet*``, in registry order."""
    return [name for name in REGISTRY if fnmatch.fnmatch(name, pattern)]


def get_spec(name: str) -> ModelSpec:
    spec = REGISTRY.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known models: {', '.join(REGISTRY)}"
        raise EdgeresError(f"unknown model {name!r}", hint=hint)
    return spec


def default_preprocessing(spec: ModelSpec, info: DatasetInfo) -> Preprocessing:
    """The input contract for a model family trained on a dataset. Only the ImageNet family on image
    folders keeps the ImageNet habit of resizing to ``size / 0.875`` and center-cropping; every other
    image is used at its size, or resized straight to the input size."""
    if info.name == "fashion-mnist":
        size = 32 if spec.family == "imagenet" else info.native_size
    elif info.name == "cifar10":
        size = 32
    else:
        size = 224 if spec.family == "imagenet" else 32
    resize = round(size / 0.875) if info.name == "imagefolder" and spec.family == "imagenet" else None
    return Preprocessing(size, info.channels, info.mean, info.std, resize=resize)


def build(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    return get_spec(name).builder(num_classes, in_channels)


def build_from_architecture(arch: dict[str, Any]) -> nn.Module:
    """The model an artifact's ``architecture`` records: the zoo model, with every layer listed under
    ``channels`` (set by pruning: module name -> ``{"in", "out"}`` for Conv2d/Linear, ``{"features"}`` for
    BatchNorm2d) rebuilt at its recorded width, so pruned checkpoints load as plain state_dicts."""
    model = build(arch["name"], arch["num_classes"], arch["in_channels"])
    for name, width in arch.get("channels", {}).items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise EdgeresError(f"the recorded architecture names a layer {name!r} that {arch['name']} "
                               f"does not have") from None
        if isinstance(old, nn.Conv2d):
            new: nn.Module = nn.Conv2d(width["in"], width["out"], old.kernel_size, old.stride, old.padding,
                                       old.dilation, old.groups, old.bias is not None, old.padding_mode)
        elif isinstance(old, nn.BatchNorm2d):
            new = nn.BatchNorm2d(width["features"], old.eps, old.momentum, old.affine, old.track_running_stats)
        elif isinstance(old, nn.Linear):
            new = nn.Linear(width["in"], width["out"], old.bias is not None)
        else:
            raise EdgeresError(f"the recorded architecture resizes {name!r}, a {type(old).__name__}; only "
                               f"Conv2d, BatchNorm2d and Linear layers can be resized")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    return model


# -- checkpoints ---------------------------------------------------------------------------------
# Where training scripts in the wild keep the weights inside a checkpoint dict, in order of preference,
# and the prefixes their wrappers add (DataParallel/DDP, Lightning, torch.compile).
_NESTED_KEYS = ("state_dict", "model", "net", "model_state_dict", "state_dict_ema", "model_ema")
_WRAPPER_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def read_state_dict(path: Path | str, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state_dict from a user checkpoint: a plain state_dict, or one nested under ``state_dict``,
    ``model``, ``net``, ``state_dict_ema`` ... (other entries such as ``best_prec1`` are ignored), with any
    ``module.`` / ``model.`` wrapper prefix removed. Never runs pickled code unless ``trust_pickle``
    (``--trust-pickle``: the user vouches for the file)."""
    path = Path(path)
    if path.is_dir():
        raise EdgeresError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        kind = "is not a regular file" if path.exists() else "not found"  # /dev/zero would be read forever
        raise EdgeresError(f"checkpoint {path} {kind}")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the error below says enough
            warnings.simplefilter("ignore")
            obj: Any = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        lines = str(exc).splitlines()
        text = lines[0][:200] if lines else type(exc).__name__
        hint = ("re-save it as a plain state_dict (torch.save(model.state_dict(), path)), or, only for a file "
                "you trust, pass --trust-pickle")
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):  # it names code to import and run
            raise EdgeresError(
                f"checkpoint {path} holds pickled Python objects, not just tensors; refusing to load it "
                f"because unpickling can run arbitrary code", hint=hint) from None
        if text.startswith("Weights only load failed"):  # a pickle the tensors-only reader cannot follow
            raise EdgeresError(
                f"checkpoint {path} cannot be read as tensors only: it is corrupt, or it holds pickled data "
                f"whose loading could run arbitrary code", hint=hint) from None
        raise EdgeresError(f"checkpoint {path} is corrupt or not a torch file ({text})") from None
    for _ in range(3):  # e.g. {"state_dict": {"model": {...}}}
        if not isinstance(obj, dict) or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), (dict, nn.Module))), None)
        if inner is None:
            break
        obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeresError(f"checkpoint {path} does not hold a state_dict of tensors",
                           hint=f"edgeres looks for the weights at the top level or under one of "
                                f"{', '.join(_NESTED_KEYS)}")
    state = {str(k): v for k, v in obj.items()}
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise EdgeresError(f"checkpoint {path} holds NaN or infinite values in {', '.join(bad[:3])}"
                           f"{' ...' if len(bad) > 3 else ''}", hint="the training that wrote it diverged; "
                           "use an earlier checkpoint")
    return state


def _head(state: dict[str, Any]) -> str | None:
    return next((p for p in ("fc", "linear") if f"{p}.weight" in state), None)


def fit_names(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint's names made the model's where only the naming differs: the classifier called
    ``fc`` or ``linear``; BatchNorm ``num_batches_tracked`` counters that older torch did not save (a
    counter that only matters with momentum=None, filled with 0 as torch itself does)."""
    own = model.state_dict()
    theirs, ours = _head(state), _head(own)
    if theirs and ours and theirs != ours:
        state = {(ours + k[len(theirs):] if k.startswith(theirs + ".") else k): v for k, v in state.items()}
    state = dict(state)
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    return state


def _architecture_of(state: dict[str, torch.Tensor]) -> str | None:
    """The zoo model a state_dict's keys describe (None when not a ResNet of either family)."""
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    if blocks[3]:
        bottleneck = any(k.startswith("layer1.0.conv3.") for k in state)
        layout = {(2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34", (3, 4, 6, 3, True): "resnet50",
                  (3, 4, 23, 3, True): "resnet101", (3, 8, 36, 3, True): "resnet152"}
        return layout.get((*blocks, bottleneck))
    if blocks[0] and blocks[0] == blocks[1] == blocks[2]:
        name = f"resnet{6 * blocks[0] + 2}"
        return name if name in REGISTRY else None
    return None


def _mismatch_hint(state: dict[str, torch.Tensor], model: nn.Module, model_name: str | None) -> str:
    """The one hint that fits how a checkpoint differs from the model."""
    own = model.state_dict()
    found = _architecture_of(state)
    state = fit_names(state, model)
    if model_name and found and found != model_name:
        return f"the checkpoint is a {found} ({REGISTRY[found].description}): use the model {found}"
    if model_name and found is None:
        return "the checkpoint's layers are not those of any ResNet in `edgeres models`"
    head = _head(own)
    if head and f"{head}.weight" in state and state[f"{head}.weight"].shape != own[f"{head}.weight"].shape:
        theirs, ours = state[f"{head}.weight"].shape[0], own[f"{head}.weight"].shape[0]
        return (f"the checkpoint classifies {theirs} classes, the model {ours}: evaluate it on a dataset of "
                f"{theirs} classes, or pass --num-classes {theirs}; to fine-tune it on these classes, "
                f"`edgeres train --weights` starts from it with a new classifier")
    if "conv1.weight" in state and state["conv1.weight"].shape[1] != own["conv1.weight"].shape[1]:
        theirs, ours = state["conv1.weight"].shape[1], own["conv1.weight"].shape[1]
        return (f"the checkpoint takes {theirs}-channel images, the dataset has {ours}: use data with {theirs} "
                f"channel(s); `edgeres train --weights` adapts an RGB stem to grey images")
    return "the checkpoint's layer widths differ from the zoo model's (a pruned or widened variant?)"


def load_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                    model_name: str | None = None) -> None:
    """Load strictly; on mismatch say which keys and shapes differ, with the hint that fits."""
    original, state = state, fit_names(state, model)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape mismatch: " + "; ".join(wrong[:4]) + (" ..." if len(wrong) > 4 else ""))
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:4])}" + (" ..." if len(unexpected) > 4 else ""))
        raise EdgeresError(f"checkpoint {source} does not fit {model_name or 'the model'}: " + " | ".join(parts),
                           hint=_mismatch_hint(original, model, model_name))
    model.load_state_dict(state)


def imagenet_weights_path(spec: ModelSpec) -> Path:
    """torchvision's ImageNet checkpoint from the torch hub cache (never downloaded)."""
    if spec.imagenet_weights_file is None:
        raise EdgeresError(f"{spec.name} has no ImageNet weights", hint="pass --weights PATH to a checkpoint")
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    path = hub / "hub" / "checkpoints" / spec.imagenet_weights_file
    if not path.is_file():
        raise EdgeresError(
            f"ImageNet weights for {spec.name} not found at {path}",
            hint=f"edgeres never downloads: copy torchvision's {spec.imagenet_weights_file} there "
                 f"(or pass --weights PATH)")
    return path


def adapt_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit pretrained weights to a model with another stem width or head size, for fine-tuning: the
    stem's RGB weights are summed to one channel (as timm does); a classifier of another size is left to
    its fresh init. Returns the state and what was changed, to be said."""
    state = fit_names(state, model)
    own = model.state_dict()
    out, changes = dict(state), []
    for key, tensor in state.items():
        if key not in own or own[key].shape == tensor.shape:
            continue
        if tensor.ndim == 4 and own[key].shape[1] == 1 and tensor.shape[1] == 3 and own[key].shape[0] == tensor.shape[0]:
            out[key] = tensor.sum(1, keepdim=True)
            changes.append(f"{key}: RGB weights summed for grey input")
        elif key.startswith(("fc.", "linear.")):
            out[key] = own[key]
            changes.append(f"{key}: {tuple(tensor.shape)} -> new {tuple(own[key].shape)}, freshly initialized")
    return out, changes


def save_state_dict(model: nn.Module, path: Path) -> None:
    """Write ``model``'s weights; a failed write (a full disk) is one clear error."""
    try:
        torch.save(model.state_dict(), path)
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports a short write as RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write stopped short"
        raise EdgeresError(f"could not write {path.name}: {reason}",
                           hint=f"is the disk full? check free space in {path.parent.parent}") from None


def create(name: str, num_classes: int, in_channels: int, weights: str | None = None, *,
           trust_pickle: bool = False, adapt: bool = False) -> nn.Module:
    """Build a model and load ``weights``: ``None`` (random init), ``imagenet``, or a checkpoint path
    (pickled objects beyond tensors only with ``trust_pickle``). With ``adapt`` (fine-tuning; always for
    ``imagenet``) a classifier of another size is re-initialized and an RGB stem summed for grey input;
    without it the checkpoint must fit exactly."""
    model = build(name, num_classes, in_channels)
    if weights is None:
        return model
    path = imagenet_weights_path(get_spec(name)) if weights == "imagenet" else Path(weights)
    state = read_state_dict(path, trust_pickle if weights != "imagenet" else False)
    if adapt or weights == "imagenet":
        from edgeres.console import say

        state, changes = adapt_state_dict(state, model)
        for change in changes:
            say(f"weights adapted: {change}")
    load_state_dict(model, state, str(path), name)
    return model
