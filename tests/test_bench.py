"""``edgeres bench`` end to end on real small artifacts: every variant measured on this CPU with the
accuracy its export verified, the FP32 baseline (BatchNorm folded) beside it, the reports saved and
re-rendered; a broken variant marked failed while the others are measured; estimates in their own field,
priced on the unit that runs the file; an absent board answered with a stated plan; bad devices and a
missing GPU refused cleanly. Plus the arithmetic of the ratios on synthetic rows. Never asserts speed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

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
    run_export(ExportRequest(targets=["onnx", "openvino"], precisions=["fp32", "int8"], model=int8.id,
                             verify_limit=EVAL), ws)
    return root


@pytest.fixture(scope="module")
def tflite_exported(exported, tmp_path_factory):
    """The same workspace plus resnet20's int8 TFLite file (as exported: not compiled for the Edge TPU)."""
    from edgeres.export.step import ExportRequest, run_export

    root = tmp_path_factory.mktemp("bench-tflite") / "ws"
    shutil.copytree(exported, root)
    ws = Workspace(root)
    int8 = ws.latest("quantize", model="resnet20")
    run_export(ExportRequest(targets=["tflite"], precisions=["int8"], model=int8.id, verify=False), ws)
    return root


def _copy(root, tmp_path):
    shutil.copytree(root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


FAST = {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "rounds": 1}  # BenchRequest's method settings


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
    assert base["n"] == EVAL and base["speedup"] == 1.0 and base["batchnorm"] == "folded"
    assert bench.manifest["baseline"] == {"device": "cpu", "choice": "auto", "precision": "fp32", "batchnorm": "folded"}
    assert {r["latency_kind"] for r in rows} == {"measured"} and all(r["estimated_p50_ms"] is None for r in rows)
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
        fp32 = next(r for r in rows if r["format"] == row["format"] and r["precision"] == "fp32")
        assert row["speedup_vs_fp32"] == pytest.approx(fp32["p50_ms"] / row["p50_ms"])
        assert row["speedup_cross_machine"] is None
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
    md = (bench.path / "results.md").read_text()
    assert "| onnx int8 |" in md and "| vs fp32 |" in md and "BatchNorm folded" in md
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
    result = run_bench(BenchRequest(eval_limit=50, **FAST), ws)
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
                                    **FAST), ws)
    assert result.results["root"] == fp32.id
    base, *rows = result.rows
    assert base["status"] == "measured" and result.results["mode"] == "estimated"
    assert [r["variant"] for r in rows] == ["onnx fp32", "onnx int8"]  # the Pi profile has no OpenVINO
    assert {s["variant"] for s in result.results["skipped"]} == {"openvino fp32", "openvino int8"}
    for row in rows:  # the estimate in its own field; no ratio to a measurement of another machine
        assert row["status"] == row["latency_kind"] == "estimated" and row["estimated_p50_ms"] > 0
        assert row["p50_ms"] is None and row["p90_ms"] is None and row["speedup"] is None
        assert row["speedup_vs_fp32"] is None and row["speedup_cross_machine"] is None
        assert row["top1_where"] == "host" and row["n"] == 50 and row["profile_verified"] is False
        assert row["estimate"]["unit"] == "cpu" and row["unit"] == "4x Cortex-A72 @ 1.5 GHz"
        text = cells(row)
        assert text[5] == "-" and text[7].startswith("~") and text[-1].startswith("estimated on the 4x Cortex-A72")
        assert "not yet run on its hardware" in text[-1]
    table = list(csv.DictReader(to_csv(result.results).splitlines()))
    assert [(r["status"], r["p50_ms"]) for r in table[1:]] == [("estimated", "")] * 2
    assert all(float(r["estimated_p50_ms"]) > 0 for r in table[1:])
    md = to_markdown(result.results)
    assert "## Estimated rows" in md and "| est. p50 ms |" in md and "has not yet been run on its hardware" in md


