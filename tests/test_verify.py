"""The verification verdict: agreement, or, for int8, logits close as a whole with every flip a near-tie;
a real exported file with one layer's scale corrupted fails."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.export.verify import INT8_MIN_SQNR_DB, compare, failure, passes, sqnr_db


def _logits(n: int = 200, classes: int = 10, margin: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference logits whose winner leads the runner-up by ``margin``, and their labels."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 1, (n, classes)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    ref[np.arange(n), labels] = ref.max(1) + margin
    return ref, labels


def _flip(values: np.ndarray, rows: np.ndarray, gap: float) -> None:
    """Make the runner-up of ``rows`` win by ``gap``."""
    for i in rows:
        second = np.argsort(values[i])[-2]
        values[i, second] = values[i].max() + gap


def test_sqnr_of_known_noise():
    ref = np.ones((4, 10), np.float32)
    assert sqnr_db(ref, ref) == float("inf")
    assert sqnr_db(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-4)


def test_int8_near_tie_flips_pass_below_the_agreement_threshold():
    ref, labels = _logits()
    ties = np.arange(10)  # 5 % of the images are near-ties that rounding flips
    ref[ties] = np.sort(ref[ties], 1)  # the winner is the last class ...
    ref[ties, -1] = ref[ties, -2] + 0.02  # ... by a hair
    out = ref + np.random.default_rng(1).normal(0, 0.01, ref.shape).astype(np.float32)  # rounding noise
    out[ties, -2] = ref[ties, -1] + 0.01  # which flips the near-ties
    result = compare(out, ref, labels)
    assert result["agreement"] == 95.0 and result["flipped"] == result["flipped_near_ties"] == 10
    assert result["sqnr_db"] > INT8_MIN_SQNR_DB
    assert passes(result, "int8")
    assert not passes(result, "fp16")  # float files keep the plain agreement threshold


def test_a_flip_of_a_decisive_image_fails():
    ref, labels = _logits(n=2000, margin=1.0)
    out = ref + np.random.default_rng(1).normal(0, 0.01, ref.shape).astype(np.float32)
    _flip(out, np.arange(70), gap=0.05)  # the reference led by a whole logit: not a near-tie
    result = compare(out, ref, labels)
    assert result["agreement"] == 96.5 and result["sqnr_db"] > INT8_MIN_SQNR_DB and result["flipped_near_ties"] == 0
    assert not passes(result, "int8")


def test_large_errors_fail_even_where_every_flip_looks_like_a_tie():
    ref, labels = _logits(margin=0.1)
    out = ref * 1.5 + np.random.default_rng(1).normal(0, 1, ref.shape).astype(np.float32)
    result = compare(out, ref, labels)
    assert result["agreement"] < 97 and result["sqnr_db"] < INT8_MIN_SQNR_DB
    assert not passes(result, "int8")


def test_an_int8_file_far_from_its_reference_fails_even_where_every_argmax_agrees():
    ref, labels = _logits(margin=10.0)
    result = compare(ref * 0.5, ref, labels)  # one layer's scale off: every argmax survives, the logits do not
    assert result["agreement"] == 100 and result["sqnr_db"] < INT8_MIN_SQNR_DB
    assert not passes(result, "int8")
    assert passes(result, "fp16")  # float files are judged by agreement alone


def _scale_weights_of_one_layer(model, factor: float) -> str:
    """Multiply the scale of one int8 weight's DequantizeLinear (a middle conv) by ``factor``."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    node = weights[len(weights) // 2]
    scale = inits[node.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * factor, scale.name))
    return node.name


def test_a_corrupted_int8_file_fails_and_its_clean_twin_passes(trained_workspace, tmp_path):
    import shutil

    import onnx

    from edgeres.export.step import ExportRequest, run_export
    from edgeres.export.verify import verify
    from edgeres.quantize.step import QuantizeRequest, run_quantize
    from edgeres.workspace import Workspace

    shutil.copytree(trained_workspace, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    int8 = run_quantize(QuantizeRequest(model="resnet20", eval_limit=200, val_limit=200, calib_samples=128), ws)
    [clean] = run_export(ExportRequest(targets=["onnx"], precisions=["int8"], model=int8.id, verify_limit=300), ws)
    v = clean.manifest["metrics"]["verify"]
    assert v["passed"] and v["sqnr_db"] >= INT8_MIN_SQNR_DB, v

    from edgeres.export.step import Sources

    src = Sources(ws, int8, ExportRequest(targets=["onnx"], verify_limit=300), tmp_path)
    x, y = src.verify_data
    model = onnx.load(clean.path / clean.manifest["file"])
    _scale_weights_of_one_layer(model, 8.0)
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    result = verify(broken, "onnxruntime", x, y, src.reference("int8"), "int8")
    assert not result["passed"] and result["sqnr_db"] < INT8_MIN_SQNR_DB, result
    result["reference"] = "torch int8"
    assert failure(result).startswith(f"logit SQNR {result['sqnr_db']:.1f} dB < {INT8_MIN_SQNR_DB} dB")
