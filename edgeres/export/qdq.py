"""Rewrites of an exported QDQ ONNX graph into the patterns runtimes' int8 kernels match.

torch writes a quantized model as float weights behind QuantizeLinear / DequantizeLinear pairs, with the
quantizers where NNCF put them. Three exact rewrites turn that into the patterns onnxruntime fuses into
integer kernels (its own ``quantize_static`` writes the same ones); OpenVINO reads either form alike:

- ``fold_weight_quantization``: QuantizeLinear(constant weight) becomes its int8 result, so the file stores
  int8 weights (a quarter of the size) behind a DequantizeLinear;
- ``requantize_reshapes``: a Flatten / Reshape / Squeeze of a dequantized tensor gets the same Q/DQ pair
  after it (values are unchanged: the reshape moves them, the pair re-applies the scale they already have),
  so the classifier's Gemm sees a quantized input;
- ``split_gemm_biases``: a Gemm between two dequantized inputs hands its float bias to an Add after it
  (the same sum), since onnxruntime's QGemm fusion takes only quantized inputs (an int32 bias would do
  as well, but rounds the bias).

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

    def insert_after(self, anchor, *nodes) -> None:
        index = list(self.graph.node).index(anchor) + 1
        for offset, node in enumerate(nodes):
            self.graph.node.insert(index + offset, node)


def _attribute(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


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
        scale = g.constant(dq.input[1]) if dq is not None and len(dq.input) == 3 else None
        if scale is None or scale.ndim != 0:  # only a per-tensor pair (with its zero point) carries over
            continue
        out = node.output[0]
        consumers = g.consumers(out)
        if not consumers or any(c.op_type == "QuantizeLinear" for c in consumers):
            continue
        quantized, dequantized = f"{out}/requant/q", f"{out}/requant/dq"
        for consumer in consumers:
            consumer.input[:] = [dequantized if name == out else name for name in consumer.input]
        scale_and_zero = dq.input[1:3]
        g.insert_after(node,
                       helper.make_node("QuantizeLinear", [out, *scale_and_zero], [quantized], name=quantized),
                       helper.make_node("DequantizeLinear", [quantized, *scale_and_zero], [dequantized],
                                        name=dequantized))
        added += 1
    return added


def split_gemm_biases(model) -> int:
    """Move the float bias of a Gemm whose two inputs are dequantized into an Add after it; returns how
    many. The sum is the same, and the Gemm then has only quantized inputs. Qualcomm's QNN EP runs such a
    Gemm (quantized inputs, float output) on the CPU either way: on the ResNets' classifier, a few
    thousand of the model's MACs (tests/test_emulated.py)."""
    from onnx import helper

    g = _Graph(model)
    done = 0
    for node in list(g.graph.node):
        if node.op_type != "Gemm" or len(node.input) < 3 or not node.input[2]:
            continue
        if g.dequantize_of(node.input[0]) is None or g.dequantize_of(node.input[1]) is None:
            continue
        if _attribute(node, "beta", 1.0) != 1.0:
            continue
        bias, out = node.input[2], node.output[0]
        product = f"{out}/without_bias"
        del node.input[2]
        node.output[0] = product
        g.insert_after(node, helper.make_node("Add", [product, bias], [out], name=f"{node.name}/bias"))
        done += 1
    return done


def _drop_unused(model) -> None:
    """Remove Identity / Constant nodes and initializers nothing reads any more."""
    graph = model.graph

    def used() -> set[str]:
        return {name for node in graph.node for name in node.input} | {o.name for o in graph.output}

    def dead() -> list:
        names = used()
        return [n for n in graph.node
                if n.op_type in ("Identity", "Constant") and not any(o in names for o in n.output)]

    while unread := dead():
        for node in unread:
            graph.node.remove(node)
    names = used()
    for init in list(graph.initializer):
        if init.name not in names:
            graph.initializer.remove(init)
