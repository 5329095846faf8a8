"""Rewrites of an exported QDQ ONNX graph into the patterns runtimes' int8 kernels match.

torch writes a quantized model as float weights behind QuantizeLinear / DequantizeLinear pairs, with the
quantizers where NNCF put them. Three exact rewrites turn that into what onnxruntime, OpenVINO and QNN fuse
into integer kernels (onnxruntime's own ``quantize_static`` writes the same patterns):

- ``fold_weight_quantization``: QuantizeLinear(constant weight) becomes its int8 result, so the file stores
  int8 weights (a quarter of the size) behind a DequantizeLinear;
- ``requantize_reshapes``: a Flatten / Reshape / Squeeze of a dequantized tensor gets the same Q/DQ pair
  after it (values are unchanged: the reshape moves them, the pair re-applies the scale they already have),
  so the classifier's Gemm sees a quantized input;
- ``quantize_gemm_biases``: a Gemm between two dequantized inputs gets its float bias as int32 with scale
  ``s_input * s_weight`` (zero point 0), the form onnxruntime's QGemm fusion needs.

Without the last two, onnxruntime runs the classifier as a float Gemm and dequantizes its int8 weight on
every call: 0.46 ms of a 7.2 ms ResNet-50 run at 224x224 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numpy as np

RESHAPES = ("Flatten", "Reshape", "Squeeze")


class _Graph:
    """Lookups over an ONNX graph: producers, consumers, constant values (initializers, Constant nodes,
    through Identity chains)."""

    def __init__(self, model):
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producers = {out: node for node in self.graph.node for out in node.output}

    def consumers(self, name: str) -> list:
        return [node for node in self.graph.node if name in node.input]

    def constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        node = self.producers.get(name)
        while node is not None and node.op_type == "Identity":
            name = node.input[0]
            node = self.producers.get(name)
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def dequantize_of(self, name: str):
        node = self.producers.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def insert(self, index: int, *nodes) -> None:
        for offset, node in enumerate(nodes):
            self.graph.node.insert(index + offset, node)


def _attribute(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def fold_weight_quantization(model) -> int:
    """Replace QuantizeLinear(constant weight) by its int8 result (rounding half to even, as the runtime
    would); returns how many were folded."""
    from onnx import numpy_helper

    g = _Graph(model)
    folded, remove = 0, []
    for node in g.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        weight, s, z = (g.constant(n) for n in node.input[:3])
        if weight is None or s is None or z is None:
            continue  # an activation quantizer
        w, s = weight.astype(np.float32), s.astype(np.float32)
        zb = z.astype(np.int32)
        if s.ndim == 1 and w.ndim > 1:
            shape = [1] * w.ndim
            shape[_attribute(node, "axis", 1)] = -1
            s, zb = s.reshape(shape), zb.reshape(shape)
        info = np.iinfo(z.dtype)
        q = np.clip(np.rint(w / s) + zb, info.min, info.max).astype(z.dtype)
        g.graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        remove.append(node)
        folded += 1
    for node in remove:
        g.graph.node.remove(node)
    _drop_unused(model)
    return folded


def requantize_reshapes(model) -> int:
    """Give every reshape of a per-tensor dequantized tensor the same Q/DQ pair after it; returns how many."""
    from onnx import helper

    g = _Graph(model)
    added = 0
    for node in list(g.graph.node):
        dq = g.dequantize_of(node.input[0]) if node.op_type in RESHAPES else None
        if dq is None or len(dq.input) < 3 or np.ndim(g.constant(dq.input[1])) != 0:
            continue
        consumers = g.consumers(node.output[0])
        if not consumers or any(c.op_type == "QuantizeLinear" for c in consumers):
            continue
        out = node.output[0]
        quantized, dequantized = f"{out}/requant/q", f"{out}/requant/dq"
        for consumer in consumers:
            consumer.input[:] = [dequantized if name == out else name for name in consumer.input]
        g.insert(list(g.graph.node).index(node) + 1,
                        helper.make_node("QuantizeLinear", [out, *dq.input[1:3]], [quantized], name=f"{node.name}/requant/q"),
                        helper.make_node("DequantizeLinear", [quantized, *dq.input[1:3]], [dequantized],
                                         name=f"{node.name}/requant/dq"))
        added += 1
    return added


def quantize_gemm_biases(model) -> int:
    """Store the float bias of a Gemm whose two inputs are dequantized as int32 (scale s_a * s_b, zero point
    0) behind a DequantizeLinear; returns how many. A bias too large for int32 stays float."""
    from onnx import helper, numpy_helper

    g = _Graph(model)
    done = 0
    for node in list(g.graph.node):
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in g.inits:
            continue
        a, b = g.dequantize_of(node.input[0]), g.dequantize_of(node.input[1])
        if a is None or b is None or _attribute(node, "transA", 0):
            continue
        s_a, s_b = g.constant(a.input[1]), g.constant(b.input[1])
        bias = numpy_helper.to_array(g.inits[node.input[2]])
        if s_a is None or s_b is None or s_a.ndim != 0 or bias.ndim != 1:
            continue
        n_axis = 0 if _attribute(node, "transB", 0) else 1
        if s_b.ndim == 1 and _attribute(b, "axis", 1) != n_axis:
            continue  # per-channel along the reduced axis: no single scale per output
        scale = np.broadcast_to(s_a.astype(np.float64) * s_b.astype(np.float64), bias.shape).astype(np.float32)
        if np.any(scale <= 0):
            continue
        q = np.rint(bias.astype(np.float64) / scale)
        if np.abs(q).max(initial=0) >= 2**31 - 1:
            continue
        base = f"{node.input[2]}/int32"
        g.graph.initializer.extend([numpy_helper.from_array(q.astype(np.int32), base),
                                    numpy_helper.from_array(scale, f"{base}/scale"),
                                    numpy_helper.from_array(np.zeros(bias.shape, np.int32), f"{base}/zero_point")])
        dq = helper.make_node("DequantizeLinear", [base, f"{base}/scale", f"{base}/zero_point"], [f"{base}/dq"],
                              axis=0, name=f"{base}/dq")
        g.insert(list(g.graph.node).index(node), dq)
        node.input[2] = f"{base}/dq"
        done += 1
    _drop_unused(model)
    return done


def _drop_unused(model) -> None:
    """Remove Identity / Constant nodes and initializers nothing reads any more."""
    graph = model.graph

    def used() -> set[str]:
        return {name for node in graph.node for name in node.input} | {o.name for o in graph.output}

    names = used()
    while dead := [n for n in graph.node if n.op_type in ("Identity", "Constant") and not any(o in names for o in n.output)]:
        for node in dead:
            graph.node.remove(node)
        names = used()
    for init in list(graph.initializer):
        if init.name not in names:
            graph.initializer.remove(init)
