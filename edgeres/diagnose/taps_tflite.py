"""Intermediate tensors of a TFLite file, from an interpreter that keeps every tensor
(``experimental_preserve_all_tensors``) and runs TFLite's builtin kernels: a delegate such as XNNPACK
computes its whole partition internally and keeps none of it. The file's logits as XNNPACK computes them
are compared separately (``xnnpack_logits``).

The converter keeps no module names (its tensors are named after TensorFlow ops: ``tf.nn.relu_7/Relu``), so
points are matched by structure, which every ResNet has: a residual block ends in the one ADD whose two
inputs both depend on the image (a convolution's bias does not), so the k-th such ADD in the
interpreter's order is the k-th block (torch runs its blocks in module order too). Its two inputs are the ends
of two chains of operators from the tensor where they part (the latest tensor both depend on): the chain with
more convolutions is the main path, the other the shortcut. A convolution's point is what the next one on its
path reads (before any PAD: the ReLU is fused into the convolution, or runs between them), the last one's
is its path's end. The stem's output is where the first block's paths part; the logits are the file's output.
The tensors come from ``edgeres.runtimes.taps``, as a device's runner takes
them: an int8 tensor dequantized with its own scale and zero point, NHWC made NCHW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.diagnose.points import LOGITS, Point
from edgeres.errors import EdgeresError


CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
PADS = ("PAD", "PADV2")


def match_points(ops: list[dict], graph_inputs: set[int], points: list[Point]) -> dict[str, int]:
    """Point name -> tensor index, by the structure described in the module docstring."""
    producer = {int(t): i for i, op in enumerate(ops) for t in op["outputs"]}
    computed = set(graph_inputs)  # what depends on the image (an fp16 file's weights are DEQUANTIZE outputs)
    for op in ops:
        if any(int(t) in computed for t in op["inputs"]):
            computed.update(int(t) for t in op["outputs"])

    def sources(op: dict) -> list[int]:
        return [int(t) for t in op["inputs"] if int(t) in computed]

    adds = [op for op in ops if op["op_name"] == "ADD" and len(op["inputs"]) == 2 and len(sources(op)) == 2]
    blocks = [p for p in points if p.kind == "block"]
    if len(adds) != len(blocks):
        raise EdgeresError(f"the TFLite file has {len(adds)} residual additions where the model has {len(blocks)} "
                           "blocks: its tensors cannot be matched to the model's",
                           hint="diagnose reads TFLite files that edgeres exported from ResNets")

    def ancestors(tensor: int) -> set[int]:
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop()
            if t not in seen:
                seen.add(t)
                todo += sources(ops[producer[t]]) if t in producer else []
        return seen

    def branch(end: int, start: int) -> list[dict]:
        """The operators from tensor ``start`` (excluded) to ``end``, a chain of one computed input each."""
        chain = []
        while end != start:
            if end not in producer or len(sources(ops[producer[end]])) != 1:
                raise EdgeresError("a residual branch of the TFLite file is not a chain of operators: its tensors "
                                   "cannot be matched to the model's",
                                   hint="diagnose reads TFLite files that edgeres exported from ResNets")
            chain.insert(0, ops[producer[end]])
            end = sources(chain[0])[0]
        return chain

    found = {}
    for block, add in zip(blocks, adds):
        ends = sources(add)
        split = max(ancestors(ends[0]) & ancestors(ends[1]), key=lambda t: producer.get(t, -1))
        if block is blocks[0]:
            found.update({p.name: split for p in points if p.kind == "stem"})
        convs = [p for p in points if p.kind in ("conv", "shortcut") and p.block == block.name]
        paths = sorted(((end, branch(end, split)) for end in ends) if convs else (),
                       key=lambda path: -sum(op["op_name"] in CONVS for op in path[1]))
        for (end, path), kind in zip(paths, ("conv", "shortcut")):
            mine = [p for p in convs if p.kind == kind]
            there = [op for op in path if op["op_name"] in CONVS]
            if len(there) != len(mine):
                raise EdgeresError(f"block {block.name}'s {'main path' if kind == 'conv' else 'shortcut'} has "
                                   f"{len(there)} convolutions in the TFLite file and {len(mine)} in the model",
                                   hint="diagnose reads TFLite files that edgeres exported from ResNets")
            for p, after in zip(mine, there[1:]):  # what the next convolution reads, before its padding
                tensor = sources(after)[0]
                while tensor in producer and ops[producer[tensor]]["op_name"] in PADS:
                    tensor = sources(ops[producer[tensor]])[0]
                found[p.name] = tensor
            if mine:
                found[mine[-1].name] = end
        found[block.name] = int(add["outputs"][0])
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
