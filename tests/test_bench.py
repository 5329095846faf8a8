"""``edgeres bench`` end to end on real small artifacts: every variant measured on this CPU with the
accuracy its export verified, the FP32 baseline beside it, the reports saved and re-rendered; a broken
variant marked failed while the others are measured; estimates labelled; bad devices refused cleanly.
Never asserts speed."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import run_cli
from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace

TINY_METHOD = ("--warmup", "1", "--min-runs", "5", "--min-seconds", "0", "--rounds", "1")
EVAL = 200  # the export verification's image count too, so the top-1 figures are comparable


@pytest.fixture(scope="module")
def exported(trained_workspace, tmp_path_factory):
    """resnet20 quantized, exported to ONNX and OpenVINO at fp32 and int8, verified on EVAL images."""
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.quantize.step import QuantizeRequest, run_quantize

    root = tmp_path_factory.mktemp("bench") / "ws"
    shutil.copytree(trained_workspace, root)
    ws = Workspace(root)
    int8 = run_quantize(QuantizeRequest(model="resnet20", eval_limit=200, val_limit=200, calib_samples=128), ws)
    run_export(ExportRequest(targets=["onnx", "openvino"], precisions=["fp32", "int8"], model=int8.id, verify_limit=EVAL), ws)
    return root


def _copy(root, tmp_path):
    shutil.copytree(root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _method():
    return {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "rounds": 1}


def test_bench_cpu_measures_every_variant_beside_the_baseline(exported):
    from edgeres import baseline

    proc = run_cli("bench", "--device", "cpu", "--eval-limit", str(EVAL), *TINY_METHOD[:-1], "2", workspace=exported)
    assert proc.returncode == 0, proc.stderr
    bench = Workspace(exported).latest("bench")
    rows = bench.manifest["rows"]
    assert [r["variant"] for r in rows] == [baseline.label("cpu"), "onnx fp32", "onnx int8", "openvino fp32",
                                            "openvino int8"]
    base = rows[0]
    assert base["role"] == "baseline" and base["device"] == "cpu" and base["status"] == "measured"
    assert base["n"] == EVAL and base["speedup"] == 1.0
    assert base["peak_rss_mb"] > 0  # the baseline runs in a process of its own, like the variants
    for row in rows:  # two latency rounds, each in fresh processes; p50 is the median of theirs
        assert row["rounds"] == 2 and len(row["p50_rounds_ms"]) == 2, row
        assert row["p50_ms"] == pytest.approx(sum(row["p50_rounds_ms"]) / 2)
        assert row["runs"] >= 2 * 5 and row["p50_spread_pct"] >= 0
    for row in rows[1:]:
        assert row["status"] == "measured", row
        assert row["n"] == EVAL == row["verify_n"]
        assert abs(row["top1"] - row["verify_top1"]) <= 0.5, row
        assert row["delta_top1_pp"] == pytest.approx(row["top1"] - base["top1"])
        assert row["speedup"] == pytest.approx(base["p50_ms"] / row["p50_ms"])
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["runs"] >= 5
    # the same float model on the same images: the fp32 files predict what the baseline predicts
    assert all(r["agreement"] >= 99 for r in rows[1:] if r["precision"] == "fp32")

    results = json.loads((bench.path / "results.json").read_text())
    assert results["rows"] == rows and results["device"]["name"] == "cpu"
    with open(bench.path / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["variant"] for r in table] == [r["variant"] for r in rows]
    assert {r["status"] for r in table} == {"measured"}
    assert (bench.path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| onnx int8 |" in (bench.path / "results.md").read_text()
    assert "torch fp32 (cpu)" in proc.stdout and str(bench.path / "plot.png") in proc.stdout

    (bench.path / "plot.png").unlink()
    again = run_cli("report", workspace=exported)
    assert again.returncode == 0, again.stderr
    assert "onnx int8" in again.stdout and (bench.path / "plot.png").is_file()


def test_a_corrupt_variant_is_marked_failed_and_the_others_measured(exported, tmp_path):
    from edgeres.bench import BenchRequest, run_bench

    ws = _copy(exported, tmp_path)
    broken = ws.latest("export", format="onnx", precision="int8")
    (broken.path / "model.onnx").write_bytes(b"not an onnx model")
    result = run_bench(BenchRequest(eval_limit=50, method=_method()), ws)
    by_name = {r["variant"]: r for r in result.rows}
    assert by_name["onnx int8"]["status"] == "failed"
    assert "model.onnx" in by_name["onnx int8"]["error"] and "\n" not in by_name["onnx int8"]["error"]
    assert by_name["onnx int8"]["speedup"] is None
    assert [by_name[v]["status"] for v in ("onnx fp32", "openvino fp32", "openvino int8")] == ["measured"] * 3

    # nothing measurable: a clear error, non-zero exit, and no bench artifact
    before = len(ws.artifacts("bench"))
    proc = run_cli("bench", "--target", "onnx", "--precision", "int8", "--eval-limit", "50", *TINY_METHOD,
                   workspace=ws.root)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no variant could be measured" in proc.stderr and "onnx int8" in proc.stderr
    assert len(ws.artifacts("bench")) == before


def test_estimate_rows_are_labelled_estimated(exported, tmp_path):
    from edgeres.bench import BenchRequest, run_bench
    from edgeres.report import cells, to_csv, to_markdown

    ws = _copy(exported, tmp_path)
    fp32 = ws.latest("train", model="resnet20")  # --model names the lineage by any of its artifacts
    result = run_bench(BenchRequest(device="raspberrypi", model=fp32.id, estimate=True, eval_limit=50,
                                    method=_method()), ws)
    assert result.results["root"] == fp32.id
    base, *rows = result.rows
    assert base["status"] == "measured" and result.results["mode"] == "estimated"
    assert [r["variant"] for r in rows] == ["onnx fp32", "onnx int8"]  # the Pi profile has no OpenVINO
    assert {s["variant"] for s in result.results["skipped"]} == {"openvino fp32", "openvino int8"}
    for row in rows:
        assert row["status"] == "estimated" and row["p50_ms"] > 0 and row["p90_ms"] is None
        assert row["top1_where"] == "host" and row["n"] == 50
        text = cells(row)
        assert text[5].startswith("~") and text[-1].startswith("estimated")
    assert [line.split(",")[2] for line in to_csv(result.results).splitlines()[2:]] == ["estimated"] * 2
    assert "## Estimated rows" in to_markdown(result.results)


def test_unknown_device_lists_the_known_ones(exported):
    proc = run_cli("bench", "--device", "no-such-board", workspace=exported)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "unknown device 'no-such-board'" in proc.stderr and "raspberrypi" in proc.stderr


def test_bad_filters_and_empty_workspaces_fail_clearly(exported, tmp_path):
    from edgeres.bench import BenchRequest, run_bench

    with pytest.raises(EdgeresError, match="unknown precision 'int4'"):
        run_bench(BenchRequest(precisions=["int4"]), Workspace(exported))
    with pytest.raises(EdgeresError, match="no export artifact"):
        run_bench(BenchRequest(), Workspace(tmp_path / "empty"))
    with pytest.raises(EdgeresError, match="runs none of the exported formats"):
        run_bench(BenchRequest(device="gpu"), Workspace(exported))


@pytest.mark.parametrize("fmt, suffix, keep", [("onnx", ".onnx", 0.5), ("onnx", ".onnx", 0.0),
                                               ("openvino", ".bin", 0.5), ("openvino", ".xml", 0.3)])
def test_truncated_model_files_are_clear_errors_in_verify_and_bench(exported, tmp_path, fmt, suffix, keep):
    """A file cut short (a copy interrupted, a full disk) is refused by verification and by bench with one
    clear line naming the file; the other variants are still measured."""
    import numpy as np

    from edgeres.bench import BenchRequest, run_bench
    from edgeres.export import verify

    ws = _copy(exported, tmp_path)
    victim = ws.latest("export", format=fmt, precision="fp32")
    cut = next(victim.path.glob(f"*{suffix}"))
    cut.write_bytes(cut.read_bytes()[:int(cut.stat().st_size * keep)])
    model_file = victim.path / victim.manifest["file"]
    x = np.zeros((4, 1, 28, 28), np.float32)
    with pytest.raises(EdgeresError, match=f"verification could not run {model_file.name}") as info:
        verify.verify(model_file, victim.manifest["runtime"], x, np.zeros(4, int), np.zeros((4, 10)), "fp32")
    assert "Traceback" not in str(info.value)
    result = run_bench(BenchRequest(eval_limit=30, method=_method()), ws)
    by_name = {r["variant"]: r for r in result.rows}
    assert by_name[f"{fmt} fp32"]["status"] == "failed" and "\n" not in by_name[f"{fmt} fp32"]["error"]
    assert all(r["status"] == "measured" for name, r in by_name.items() if name not in (f"{fmt} fp32",))


def test_a_profile_can_cap_the_evaluation_images(exported, tmp_path):
    """Slow emulators (the HTP's) cap bench's test images in their profile; bench says so."""
    import yaml

    profile = tmp_path / "slow.yaml"
    profile.write_text(yaml.safe_dump({"description": "a slow device", "arch": "native",
                                       "connection": {"type": "local"}, "max_eval_images": 30,
                                       "runtimes": {"onnxruntime": {}}}))
    from edgeres.bench import BenchRequest, run_bench

    result = run_bench(BenchRequest(device=str(profile), eval_limit=200, targets=["onnx"], precisions=["fp32"],
                                    method=_method()), _copy(exported, tmp_path))
    assert [r["n"] for r in result.rows] == [30, 30]
    assert any("at most 30 test images" in w for w in result.results["warnings"])


def test_latency_rounds_take_the_median_and_survive_failed_rounds_and_a_lost_device():
    from edgeres.bench import _latency_rounds

    def row(p50):
        return {"variant": "v", "p50_ms": p50, "p90_ms": p50 + 1, "p99_ms": p50 + 2, "mean_ms": p50, "runs": 10}

    def rounds_of(*p50s):
        reports = iter([{"result": {"ok": True, "latency_ms": {"p50": p, "p90": p + 1, "p99": p + 2, "mean": p,
                                                                 "runs": 10}}} for p in p50s])
        return lambda: next(reports)

    steady, flaky = row(2.0), row(5.0)
    failed = iter([{"result": {"ok": True, "latency_ms": {"p50": 9.0, "p90": 9, "p99": 9, "mean": 9, "runs": 10}}},
                   {"result": {"ok": False, "error": "crashed"}}])
    _latency_rounds([(steady, rounds_of(3.0, 1.0)), (flaky, lambda: next(failed))], rounds=3)
    assert steady["p50_ms"] == 2.0 and steady["p50_rounds_ms"] == [2.0, 3.0, 1.0] and steady["runs"] == 30
    assert steady["p50_spread_pct"] == pytest.approx(100.0)
    assert flaky["rounds"] == 2 and flaky["p50_rounds_ms"] == [5.0, 9.0]  # the failed round is left out

    def lost():
        raise EdgeresError("host 10.0.0.9 is unreachable")

    alone = row(4.0)
    _latency_rounds([(alone, lost)], rounds=9)
    assert alone["rounds"] == 1 and alone["p50_ms"] == 4.0  # round 1 stands
