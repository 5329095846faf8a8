"""The QDQ graph rewrites on small hand-built graphs: exact (outputs unchanged) and only where they apply."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.export import qdq


def classifier(weight_axis: int = 0, trans_b: int = 1):
    """x (1x8x1x1, float) -> Q/DQ (per tensor, uint8) -> Flatten -> Gemm(int8 weight -> DQ, float bias)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 8)).astype(np.int8)
    if not trans_b:
        w = np.ascontiguousarray(w.T)
    w_scale = rng.uniform(0.01, 0.02, w.shape[weight_axis]).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(w.shape[weight_axis], np.int8), "w_zero"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("Flatten", ["xd"], ["flat"]),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], axis=weight_axis),
        helper.make_node("Gemm", ["flat", "wd", "bias"], ["logits"], transB=trans_b),
    ]
    graph = helper.make_graph(nodes, "classifier",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1, 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def reference(model, x: np.ndarray) -> np.ndarray:
    """The classifier's exact output in float64: dequantized input times dequantized weight plus bias."""
    from onnx import numpy_helper

    v = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    xq = np.clip(np.rint(x.reshape(1, -1) / v["x_scale"]), 0, 255) * v["x_scale"]
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    w = v["w"] * (v["w_scale"][:, None] if trans_b else v["w_scale"][None, :])
    return xq @ (w.T if trans_b else w) + v["bias"]


def run(model, x: np.ndarray, tmp_path=None) -> tuple[np.ndarray, list[str]]:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    if tmp_path is not None:
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": x})[0]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node] if tmp_path else []
    return out, ops


@pytest.mark.parametrize("trans_b", [1, 0])
def test_classifier_becomes_a_qgemm_with_the_same_outputs(tmp_path, trans_b):
    import onnx

    x = np.random.default_rng(1).uniform(0, 10, (1, 8, 1, 1)).astype(np.float32)
    model = classifier(weight_axis=0 if trans_b else 1, trans_b=trans_b)
    expected = reference(model, x)
    _, before_ops = run(model, x, tmp_path)
    assert "QGemm" not in before_ops  # onnxruntime keeps the classifier in float without the rewrites
    assert qdq.requantize_reshapes(model) == 1 and qdq.split_gemm_biases(model) == 1
    onnx.checker.check_model(model)
    after, after_ops = run(model, x, tmp_path)
    assert "QGemm" in after_ops and "Gemm" not in after_ops and "MatMulNBits" not in after_ops
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5)


def test_rewrites_apply_only_where_they_are_exact():
    float_input = classifier()
    float_input.graph.node.remove(float_input.graph.node[1])  # no DequantizeLinear before the Flatten
    float_input.graph.node[0].output[0] = "xd"
    float_input.graph.node.remove(float_input.graph.node[0])
    float_input.graph.node[0].input[0] = "x"
    assert qdq.requantize_reshapes(float_input) == 0 and qdq.split_gemm_biases(float_input) == 0
    again = classifier()
    assert qdq.requantize_reshapes(again) == 1
    assert qdq.requantize_reshapes(again) == 0  # already followed by a QuantizeLinear
    assert qdq.split_gemm_biases(again) == 1 and qdq.split_gemm_biases(again) == 0  # no bias left in the Gemm


def test_weight_quantizers_fold_into_int8_initializers():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
    scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s"),
             numpy_helper.from_array(np.zeros(4, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"], axis=0),
             helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], axis=0),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert qdq.fold_weight_quantization(model) == 1
    onnx.checker.check_model(model)
    [stored] = [i for i in model.graph.initializer if i.name == "wq"]
    assert stored.data_type == TensorProto.INT8 and "w" not in {i.name for i in model.graph.initializer}
    np.testing.assert_array_equal(numpy_helper.to_array(stored), np.rint(w / scale[:, None]).astype(np.int8))