def test_raspberrypi_without_a_board_states_its_plan_and_finishes(exported, tmp_path, monkeypatch):
    """The mission's command with no Pi and no emulation root: the plan and its expected time first, then
    estimated rows (top-1 on this host), every latency in the estimate's own field."""
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path / "no-root"))  # whatever this machine has set up
    ws = _copy(exported, tmp_path)
    proc = run_cli("bench", "--device", "raspberrypi", "--eval-limit", "50", *TINY_METHOD, workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr + proc.stdout
    assert said.index("plan: 2 row(s) on raspberrypi") < said.index("expected: about") < said.index("estimating onnx")
    results = json.loads((ws.latest("bench").path / "results.json").read_text())
    assert results["mode"] == "estimated" and results["plan"]["kinds"] == ["estimated", "estimated"]
    assert results["plan"]["expected_seconds"] > 0 and results["method"]["rounds"] == 1  # nothing to compare
    for row in results["rows"][1:]:
        assert row["latency_kind"] == "estimated" and row["p50_ms"] is None and row["estimated_p50_ms"] > 0
        assert row["speedup"] is None and row["top1"] is not None


def test_gpu_without_cuda_is_one_clear_message(exported):
    for args in (("--device", "gpu"), ("--baseline", "cuda")):
        proc = run_cli("bench", *args, workspace=exported)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "CUDA is not available here" in proc.stderr, proc.stderr


def test_a_profile_runs_the_torch_model_itself_in_fp16(exported, tmp_path):
    """The gpu profile's machinery on this CPU (no CUDA here): torch rows of the profile's precisions beside the
    baseline, the one identical to the baseline left out, fp16 compared with the same runtime's fp32."""
    import yaml

    from edgeres.bench import BenchRequest, run_bench

    profile = tmp_path / "half.yaml"
    profile.write_text(yaml.safe_dump({"description": "torch in fp16 here", "arch": "native",
                                       "connection": {"type": "local"}, "verified_on_hardware": True,
                                       "runtimes": {"torch": {"device": "cpu", "precisions": ["fp32", "fp16"]}}}))
    ws = _copy(exported, tmp_path)
    result = run_bench(BenchRequest(device=str(profile), model="resnet20", baseline="cpu", eval_limit=30,
                                    **FAST), ws)
    base, fp16 = result.rows
    assert (base["variant"], fp16["variant"]) == ("torch fp32 (cpu)", "torch fp16 (cpu)")
    assert fp16["status"] == "measured" and fp16["artifact"] == base["artifact"] == result.results["root"]
    assert fp16["speedup_vs_fp32"] == pytest.approx(base["p50_ms"] / fp16["p50_ms"]) == fp16["speedup"]
    assert fp16["agreement"] >= 90 and "peak_gpu_memory_mb" not in fp16  # on the CPU: no GPU memory to report
    assert len(result.results["skipped"]) == 4  # the exports: this profile runs torch only


def test_exports_restrict_the_variants_to_exactly_those(exported, tmp_path):
    from edgeres.bench import BenchRequest, run_bench

    ws = _copy(exported, tmp_path)
    onnx_int8 = ws.latest("export", format="onnx", precision="int8")
    result = run_bench(BenchRequest(exports=[onnx_int8.id], eval_limit=30, **FAST), ws)
    assert [(r["variant"], r["artifact"]) for r in result.rows[1:]] == [("onnx int8", onnx_int8.id)]
    assert result.rows[1]["speedup_vs_fp32"] is None  # its fp32 file is not in this bench
    with pytest.raises(EdgeresError, match="not an export"):
        run_bench(BenchRequest(exports=[ws.latest("train", model="resnet20").id]), ws)
    with pytest.raises(EdgeresError, match="no onnx fp32 export .* among the exports given"):
        run_bench(BenchRequest(exports=[onnx_int8.id], targets=["onnx"], precisions=["fp32"]), ws)
    resnet18 = ws.latest("train", model="resnet18")
    with pytest.raises(EdgeresError, match="come from"):
        run_bench(BenchRequest(exports=[onnx_int8.id], model=resnet18.id), ws)


def test_unknown_device_lists_the_known_ones(exported):
    proc = run_cli("bench", "--device", "no-such-board", workspace=exported)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "unknown device 'no-such-board'" in proc.stderr and "raspberrypi" in proc.stderr


def test_bad_filters_and_empty_workspaces_fail_clearly(exported, tmp_path):
    from edgeres.bench import BenchRequest, run_bench

    with pytest.raises(EdgeresError, match=r"--precision \['int4'\]: Input should be 'fp32'"):
        run_bench(BenchRequest(precisions=["int4"]), Workspace(exported))
    with pytest.raises(EdgeresError, match="no export artifact"):
        run_bench(BenchRequest(), Workspace(tmp_path / "empty"))
    with pytest.raises(EdgeresError, match="device gpu cannot be used now: CUDA is not available"):
        run_bench(BenchRequest(device="gpu"), Workspace(exported))
    with pytest.raises(EdgeresError, match="runs none of the exported formats"):
        run_bench(BenchRequest(device="intel-npu", estimate=True, targets=["onnx"]), Workspace(exported))


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
    result = run_bench(BenchRequest(eval_limit=30, **FAST), ws)
    by_name = {r["variant"]: r for r in result.rows}
    assert by_name[f"{fmt} fp32"]["status"] == "failed" and "\n" not in by_name[f"{fmt} fp32"]["error"]
    assert all(r["status"] == "measured" for name, r in by_name.items() if name not in (f"{fmt} fp32",))


def test_a_profile_caps_the_evaluation_images_by_default_and_eval_limit_raises_it(exported, tmp_path):
    """Slow emulators (the HTP's) cap bench's test images in their profile, said so; --eval-limit raises it."""
    import yaml

    profile = tmp_path / "slow.yaml"
    profile.write_text(yaml.safe_dump({"description": "a slow device", "arch": "native",
                                       "connection": {"type": "local"}, "max_eval_images": 30,
                                       "runtimes": {"onnxruntime": {}}}))
    from edgeres.bench import BenchRequest, run_bench

    ws = _copy(exported, tmp_path)
    request = {"device": str(profile), "targets": ["onnx"], "precisions": ["fp32"], **FAST}
    result = run_bench(BenchRequest(**request), ws)
    assert [r["n"] for r in result.rows] == [30, 30]
    assert any("evaluates 30 test images by default" in w and "--eval-limit" in w for w in result.results["warnings"])
    result = run_bench(BenchRequest(eval_limit=40, **request), ws)
    assert [r["n"] for r in result.rows] == [40, 40] and not result.results["warnings"]


def test_default_images_per_device():
    from edgeres import devices
    from edgeres.bench import DEFAULT_EVAL_IMAGES, BenchRequest
    from edgeres.bench.plan import eval_images

    pi = devices.emulated(devices.get("raspberrypi"))
    assert eval_images(BenchRequest(), pi)[0] == pi.emulation.max_eval_images == 25
    assert "emulation.max_eval_images" in eval_images(BenchRequest(), pi)[1]
    assert eval_images(BenchRequest(eval_limit=200), pi) == (200, None)
    assert eval_images(BenchRequest(), devices.get("raspberrypi")) == (DEFAULT_EVAL_IMAGES, None)  # the real Pi
    assert eval_images(BenchRequest(), devices.get("qualcomm-npu"))[0] == 100


def test_each_row_gets_the_mode_its_device_can_give():
    import platform

    from edgeres import devices
    from edgeres.bench.modes import Emulated, Estimated, Measured, expected_seconds, mode_for

    cpu, pi = devices.get("cpu"), devices.get("raspberrypi")
    assert isinstance(mode_for(cpu, "onnxruntime", estimated=False), Measured)
    assert isinstance(mode_for(pi, "tflite", estimated=False), Measured)  # the real board, over ssh
    assert isinstance(mode_for(pi, "tflite", estimated=True), Estimated)
    assert mode_for(devices.emulated(pi), "tflite", estimated=False) == Emulated("qemu")
    npu = mode_for(devices.get("qualcomm-npu"), "onnxruntime", estimated=False)  # the HTP emulator on x86
    assert npu == Emulated("htp") if platform.machine() == "x86_64" else isinstance(npu, Measured)
    # the plan's time: the baseline is measured; an emulated row costs more than an estimated one
    cost, method = (0.035e9, 11e6), {"min_seconds": 1.0, "warmup": 5, "min_runs": 50}
    one = {"images": 100, "cost": cost, "method": method, "rounds": 3}
    base = expected_seconds([], **one)
    assert base == Measured().seconds(**one) > 0
    assert expected_seconds([Estimated()], **one) - base < expected_seconds([Emulated("qemu")], **one) - base
    assert expected_seconds([Emulated("htp")], **one) > expected_seconds([Estimated()], **one)


def test_latency_rounds_take_the_median_and_survive_failed_rounds_and_a_lost_device():
    from edgeres.bench.measure import latency_rounds

    def row(p50):
        return {"variant": "v", "p50_ms": p50, "p90_ms": p50 + 1, "p99_ms": p50 + 2, "mean_ms": p50, "runs": 10}

    def rounds_of(*p50s):
        reports = iter([{"result": {"ok": True, "latency_ms": {"p50": p, "p90": p + 1, "p99": p + 2, "mean": p,
                                                                 "runs": 10}}} for p in p50s])
        return lambda: next(reports)

    steady, flaky = row(2.0), row(5.0)
    failed = iter([{"result": {"ok": True, "latency_ms": {"p50": 9.0, "p90": 9, "p99": 9, "mean": 9, "runs": 10}}},
                   {"result": {"ok": False, "error": "crashed"}}])
    latency_rounds([(steady, rounds_of(3.0, 1.0)), (flaky, lambda: next(failed))], rounds=3)
    assert steady["p50_ms"] == 2.0 and steady["p50_rounds_ms"] == [2.0, 3.0, 1.0] and steady["runs"] == 30
    assert steady["p50_spread_pct"] == pytest.approx(100.0)
    assert flaky["rounds"] == 2 and flaky["p50_rounds_ms"] == [5.0, 9.0]  # the failed round is left out

    def lost():
        raise EdgeresError("host 10.0.0.9 is unreachable")

    alone = row(4.0)
    latency_rounds([(alone, lost)], rounds=9)
    assert alone["rounds"] == 1 and alone["p50_ms"] == 4.0  # round 1 stands


# -- the arithmetic, on synthetic rows ----------------------------------------------------------------------
def _row(variant, fmt, precision, p50=None, *, status="measured", where="board", role="variant", device="CPU",
         estimated=None):
    return {"variant": variant, "role": role, "status": status, "latency_kind": status, "format": fmt,
            "precision": precision, "runtime": fmt, "device": device, "where": where, "p50_ms": p50,
            "p90_ms": p50 if status == "measured" else None,
            "estimated_p50_ms": estimated, "top1": 90.0, "size_bytes": 100, "artifact": variant, "error": None}


def test_speedups_over_the_baseline_and_over_the_same_runtimes_fp32():
    from edgeres.bench.rows import compare

    base = _row("torch fp32 (cpu)", "torch", "fp32", 10.0, where="host", role="baseline", device="cpu")
    onnx32, onnx8 = _row("onnx fp32", "onnx", "fp32", 5.0), _row("onnx int8", "onnx", "int8", 2.0)
    tfl32, tfl8 = _row("tflite fp32", "tflite", "fp32", 8.0), _row("tflite int8", "tflite", "int8", 10.0)
    estimated = _row("openvino int8", "openvino", "int8", status="estimated", estimated=1.0)
    rows = [base, onnx32, onnx8, tfl32, tfl8, estimated]
    warnings = compare(rows, base, {}, "board", remote=False)
    assert [r["speedup"] for r in rows] == [1.0, 2.0, 5.0, 1.25, 1.0, None]
    assert [r["speedup_vs_fp32"] for r in rows] == [1.0, 1.0, 2.5, 1.0, 0.8, None]
    assert estimated["p50_ms"] is None and estimated["speedup_cross_machine"] is None  # an estimate is no p50
    assert warnings == ["tflite int8 is not faster than tflite fp32 on board: p50 10 ms vs 8 ms"]


def test_a_speedup_across_two_machines_is_labelled_so():
    from edgeres.bench.rows import compare
    from edgeres.report import cells

    base = _row("torch fp32 (cpu)", "torch", "fp32", 10.0, where="host", role="baseline", device="cpu")
    fp32, int8 = _row("onnx fp32", "onnx", "fp32", 40.0), _row("onnx int8", "onnx", "int8", 20.0)
    compare([base, fp32, int8], base, {}, "pi", remote=True)  # measured on the Pi over ssh
    assert base["speedup"] == 1.0
    assert [(r["speedup"], r["speedup_cross_machine"]) for r in (fp32, int8)] == [(None, 0.25), (None, 0.5)]
    assert int8["speedup_vs_fp32"] == 2.0  # both on the Pi: one machine
    assert cells(int8)[8] == "0.50x cross-machine" and cells(int8)[9] == "2.00x"


def test_the_gpu_rows_compare_fp16_with_fp32_on_the_gpu():
    from edgeres.bench.rows import compare

    on_gpu = _row("torch fp32 (cuda)", "torch", "fp32", 2.0, where="host", role="baseline", device="cuda")
    fp16 = _row("torch fp16 (cuda)", "torch", "fp16", 1.0, where="gpu", device="cuda")
    compare([on_gpu, fp16], on_gpu, {}, "gpu", remote=False)
    assert fp16["speedup"] == fp16["speedup_vs_fp32"] == 2.0  # the baseline is the GPU's fp32 row
    on_cpu = _row("torch fp32 (cpu)", "torch", "fp32", 20.0, where="host", role="baseline", device="cpu")
    fp32 = _row("torch fp32 (cuda)", "torch", "fp32", 2.0, where="gpu", device="cuda")
    fp16 = _row("torch fp16 (cuda)", "torch", "fp16", 1.0, where="gpu", device="cuda")
    compare([on_cpu, fp32, fp16], on_cpu, {}, "gpu", remote=False)
    assert (fp16["speedup"], fp16["speedup_vs_fp32"]) == (20.0, 2.0)


def test_baseline_device_choice():
    from edgeres.baseline import choose_device

    assert choose_device("auto", cuda_available=False) == "cpu"
    assert choose_device("auto", cuda_available=True) == "cuda"
    assert choose_device("cpu", cuda_available=True) == "cpu"
    assert choose_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(EdgeresError, match="CUDA is not available") as info:
        choose_device("cuda", cuda_available=False)
    assert "--baseline cpu" in info.value.hint
    with pytest.raises(EdgeresError, match="unknown baseline device 'tpu'"):
        choose_device("tpu")


def test_the_gpu_profile_measures_fp32_and_fp16_beside_the_baseline():
    from edgeres import devices
    from edgeres.bench.select import torch_variants
    from edgeres.workspace import Artifact

    gpu, root = devices.get("gpu"), Artifact(Path("/nowhere"), {"id": "train-x", "kind": "train"})
    names = lambda where, precisions=("fp32", "fp16", "int8"): [  # noqa: E731
        v.name for v in torch_variants(gpu, root, list(precisions), where)]
    assert names("cuda") == ["torch fp16 (cuda)"]  # the fp32 one is the baseline itself
    assert names("cpu") == ["torch fp32 (cuda)", "torch fp16 (cuda)"]
    assert names("cpu", ["int8"]) == [] and torch_variants(devices.get("cpu"), root, ["fp32"], "cpu") == []


def test_results_saved_before_estimates_had_their_own_field_read_as_they_meant():
    from edgeres.report import cells, to_csv, upgrade

    old = {"rows": [_row("torch fp32 (cpu)", "torch", "fp32", 10.0, role="baseline"),
                    {**_row("onnx int8", "onnx", "int8", 3.0, status="estimated"), "speedup": 3.3}]}
    for row in old["rows"]:
        del row["latency_kind"], row["estimated_p50_ms"]
    new = upgrade(old)
    assert new["rows"][1]["estimated_p50_ms"] == 3.0 and new["rows"][1]["p50_ms"] is None
    assert new["rows"][1]["speedup"] is None and new["rows"][1]["latency_kind"] == "estimated"
    assert old["rows"][1]["p50_ms"] == 3.0 and upgrade(new) is new  # a copy; current results stay as they are
    assert cells(new["rows"][1])[5:8] == ["-", "-", "~3.000"]
    assert to_csv({**old, "results_format": 1}).splitlines()[2].split(",")[3] == "estimated"


# -- the Edge TPU: what the file lets it take ---------------------------------------------------------------
def test_a_coral_row_of_a_file_edgetpu_compiler_did_not_compile_says_cpu(tflite_exported, tmp_path):
    """With no board here its rows are estimated; the int8 file as exported has no Edge TPU subgraph, so the
    delegate would take nothing: the row says CPU and is priced on the board's Cortex-A53s."""
    from edgeres.bench import BenchRequest, run_bench
    from edgeres.report import status_text, to_markdown

    ws = _copy(tflite_exported, tmp_path)
    result = run_bench(BenchRequest(device="coral-edgetpu", eval_limit=30, **FAST), ws)
    [row] = result.rows[1:]
    assert row["variant"] == "tflite int8" and row["status"] == "estimated"
    assert row["device"].startswith("CPU (not compiled by edgetpu_compiler") and row["unit"] == "CPU"
    assert row["estimate"]["unit"] == "cpu" and "Cortex-A53" in row["estimate"]["unit_description"]
    offload = row["offload"]
    assert offload["unit"] == "Edge TPU" and offload["subgraphs"] == 0
    assert offload["on_cpu"] == offload["ops"] == sum(offload["cpu_ops"].values()) and offload["cpu_ops"]["CONV_2D"] > 0
    assert "Edge TPU took none of" in status_text(row) and "## Edge TPU placement of tflite int8" in to_markdown(
        result.results)


def test_a_file_compiled_for_the_edge_tpu_is_told_apart(tflite_exported, tmp_path):
    """edgetpu_compiler replaces what the TPU runs with its custom operator: such a file goes to the TPU."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgeres import devices
    from edgeres.backends import placement
    from edgeres.bench import Variant
    from edgeres.bench.rows import place

    export = Workspace(tflite_exported).latest("export", format="tflite", precision="int8")
    plain = export.path / export.manifest["file"]
    model = schema.ModelT.InitFromPackedBuf(plain.read_bytes(), 0)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = placement.EDGETPU_OP, 1
    model.operatorCodes.append(code)
    model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) - 1  # as if the compiler took it
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    compiled = tmp_path / "model_edgetpu.tflite"
    compiled.write_bytes(bytes(builder.Output()))

    assert placement.compiled_for(plain, "tflite") == frozenset()
    assert placement.compiled_for(compiled, "tflite") == {"edgetpu"}
    assert placement.compiled_for(compiled, "onnxruntime") == frozenset()
    offload = placement.edgetpu_offload(compiled)
    assert offload["subgraphs"] == 1 and offload["on_cpu"] == offload["ops"] - 1
    coral = devices.get("coral-edgetpu")
    row = {"status": "estimated", "device": "delegate libedgetpu.so.1"}
    assert place(row, coral, Variant.export(export), compiled) == {"edgetpu"}
    assert row["unit"] == "Edge TPU + CPU" and row["device"] == "delegate libedgetpu.so.1"
    assert coral.estimate.unit_for("tflite", "int8", frozenset({"edgetpu"})) == "edgetpu"
    assert placement.tflite_ops(tmp_path / "missing.tflite") is None


@pytest.mark.parametrize("request_kwargs,needle", [
    ({"min_runs": 10**12}, "--min-runs 1000000000000: Input should be less than or equal to 100000"),
    ({"warmup": 10**12}, "--warmup .*: Input should be less than or equal to 10000"),
    ({"rounds": 10**5}, "--rounds 100000: Input should be less than or equal to 100"),
    ({"min_seconds": float("nan")}, "--min-seconds nan: Input should be a finite number"),
    ({"min_seconds": float("inf")}, "--min-seconds inf"),
    ({"threads": 10**4}, "--threads 10000: Input should be less than or equal to 1024"),
    ({"threads": 512}, "--threads 512: at most"),
    ({"device": "raspberrypi", "estimate": True, "threads": 64}, "at most 16 .*raspberrypi's 4 cores"),
])
def test_run_counts_and_threads_are_bounded_before_anything_runs(tmp_path, request_kwargs, needle):
    from edgeres.bench import BenchRequest, run_bench

    with pytest.raises(EdgeresError, match=needle):
        run_bench(BenchRequest(**request_kwargs), Workspace(tmp_path))
    assert not any(tmp_path.iterdir())


def test_offload_text_says_what_each_unit_took():
    from edgeres.report import offload_text

    assert offload_text({"offload": None}) is None
    assert offload_text({"offload": {"unit": "NPU", "source": "OpenVINO query_model", "ops": 120, "on_cpu": 5}}) \
        == "NPU took 115 of 120 nodes"
    assert offload_text({"offload": {"unit": "QNN", "ops": 60, "on_cpu": 1, "subgraphs": 2}}) \
        == "QNN took 59 of 60 nodes (2 subgraph(s))"
    assert "none of 40 ops" in offload_text({"offload": {"unit": "Edge TPU", "ops": 40, "on_cpu": 40, "subgraphs": 0}})


def test_an_openvino_npu_row_reads_back():
    """results.json rows are checked when read: OpenVINO's offload (no subgraph count) is a valid one."""
    from edgeres.report import _Row

    row = {"variant": "openvino int8", "role": "variant", "status": "measured", "format": "openvino",
           "precision": "int8", "runtime": "openvino", "device": "NPU", "p50_ms": 1.5,
           "offload": {"unit": "NPU", "source": "OpenVINO query_model", "ops": 120, "on_cpu": 5}}
    assert _Row.model_validate(row).offload.subgraphs is None


def test_a_file_compiled_for_an_accelerator_runs_only_where_its_delegate_loads(tmp_path):
    from edgeres import devices
    from edgeres.bench.select import runnable
    from edgeres.workspace import Artifact

    def export(compile_for: str | None) -> Artifact:
        options = {"io": "int8"} | ({"compile": compile_for} if compile_for else {})
        return Artifact(tmp_path, {"kind": "export", "format": "tflite", "config": {"options": options}})

    coral, cpu = devices.get("coral-edgetpu"), devices.get("cpu")
    assert runnable(cpu, export(None)) and runnable(cpu, export("none")) and runnable(coral, export("none"))
    assert runnable(coral, export("edgetpu")) and not runnable(cpu, export("edgetpu"))
