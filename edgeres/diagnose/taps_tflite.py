"""Intermediate tensors of a TFLite file, from an interpreter that keeps every tensor
(``experimental_preserve_all_tensors``) and runs TFLite's builtin kernels: a delegate such as XNNPACK
computes its whole partition internally and keeps none of it. The file's logits as XNNPACK computes them
are compared separately (``xnnpack_logits``).

The converter keeps no module names (its tensors are named after TensorFlow ops: ``tf.nn.relu_7/Relu``), so
points are matched by structure, which every ResNet has: a residual block ends in the one ADD whose two
inputs are both computed tensors (a convolution's bias is a constant), so the k-th such ADD in the
interpreter's order is the k-th block (torch runs its blocks in module order too); the stem's output is the
tensor where the first block's two branches part (the latest tensor both inputs of its ADD depend on); the
logits are the file's output. The tensors come from ``edgeres.runtimes.taps``, as a device's runner takes
them: an int8 tensor dequantized with its own scale and zero point, NHWC made NCHW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.diagnose.points import LOGITS, Point
from edgeres.errors import EdgeresError


def match_points(ops: list[dict], graph_inputs: set[int], points: list[Point]) -> dict[str, int]:
    """Point name -> tensor index, by the structure described in the module docstring."""
    producer = {int(t): i for i, op in enumerate(ops) for t in op["outputs"]}
    computed = lambda t: int(t) in producer or int(t) in graph_inputs  # noqa: E731
    adds = [op for op in ops if op["op_name"] == "ADD" and len(op["inputs"]) == 2
            and all(computed(t) for t in op["inputs"])]
    blocks = [p for p in points if p.kind == "block"]
    if len(adds) != len(blocks):
        raise EdgeresError(f"the TFLite file has {len(adds)} residual additions where the model has {len(blocks)} "
                           "blocks: its tensors cannot be matched to the model's",
                           hint="diagnose reads TFLite files that edgeres exported from ResNets")
    found = {p.name: int(op["outputs"][0]) for p, op in zip(blocks, adds)}

    def ancestors(tensor: int) -> set[int]:
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in producer:
                todo += [int(i) for i in ops[producer[t]]["inputs"] if computed(i)]
        return seen

    stem = [p for p in points if p.kind == "stem"]
    if stem and adds:
        first = adds[0]["inputs"]
        shared = ancestors(int(first[0])) & ancestors(int(first[1]))
        found[stem[0].name] = max(shared, key=lambda t: producer.get(t, -1))
    return found


def tensor_indices(path: Path, points: list[Point], threads: int | None = None) -> dict[str, int]:
    """Point name -> the file's tensor index (the logits: its output), by structure."""
    from edgeres.runtimes.taps import tflite_interpreter

    interpreter = tflite_interpreter(path, threads)
    try:
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the interpreter's only view of its graph
    except AttributeError:
        raise EdgeresError("this TFLite interpreter cannot list its operators (no _get_ops_details)",
                           hint="pip install ai-edge-litert") from None
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return {**match_points(ops, {int(inp["index"])}, points), LOGITS: int(out["index"])}


def taps(path: Path, points: list[Point], x: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """Each point's tensor (float32, NCHW) for images ``x``, image by image (the file's batch is 1)."""
    from edgeres.runtimes.taps import tflite_tensors

    found = tflite_tensors(path, tensor_indices(path, points, threads), x, threads)
    found[LOGITS] = found[LOGITS].reshape(len(x), -1)  # the io=int8 file's logits may keep a 1x1 map
    return found


def device_job(path: Path, points: list[Point], directory: Path) -> tuple[Path, dict[str, int]]:
    """The file a device's runner takes the points' tensors from (this one) and point -> tensor index."""
    return path, tensor_indices(path, points)


def xnnpack_logits(path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The file's logits as the runtime bench uses computes them (XNNPACK)."""
    from edgeres.runtimes.tflite_rt import TFLiteSession

    return TFLiteSession(path, threads).run_batched(x)
