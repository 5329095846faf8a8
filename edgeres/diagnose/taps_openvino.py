"""Intermediate tensors of an OpenVINO IR: each point's tensor is added to the read model as an output
(``Model.add_outputs``) and the model is compiled for the CPU as bench runs it (f32 inference precision,
LATENCY). Points are found by the operators' friendly names, which keep the ONNX node names the IR was
converted from (``points.point_tensors``); an int8 IR's quantizer is a FakeQuantize named after the
DequantizeLinear it came from, in the same scope. In an int8 IR each point is read from a compiled model of
its own (``runtimes.taps.openvino_tensors``: a FakeQuantize made an output stops fusing with its neighbours,
which would change what the rest of the network computes). For a device, the tapped model is saved as an IR of its
own (weights as they were), which the runner there computes (``edgeres.runtimes.taps``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.diagnose.points import LOGITS, GraphNode, Point, point_tensors, require_found


def _port(op, index: int) -> str:
    return f"{op.get_friendly_name()}:{index}"


def locate(model, points: list[Point]) -> dict[str, object]:
    """Point name -> the output port of its tensor in a read OpenVINO model (the points found in it)."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in ("Constant", "Parameter")]
    ports = {_port(op, i): op.output(i) for op in ops for i in range(op.get_output_size())}
    nodes = [GraphNode(op.get_friendly_name(),
                       tuple(_port(i.get_source_output().get_node(), i.get_source_output().get_index())
                             for i in op.inputs()),
                       tuple(_port(op, i) for i in range(op.get_output_size())), op.get_type_name()) for op in ops]
    result_names = {r.get_friendly_name() for r in model.get_results()}
    results = {n for node in nodes if node.name in result_names for n in node.inputs}
    found = point_tensors([n for n in nodes if n.name not in result_names], results, points)
    return {point: ports[port] for point, port in found.items()}


def _tapped(path: Path, points: list[Point]):
    """The read model with every point's tensor as an extra output, and point -> output index."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    found = locate(model, points)
    require_found(found, points, file=path.name, nodes="OpenVINO operators")
    first = len(model.outputs)
    model.add_outputs(list(found.values()))
    return model, {LOGITS: 0, **{point: first + i for i, point in enumerate(found)}}


def taps(path: Path, points: list[Point], x: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """Each point's tensor (float32, NCHW) for images ``x``; an int8 IR's point by point, with a progress bar."""
    from edgeres.console import progress
    from edgeres.runtimes.taps import openvino_tensors, reads_alone

    model, outputs = _tapped(path, points)
    if not reads_alone(model):
        return openvino_tensors(model, outputs, x, threads)
    with progress() as bar:
        task = bar.add_task(f"reading {path.name} point by point", total=len(outputs), status="")
        return openvino_tensors(model, outputs, x, threads,
                                done=lambda point: bar.update(task, advance=1, status=point))


def device_job(path: Path, points: list[Point], directory: Path) -> tuple[Path, dict[str, int]]:
    """A copy of the IR with every point's tensor as an output, saved to ``directory`` for a device's
    runner (weights kept at their precision), and point -> output index."""
    import openvino as ov

    model, outputs = _tapped(path, points)
    tapped = directory / f"{path.stem}.tapped.xml"
    ov.save_model(model, str(tapped), compress_to_fp16=False)
    return tapped, outputs
