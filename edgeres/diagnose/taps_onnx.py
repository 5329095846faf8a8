"""Intermediate tensors of an ONNX file: each point's tensor is made a graph output of an in-memory copy
of the model, which onnxruntime (CPU, all graph optimizations, as bench runs it) then returns with the
logits. Points are found by name (``points.point_tensors``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.diagnose.points import LOGITS, GraphNode, Point, point_tensors, require_found


def locate(model, points: list[Point]) -> dict[str, str]:
    """Point name -> its tensor's name in an ONNX model (the points found in it)."""
    nodes = [GraphNode(n.name, tuple(n.input), tuple(n.output), n.op_type) for n in model.graph.node]
    return point_tensors(nodes, {o.name for o in model.graph.output}, points)


def _tapped(path: Path, points: list[Point]):
    """The model with every point's tensor as an extra output, and point -> output name."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    outputs = {o.name for o in graph.output}
    names = locate(model, points)
    require_found(names, points, file=path.name, nodes="ONNX nodes")
    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for point, tensor in names.items():
        if tensor not in outputs:
            graph.output.append(onnx.helper.make_tensor_value_info(tensor, types.get(tensor, onnx.TensorProto.FLOAT),
                                                                   None))
            outputs.add(tensor)
    names[LOGITS] = graph.output[0].name
    return model, names


def taps(path: Path, points: list[Point], x: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """Each point's tensor (float32, NCHW) for images ``x``, all read from one session; the logits from the
    file as it is. A tensor made an output keeps onnxruntime from fusing its Q/DQ pair into the operators
    around it: in a ResNet-18 int8 file the points moved by 0.6 dB at most, the logits to 44 dB from the
    file's own (``benchmarks/point_taps.py``)."""
    from edgeres.runtimes.taps import onnx_tensors

    model, names = _tapped(path, points)
    found = onnx_tensors(model.SerializeToString(), names, x, threads)
    found.update(onnx_tensors(Path(path), {LOGITS: names[LOGITS]}, x, threads))
    return found


def device_job(path: Path, points: list[Point], directory: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the file with every point's tensor as a graph output, written to ``directory`` for a
    device's runner, and point -> output name."""
    model, names = _tapped(path, points)
    tapped = directory / f"{path.stem}.tapped.onnx"
    tapped.write_bytes(model.SerializeToString())
    return tapped, names
