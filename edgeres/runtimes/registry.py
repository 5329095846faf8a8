"""The one table of runtimes: a new runtime is one session module in this package plus one entry here.

Standard library only: this package is copied to ssh devices with numpy alone, and the runner there reads
this table too. A session module has ``open_session(path, threads=None, **settings) -> Session`` and
``check(**settings) -> (bool, reason)`` (is it usable here, with that provider / device / delegate?);
both import their runtime package lazily. The edgeres host builds the device profiles' ``runtimes:``
settings (``edgeres.devices``), the report's colours and the arm64 root's wheels from the entries here.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

Scalar = Union[str, int, float, bool]  # the values of a mapping setting (provider_options)


@dataclass(frozen=True)
class Runtime:
    name: str
    module: str  # the session module in this package
    suffixes: tuple[str, ...]  # of the model files it runs
    imports: tuple[str, ...]  # modules that provide it: any one of them installed is enough
    distributions: tuple[str, ...]  # pip distributions it may come as (versions recorded); the first is the plain one
    extra: Optional[str]  # the edgeres extra that installs it (None: the core)
    device_option: str  # the setting that says what it runs on (provider, device, delegate)
    default_device: str  # what it runs on when that setting is unset
    color: str  # of its points in report plots (matplotlib)
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # profile setting -> (type, default)
    emulation: Optional[tuple[str, tuple[str, ...]]] = None  # arm64 root: (import that proves it works, wheels)


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("torch", "torch_rt", (".pt",), ("torch",), ("torch",), None, "device", "cpu", "black",
            settings={"device": (Literal["cpu", "cuda"], "cpu"),
                      "precisions": (list[Literal["fp32", "fp16"]], [])}),  # rows of their own (fp16 on a GPU)
    Runtime("onnxruntime", "onnxruntime_rt", (".onnx",), ("onnxruntime",),
            ("onnxruntime", "onnxruntime-gpu", "onnxruntime-qnn"), None, "provider", "CPUExecutionProvider",
            "tab:blue", settings={"provider": (str, "CPUExecutionProvider"),
                                  "provider_options": (dict[str, Scalar], {})},
            emulation=("onnxruntime", ("onnxruntime", "flatbuffers"))),
    Runtime("openvino", "openvino_rt", (".xml",), ("openvino",), ("openvino",), "openvino", "device", "CPU",
            "tab:purple", settings={"device": (str, "CPU")}),
    Runtime("tflite", "tflite_rt", (".tflite",), ("ai_edge_litert", "tflite_runtime", "tensorflow"),
            ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu"), "tflite", "delegate", "XNNPACK",
            "tab:orange", settings={"delegate": (Optional[str], None)},  # a delegate's shared library
            emulation=("ai_edge_litert.interpreter", ("ai-edge-litert", "flatbuffers"))),
)}


def get(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise KeyError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
    return RUNTIMES[name]


def for_suffix(suffix: str) -> Runtime | None:
    """The runtime that runs files ending in ``suffix`` (``.onnx``)."""
    return next((r for r in RUNTIMES.values() if suffix in r.suffixes), None)


def device_label(name: str, options: dict[str, Any]) -> str:
    """What ``name`` runs on with these settings: the execution provider, OpenVINO device or delegate."""
    runtime = get(name)
    return str(options.get(runtime.device_option) or runtime.default_device)


def installed(name: str) -> bool:
    return any(importlib.util.find_spec(module) is not None for module in get(name).imports)


def install_command(name: str) -> str:
    """How to install ``name``: its edgeres extra beside edgeres, the plain package on a device."""
    runtime = get(name)
    if runtime.extra and __package__.startswith("edgeres."):
        return f"pip install 'edgeres[{runtime.extra}]'"
    return f"pip install {runtime.distributions[0]}"


def not_installed(name: str) -> str:
    """The one message for a runtime that is not installed, with its install command."""
    return f"{name} is not installed ({install_command(name)})"


def session_module(name: str):
    return importlib.import_module(f"{__package__}.{get(name).module}")


def check(name: str, settings: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``name`` with ``settings`` (its provider / device / delegate) can run here, and why (not)."""
    if not installed(name):
        return False, not_installed(name)
    return session_module(name).check(**settings)
