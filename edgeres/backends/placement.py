"""Which unit of a device runs a file, where the file itself decides it: the Edge TPU.

The Edge TPU runs only what ``edgetpu_compiler`` turned into its custom operator (``edgetpu-custom-op``).
With the delegate loaded, every other operator, and every operator of a file that was never compiled,
runs on the board's CPU. ``tflite_ops`` reads a ``.tflite`` file's operators with the FlatBuffer schema
that the TFLite interpreter package ships, so bench labels such a row CPU (and prices its estimate on
the CPU) whether or not the board is there.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

EDGETPU_OP = "edgetpu-custom-op"


def tflite_ops(path: Path | str) -> list[str] | None:
    """The operators of every subgraph of a ``.tflite`` file, in order: builtin ones by name (``CONV_2D``),
    custom ones by their custom code. None when no TFLite schema is installed here or the file is unreadable."""
    from edgeres.runtimes.tflite_rt import flatbuffer_schema

    schema = flatbuffer_schema()
    if schema is None:
        return None
    try:
        model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
        names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        codes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            custom = code.CustomCode()
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # the schema keeps both fields
            codes.append(custom.decode("utf-8", "replace") if custom else names.get(builtin, f"builtin {builtin}"))
        graphs = [model.Subgraphs(i) for i in range(model.SubgraphsLength())]
        return [codes[graph.Operators(j).OpcodeIndex()] for graph in graphs for j in range(graph.OperatorsLength())]
    except Exception:  # noqa: BLE001 - a truncated or foreign file: the runtime itself will say what is wrong
        return None


def compiled_for(path: Path | str, runtime: str) -> frozenset[str]:
    """The accelerator compilers a file has been through (``{"edgetpu"}`` or none)."""
    if runtime == "tflite" and EDGETPU_OP in (tflite_ops(path) or ()):
        return frozenset({"edgetpu"})
    return frozenset()


def edgetpu_offload(path: Path | str) -> dict[str, Any] | None:
    """What the Edge TPU takes of a ``.tflite`` file: its compiled subgraphs and the operators left to the
    CPU (all of them when the file was not compiled). None when the file cannot be read here."""
    ops = tflite_ops(path)
    if ops is None:
        return None
    on_cpu = Counter(op for op in ops if op != EDGETPU_OP)
    return {"unit": "Edge TPU", "source": "the .tflite file's operators", "subgraphs": ops.count(EDGETPU_OP),
            "ops": len(ops), "on_cpu": sum(on_cpu.values()), "cpu_ops": dict(sorted(on_cpu.items()))}
