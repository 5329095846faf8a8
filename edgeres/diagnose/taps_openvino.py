"""Intermediate tensors of an OpenVINO IR: each point's tensor is added to the read model as an output
(``Model.add_outputs``) and the model is compiled for the CPU as bench runs it (f32 inference precision,
LATENCY). Points are found by the operators' friendly names, which keep the ONNX node names the IR was
converted from (``points.scoped_outputs``); an int8 IR's quantizer is a FakeQuantize named after the
DequantizeLinear it came from, in the same scope."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.diagnose.points import LOGITS, GraphNode, Point, scoped_outputs
from edgeres.errors import EdgeresError


def _port(op, index: int) -> str:
    return f"{op.get_friendly_name()}:{index}"


def taps(path: Path, points: list[Point], x: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """Each point's tensor (float32, NCHW) for images ``x``."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in ("Constant", "Parameter")]
    ports = {_port(op, i): op.output(i) for op in ops for i in range(op.get_output_size())}
    nodes = [GraphNode(op.get_friendly_name(),
                       tuple(_port(i.get_source_output().get_node(), i.get_source_output().get_index())
                             for i in op.inputs()),
                       tuple(_port(op, i) for i in range(op.get_output_size()))) for op in ops]
    results = {n for node in nodes if node.name in {r.get_friendly_name() for r in model.get_results()}
               for n in node.inputs}
    names = scoped_outputs([n for n in nodes if n.name not in {r.get_friendly_name() for r in model.get_results()}],
                           results, points)
    missing = [p.name for p in points if p.kind != "logits" and p.name not in names]
    if missing:
        raise EdgeresError(f"{path.name}: no OpenVINO operators named after module(s) {', '.join(missing)}",
                           hint="diagnose matches operators by the ONNX node names the IR was converted from; "
                                "this file was not exported by edgeres from that model")
    added = model.add_outputs([ports[names[p]] for p in names]) if names else []
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = {LOGITS: compiled.outputs[0]}
    outputs |= {point: compiled.outputs[len(model.outputs) - len(added) + i] for i, point in enumerate(names)}
    parts: dict[str, list[np.ndarray]] = {p: [] for p in outputs}
    for i in range(0, len(x), 64):
        result = request.infer({0: np.ascontiguousarray(x[i:i + 64], np.float32)})
        for point, port in outputs.items():
            parts[point].append(np.asarray(result[port], np.float32))
    return {point: np.concatenate(values) for point, values in parts.items()}
