"""The bookkeeping of ``edgeres diagnose``'s per-operator sums, on synthetic profiler output (no model, no
runtime): onnxruntime's per-run kernel events, OpenVINO's running-average counters."""

from __future__ import annotations

import pytest

from edgeres.runtimes.opprofile import _onnx_summary, _openvino_summary


def _run(ts: int, dur: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _kernel(name: str, op: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_onnx_sums_each_run_and_names_the_time_outside_operators():
    # A warm-up run, then three runs of 1000 us: two kernels (300 + 500 us), 50 us before the first, 100 us
    # between them, 50 us after; the last run's kernels overlap by 100 us (parallel), counted once in the gap.
    events = [_run(0, 5000), _kernel("/conv1/Conv", "Conv", 10, 4000)]
    for start in (10_000, 20_000):
        events += [_run(start, 1000), _kernel("/conv1/Conv", "Conv", start + 50, 300),
                   _kernel("/layer1/Add", "Add", start + 450, 500)]
    events += [_run(30_000, 1000), _kernel("/conv1/Conv", "Conv", 30_050, 300),
               _kernel("/layer1/Add", "Add", 30_250, 500), {"cat": "Session", "name": "SequentialExecutor::Execute",
                                                            "ts": 30_000, "dur": 1000}]
    result = _onnx_summary(events, warmup=1)
    assert result["runs"] == 3 and result["p50_ms"] == 1.0
    assert result["ops_p50_ms"] == 0.8 and result["coverage"] == 0.8  # the warm-up's 4 ms kernel is not counted
    outside = result["outside_ops"]
    assert outside["ms"] == pytest.approx(0.2) and outside["share"] == pytest.approx(0.2)
    assert outside["before_first_op_ms"] == 0.05 and outside["between_ops_ms"] == 0.1
    assert outside["after_last_op_ms"] == 0.05 and outside["ops_overlapping_ms"] == 0.0
    assert result["by_type"] == {"Add": 0.5, "Conv": 0.3}
    assert set(result["ops"]) == {"/conv1/Conv", "/layer1/Add"}


def test_onnx_overlapping_kernels_are_reported():
    events = [_run(0, 1000), _kernel("a", "Conv", 0, 600), _kernel("b", "Conv", 400, 600)]
    outside = _onnx_summary(events, warmup=0)["outside_ops"]
    assert outside["ops_overlapping_ms"] == 0.2 and outside["between_ops_ms"] == 0.0


def test_openvino_counters_are_running_averages_so_the_window_mean_is_taken():
    # A first inference of 10 ms in the conv, then 4 warm runs of 1 ms (warm-up: 5 runs), then 20 runs of
    # 1.2 ms. The plugin reports avg = total // n in whole microseconds; the fused ReLU reports 0 (NOT_RUN).
    conv = [10_000] + [1000] * 4 + [1200] * 20
    pool = [50] * 25

    def counters(n: int) -> list[tuple[str, str, str, float]]:
        return [("/conv1/Conv", "Convolution", "brgconv_avx2_f32", sum(conv[:n]) // n),
                ("/relu/Relu", "Relu", "undef", 0),
                ("/maxpool/MaxPool", "MaxPool", "jit_avx2_f32", sum(pool[:n]) // n)]

    latencies = [1.4] * 20  # ms
    result = _openvino_summary(counters(5), counters(25), 5, 25, latencies)
    # The window's mean, not the running average (which carries the first 10 ms run: 1.52 ms for the conv).
    assert result["ops"]["/conv1/Conv"][1] == pytest.approx(1.2, abs=0.002)
    assert result["ops_p50_ms"] == pytest.approx(1.25, abs=0.002)
    assert result["coverage"] == pytest.approx(1.25 / 1.4, abs=0.002)
    assert result["outside_ops"]["ms"] == pytest.approx(0.15, abs=0.002)
    assert "/relu/Relu" not in result["ops"] and result["runs"] == 20
    assert result["e2e_mean_ms"] == 1.4 and "mean" in result["ops_statistic"]
    assert 0 < result["ops_undercount_max_ms"] < 0.01


def test_openvino_counters_must_keep_their_shape():
    with pytest.raises(ValueError):
        _openvino_summary([("a", "Convolution", "k", 10)], [("b", "Convolution", "k", 10)], 5, 10, [1.0] * 5)
