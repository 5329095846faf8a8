"""Where an onnxruntime session's nodes ran: on its execution provider (an NPU, a GPU) or on the CPU.

Two facts, both read without the ``onnx`` package (this folder is copied onto devices): the model's
nodes and input shapes, from the ``.onnx`` protobuf itself (``read_graph``), and the kernels one run
executed with the provider of each, from onnxruntime's own profiler (``partitioning``). A provider runs
the nodes it takes as fused subgraphs, one kernel each; every node it left runs as its own CPU kernel,
under its own name. So the CPU kernels name the fallback, and the model's nodes minus those ran on the
provider (or were folded away when the session loaded: constants, identities).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

# The operators whose placement decides an accelerator's speed for a ResNet.
COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool")
_MAX_LISTED = 50  # fallback nodes listed by name (all are counted)


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, Any]]:
    """(field number, value) of one protobuf message: ints for varints, memoryviews for bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"not an ONNX file (protobuf wire type {wire})")
        yield number, value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


def _first(data: memoryview | None, number: int) -> Any:
    """The first value of field ``number`` in a message (None when absent)."""
    return next((value for n, value in _fields(data) if n == number), None) if data is not None else None


def _dims(value_info: memoryview) -> tuple[str, list[int | str]]:
    """Name and shape (ints, or names of symbolic dimensions) of a ValueInfoProto."""
    name = _first(value_info, 1)
    shape = _first(_first(_first(value_info, 2), 1), 2)  # .type.tensor_type.shape
    dims: list[int | str] = []
    for number, dim in _fields(shape) if shape is not None else ():
        if number == 1:  # Dimension: dim_value(1) | dim_param(2)
            value, param = _first(dim, 1), _first(dim, 2)
            dims.append(value if value is not None else _text(param) if param is not None else "?")
    return _text(name) if name is not None else "", dims


def read_graph(path: Path | str) -> tuple[list[tuple[str, str]], list[list[int | str]]]:
    """The main graph's nodes as (name, op type) and its real inputs' shapes (initializers left out)."""
    data = memoryview(Path(path).read_bytes())
    graph = _first(data, 7)  # ModelProto.graph
    if graph is None:
        raise ValueError("not an ONNX model (no graph)")
    nodes, inputs, initializers = [], [], set()
    for number, value in _fields(graph):
        if number == 1:  # NodeProto: name(3), op_type(4)
            parts = {n: _text(v) for n, v in _fields(value) if n in (3, 4)}
            nodes.append((parts.get(3, ""), parts.get(4, "")))
        elif number == 5:  # TensorProto initializer: name(8)
            initializers.add(_text(_first(value, 8) or memoryview(b"")))
        elif number == 11:
            inputs.append(_dims(value))
    return nodes, [dims for name, dims in inputs if name not in initializers]


def partitioning(profile_file: Path | str, nodes: list[tuple[str, str]], provider: str) -> dict[str, Any]:
    """What ran where in the profiled run: kernels of ``provider`` (fused subgraphs) and of the CPU.

    ``ops`` counts, per operator, the model's nodes and those that ran on the CPU (a CPU kernel that is
    no model node, e.g. one onnxruntime fused or duplicated, is counted under its own operator);
    ``compute_on_provider`` is the share of the model's ``COMPUTE_OPS`` nodes that did not run on the CPU.
    """
    events = json.loads(Path(profile_file).read_text())
    kernels = [(e["name"].removesuffix("_kernel_time"), e["args"].get("op_name", "?"), e["args"].get("provider"))
               for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    op_of = dict(nodes)
    on_cpu = {name: op_of.get(name, op) for name, op, where in kernels if where == "CPUExecutionProvider"}
    subgraphs = {name for name, _, where in kernels if where == provider}
    model_ops, cpu_ops = Counter(op for _, op in nodes), Counter(on_cpu.values())
    compute = sum(model_ops[op] for op in COMPUTE_OPS)
    compute_cpu = sum(cpu_ops[op] for op in COMPUTE_OPS)
    return {
        "provider": provider, "subgraphs": len(subgraphs), "nodes": len(nodes), "on_cpu": len(on_cpu),
        "ops": {op: {"nodes": model_ops[op], "cpu": cpu_ops[op]} for op in sorted(model_ops.keys() | cpu_ops.keys())},
        "compute_on_provider": (compute - compute_cpu) / compute if compute else None,
        "cpu_nodes": [f"{op} {name}" for name, op in list(on_cpu.items())[:_MAX_LISTED]],
    }
