"""NNCF as the int8 engine: post-training quantization, and saving / restoring quantized models.

Why NNCF: it quantizes the torch model in place with fake-quantize modules that stay trainable (so QAT
starts from the PTQ model), places quantizers the way OpenVINO's and onnxruntime's int8 kernels expect
(per-channel symmetric int8 weights, per-tensor int8 activations - unsigned after ReLU - including both
inputs of residual adds), does bias correction, and exports to standard ONNX QuantizeLinear /
DequantizeLinear pairs whose scales are the ones it calibrated. A quantized model is saved as its
state_dict plus NNCF's quantizer configuration (JSON), never as a pickle.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeres.errors import EdgeresError, first_line

# Range estimators offered to users -> NNCF's presets (activations; weights always use min/max).
ESTIMATORS = {
    "default": None,  # NNCF's own choice for CNNs
    "minmax": "MINMAX",
    "mean-minmax": "MEAN_MINMAX",
    "percentile": "MEAN_QUANTILE",  # 0.01 % / 99.99 % quantiles averaged over batches
    "mse": "HISTOGRAM",  # range minimising the quantization MSE of a histogram
}
# NNCF's fast bias correction, or none. NNCF 3.4's torch backend has no full bias correction. On BN-folded
# ResNets calibrated on 300 images, fast correction cost accuracy (ResNet-18: 0.18 pp drop with it, 0.03 pp
# without; ResNet-20: 0.30 pp vs a 0.10 pp gain; benchmarks/RESULTS.md), hence "none" by default.
BIAS_CORRECTION = ("none", "fast")
CALIB_BATCH = 32


# NNCF compiles its CPU kernels on first use, which takes minutes on two busy cores; past its default
# limit of 60 s the build becomes an error. Wait longer unless the user set a limit.
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")


def _quiet_nncf() -> None:
    logging.getLogger("nncf").setLevel(logging.WARNING)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d / Linear modules, the layers int8 applies to, in execution order."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def node_name(layer: str, model: nn.Module) -> str:
    """NNCF's graph node name of a module's call, e.g. ``layer1.0.conv1`` -> ``layer1/0/conv1/conv2d/0``."""
    op = "conv2d" if isinstance(model.get_submodule(layer), nn.Conv2d) else "linear"
    return f"{layer.replace('.', '/')}/{op}/0"


def ptq(model: nn.Module, calibration: torch.Tensor, estimator: str = "default", bias_correction: str = "none",
        float_layers: list[str] | tuple[str, ...] = ()) -> nn.Module:
    """Post-training int8 quantization of a BN-folded float model (a copy is returned).

    ``float_layers`` (module names) stay in float: no quantizer on their weights or inputs."""
    import copy

    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    _quiet_nncf()
    if estimator not in ESTIMATORS:
        raise EdgeresError(f"unknown range estimator {estimator!r}", hint=f"choose one of: {', '.join(ESTIMATORS)}")
    if bias_correction not in BIAS_CORRECTION:
        raise EdgeresError(f"unknown bias correction {bias_correction!r}",
                           hint=f"choose one of: {', '.join(BIAS_CORRECTION)}")
    advanced = AdvancedQuantizationParameters(disable_bias_correction=bias_correction == "none")
    if ESTIMATORS[estimator]:
        advanced.activations_range_estimator_params = getattr(RangeEstimatorParametersSet, ESTIMATORS[estimator])
    batches = [calibration[i:i + CALIB_BATCH] for i in range(0, len(calibration), CALIB_BATCH)]
    ignored = nncf.IgnoredScope(names=[node_name(layer, model) for layer in float_layers]) if float_layers else None
    return nncf.quantize(
        copy.deepcopy(model).eval(), nncf.Dataset(batches), preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(batches), fast_bias_correction=True,
        ignored_scope=ignored, advanced_parameters=advanced,
    )


def native(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy with NNCF's quantizers replaced by torch's own fake-quantize ops, so that
    ``torch.onnx.export`` writes standard QuantizeLinear / DequantizeLinear nodes."""
    import nncf

    return nncf.strip(model, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example).eval()


# -- saving and restoring ------------------------------------------------------------------------
def _to_json(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return {"__enum__": f"{type(obj).__module__}:{type(obj).__qualname__}", "value": obj.value}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json(v) for v in obj]}
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    return obj


_ALLOWED_ENUMS = ("nncf.",)


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__enum__" in obj:
            import importlib

            module, _, qualname = obj["__enum__"].partition(":")
            if not module.startswith(_ALLOWED_ENUMS):
                raise EdgeresError(f"quantizer config names a foreign type {obj['__enum__']!r}; refusing it")
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise EdgeresError(f"quantizer config type {obj['__enum__']!r} is not an enum; refusing it")
            return cls(obj["value"])
        if "__tuple__" in obj:
            return tuple(_from_json(v) for v in obj["__tuple__"])
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def save(model: nn.Module, directory: Path) -> None:
    """Write ``model.pt`` (tensors only) and ``quantizers.json`` (NNCF's quantizer placement)."""
    import nncf.torch

    from edgeres.models import save_state_dict

    config = nncf.torch.get_config(model)
    (directory / "quantizers.json").write_text(json.dumps(_to_json(config), indent=1))
    save_state_dict(model, directory / "model.pt")


def restore(float_model: nn.Module, directory: Path) -> nn.Module:
    """Rebuild a saved quantized model on a freshly built, BN-folded float model of the same architecture."""
    import nncf.torch

    from edgeres.models import read_state_dict

    _quiet_nncf()
    try:
        config = _from_json(json.loads((directory / "quantizers.json").read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeresError(f"cannot read quantizer config in {directory}: {exc}") from None
    model = nncf.torch.load_from_config(float_model.eval(), config)
    state = read_state_dict(directory / "model.pt")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise EdgeresError(f"quantized weights in {directory} do not fit: {first_line(exc)}") from None
    return model.eval()
