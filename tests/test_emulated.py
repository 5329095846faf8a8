"""Emulated targets, for real: an int8 TFLite file run by the aarch64 build of LiteRT under qemu-user in the
arm64 root (built once, then cached in $EDGERES_CACHE or ~/.cache/edgeres), and a QDQ ONNX file on Qualcomm's
HTP emulator (onnxruntime-qnn), each against the x86 run of the same file on the same images. Plus the bad
input: qemu/debootstrap missing, a half-made root, an unreachable mirror, a runtime without an aarch64
wheel, operators the NPU cannot take. Never asserts speed; emulated speed is never reported as latency."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, save

from conftest import run_cli
from edgeres import backends, devices, emulation
from edgeres.errors import EdgeresError

pytestmark = pytest.mark.slow

EVAL = 50  # test images: emulation is slow (about 0.2 s per image under qemu, 0.4 s on the HTP emulator)
TINY = {"warmup": 1, "min_runs": 3, "min_seconds": 0.0, "max_runs": 3, "throughput_batch": 2}


@pytest.fixture(scope="module")
def exported(trained_workspace, tmp_path_factory) -> dict[str, Path]:
    """resnet20 (28x28 Fashion-MNIST) quantized and exported to int8 TFLite and int8 QDQ ONNX, each in a job
    directory beside EVAL test images."""
    from edgeres import data
    from edgeres.export.step import ExportRequest, run_export
    from edgeres.preprocessing import Preprocessing
    from edgeres.quantize.step import QuantizeRequest, run_quantize
    from edgeres.workspace import Workspace

    tmp = tmp_path_factory.mktemp("emulated")
    shutil.copytree(trained_workspace, tmp / "ws")
    ws = Workspace(tmp / "ws")
    int8 = run_quantize(QuantizeRequest(model="resnet20", eval_limit=200, val_limit=200, calib_samples=128), ws)
    # verify=False: these tests compare each file with itself on another target, not with the torch model
    arts = run_export(ExportRequest(targets=["tflite", "onnx"], precisions=["int8"], model=int8.id, verify=False), ws)
    prep = Preprocessing.from_dict(int8.manifest["preprocessing"])
    x, y = data.as_tensors(data.load_split("fashion-mnist", "test", prep, limit=EVAL))
    dirs = {"workspace": ws.root}
    for art in arts:
        job_dir = tmp / art.manifest["format"]
        job_dir.mkdir()
        shutil.copy(art.file(art.manifest["file"]), job_dir / art.manifest["file"])
        np.savez(job_dir / "eval.npz", x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
        dirs[art.manifest["format"]] = job_dir
    return dirs


def _half_made(cache: Path) -> Path:
    root = cache / "arm64-root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python3").write_text("half-made")
    return root


@pytest.fixture(scope="module")
def arm64_root() -> emulation.Root:
    """The real arm64 root in the user's cache, built on first use (about a minute and 300 MB from the
    Debian mirror and PyPI). When it has to be built, a half-made root (an interrupted set-up) is planted
    first, so that the build also shows that such a root is replaced, not used."""
    state, root = emulation.status()
    if root is not None:
        return root
    if state == "missing":
        _half_made(emulation.cache_dir())
    assert emulation.status()[0] == "incomplete"
    root = emulation.setup()
    assert emulation.status() == ("ready", root) and root.python.stat().st_size > 1000
    assert {"tflite", "onnxruntime"} <= set(root.runtimes)  # both have aarch64 wheels for CPython 3.11
    assert root.info["python"].startswith("3.11.") and root.info["bytes"] < 600e6
    return root


def _job(job_dir: Path, runtime: str, options: dict) -> dict:
    model = next(p.name for p in job_dir.iterdir() if p.suffix in (".tflite", ".onnx"))
    return {"variant": {"name": f"{runtime} int8", "file": model, "runtime": runtime, "options": options},
            "data": "eval.npz", "method": TINY}


def _x86(job_dir: Path, runtime: str) -> dict:
    cpu = devices.get("cpu")
    report = backends.run_variant(cpu, job_dir, _job(job_dir, runtime, devices.runtime_options(cpu, runtime, 2)))
    assert report["result"]["ok"], report["result"]["error"]
    return report["result"]


def test_emulated_arm_tflite_int8_gives_the_x86_predictions(exported, arm64_root):
    profile = devices.emulated(devices.get("raspberrypi"))
    assert profile.connection.cpu == "cortex-a72" and devices.usable(profile)[0]
    job = _job(exported["tflite"], "tflite", devices.runtime_options(profile, "tflite", 2))
    report = backends.run_variant(profile, exported["tflite"], job)
    result = report["result"]
    assert result["ok"], result["error"]
    assert report["backend"] == "emulated" and report["host"]["machine"] == "aarch64"
    assert result["emulated"].startswith("qemu-aarch64 ") and "cortex-a72" in report["host"]["processor"]
    assert "latency_ms" not in result and "throughput_ips" not in result  # qemu's speed is not the Pi's
    assert result["emulated_latency_ms"]["runs"] == 2 and result["info"]["interpreter"] == "ai_edge_litert"
    x86 = _x86(exported["tflite"], "tflite")
    assert result["n"] == x86["n"] == EVAL
    assert result["predictions"] == x86["predictions"] and result["top1"] == x86["top1"]


def _bench(workspace: Path, *args: str) -> tuple[dict, str, str, str]:
    """``edgeres bench`` as a user runs it; the variant row of results.json, the CSV, the Markdown, stdout."""
    from edgeres.workspace import Workspace

    proc = run_cli("bench", *args, "--precision", "int8", "--eval-limit", str(EVAL), "--warmup", "1", "--min-runs", "3",
                   "--min-seconds", "0", "--rounds", "1", workspace=workspace)
    assert proc.returncode == 0, proc.stderr
    bench = Workspace(workspace).latest("bench")
    results = json.loads((bench.path / "results.json").read_text())
    assert results["mode"] == "emulated" and len(results["rows"]) == 2
    row = results["rows"][1]
    assert row["status"] == row["latency_kind"] == "emulated"
    assert row["p50_ms"] is None and row["speedup"] is None and row["speedup_vs_fp32"] is None  # no device latency
    assert row["estimated_p50_ms"] > 0 and row["emulated_p50_ms"] > 0 and row["n"] == EVAL
    return row, (bench.path / "results.csv").read_text(), (bench.path / "results.md").read_text(), proc.stdout


def test_bench_emulate_raspberrypi_labels_every_output(exported, arm64_root):
    row, csv, md, stdout = _bench(exported["workspace"], "--device", "raspberrypi", "--emulate", "--target", "tflite")
    assert row["emulated"].startswith("qemu-aarch64 ") and row["emulated"].endswith("-cpu cortex-a72")
    assert row["host_agreement"] == 100.0 and row["host_top1"] == row["top1"]  # the x86 run of the same file
    assert ",emulated," in csv and "## Emulated rows" in md and "| emulated (qemu-aarch64" in md
    assert "emulated (qemu-aarch64" in stdout and "emulated (qemu-aarch64, cortex-a72)" in md


def test_raspberrypi_without_a_board_runs_its_emulation_on_a_stated_number_of_images(exported, arm64_root):
    """The mission's command with no Pi but the emulation root here: the plan first, then every row emulated
    on the profile's default cap of test images (said so), every latency an estimate in its own field."""
    from edgeres.workspace import Workspace

    proc = run_cli("bench", "--device", "raspberrypi", "--warmup", "1", "--min-runs", "3", "--min-seconds", "0",
                   workspace=exported["workspace"])
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr + proc.stdout
    cap = devices.get("raspberrypi").emulation.max_eval_images
    assert said.index("plan: 2 row(s) on raspberrypi") < said.index("expected: about") < said.index("measuring")
    assert f"{cap} test images (the device's default cap, --eval-limit raises it)" in said
    results = json.loads((Workspace(exported["workspace"]).latest("bench").path / "results.json").read_text())
    assert results["mode"] == "emulated" and results["eval"]["n"] == cap and results["method"]["rounds"] == 1
    assert any(f"evaluates {cap} test images by default" in w for w in results["warnings"])
    for row in results["rows"][1:]:
        assert row["latency_kind"] == "emulated" and row["p50_ms"] is None and row["estimated_p50_ms"] > 0
        assert row["n"] == cap and row["profile_verified"] is False


def test_diagnose_on_raspberrypi_without_a_board_runs_each_file_emulated(exported, arm64_root):
    """`edgeres diagnose --device raspberrypi` with no Pi but the emulation root: the layers are compared with
    the torch model here; each file runs on the Pi's own kernels under qemu on the profile's cap of images,
    where its tensors at every point are set against this host's; no operator is timed (qemu's speed)."""
    proc = run_cli("diagnose", "--device", "raspberrypi", "--images", "32", "--recover", "0", "--json",
                   workspace=exported["workspace"])
    assert proc.returncode == 0, proc.stderr
    assert "raspberrypi is not reachable" in proc.stderr and "running its emulation here instead" in proc.stderr
    report = json.loads(proc.stdout)["report"]
    assert report["device"] == "raspberrypi" and report["where"] == "emulated (qemu-aarch64, cortex-a72)"
    cap = devices.get("raspberrypi").emulation.max_eval_images
    files = {f["format"]: f for f in report["files"]}
    assert set(files) == {"tflite", "onnx"}  # the Pi runs no OpenVINO
    for f in files.values():
        d = f["on_device"]
        assert d["kind"] == "emulated" and d["images"] == min(32, cap) and d["emulator"].startswith("qemu-aarch64 ")
        assert d["agreement_with_reference"] >= 90 and 0 <= d["top1"] <= 100
    assert files["tflite"]["on_device"]["agreement_with_this_host"] == 100.0  # as bench's emulated run shows
    for f in files.values():  # every point's tensor on the Pi's kernels against this host's: close, not equal
        d = f["on_device"]
        assert [r["point"] for r in d["layers"]] == report["points"]
        assert 20 < d["layers_min_sqnr_db"] <= 150 and d["layers_worst_point"] in report["points"]
    assert files["onnx"]["on_device"]["agreement_with_this_host"] >= 90
    assert report["latency"]["files"] == [] and "emulator" in report["latency"]["unavailable"]


def test_qnn_htp_emulator_agrees_with_the_cpu_ep_and_reports_the_partitioning(exported):
    profile = devices.get("qualcomm-npu")
    assert devices.usable(profile)[0], devices.usable(profile)[1]
    row, csv, md, _ = _bench(exported["workspace"], "--device", "qualcomm-npu", "--target", "onnx")
    assert row["device"] == "QNNExecutionProvider (libQnnHtp.so)" and "emulator on x86_64" in row["emulated"]
    assert row["host_agreement"] >= 94 and abs(row["top1"] - row["host_top1"]) <= 6  # vs the CPU EP, here
    part = row["partitioning"]
    assert part["provider"] == "QNNExecutionProvider" and part["subgraphs"] >= 1
    assert part["ops"]["Conv"] == {"nodes": 19, "cpu": 0} and part["ops"]["Add"]["cpu"] == 0
    # the one compute node QNN leaves to the CPU: the 64 x 10 classifier, a quantized-input Gemm with a float
    # output (export/qdq.py: the form onnxruntime's CPU kernels need)
    assert [n for n in part["cpu_nodes"] if n.split()[0] in ("Conv", "Gemm", "MatMul", "Add", "Relu")] == [
        "Gemm /linear/Gemm"]
    assert part["on_cpu"] == len(part["cpu_nodes"]) and part["nodes"] > part["on_cpu"]
    assert "## Partitioning of onnx int8 on QNNExecutionProvider" in md and ",emulated," in csv
    assert row["offload"] == {"unit": "QNNExecutionProvider", "source": "onnxruntime's profiler",
                              "subgraphs": part["subgraphs"], "ops": part["nodes"], "on_cpu": part["on_cpu"]}
    assert row["estimate"]["unit"] == "npu" and row["unit"] == "Hexagon NPU (HTP)"  # int8 is priced on the NPU
    assert f"QNNExecutionProvider took {part['nodes'] - part['on_cpu']} of {part['nodes']} nodes" in md


def test_operators_the_npu_cannot_take_fall_back_and_are_reported(tmp_path):
    from edgeres.runtimes import open_session

    nodes = [helper.make_node("Relu", ["input"], ["a"], name="relu1"),
             helper.make_node("Mod", ["a", "two"], ["b"], name="odd", fmod=1),  # not an HTP operator
             helper.make_node("Relu", ["b"], ["c"], name="relu2"),
             helper.make_node("Flatten", ["c"], ["logits"], name="flatten")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
                              [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    session = open_session(tmp_path / "m.onnx", provider="QNNExecutionProvider",
                           provider_options={"backend_path": "libQnnHtp.so"})
    part = session.info()["partitioning"]
    assert part["cpu_nodes"] == ["Mod odd"] and part["subgraphs"] == 2
    assert part["ops"]["Mod"] == {"nodes": 1, "cpu": 1} and part["compute_on_provider"] == 1.0
    x = np.linspace(0, 4, 3 * 16, dtype=np.float32).reshape(3, 1, 4, 4)  # a batch, though the HTP's is 1
    np.testing.assert_allclose(session.run(x), np.fmod(x, 2).reshape(3, 16), atol=0.01)


# -- bad input ----------------------------------------------------------------------------------------
def test_missing_qemu_or_debootstrap_says_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path / "cache"))
    for call in (emulation.setup, emulation.qemu):
        with pytest.raises(EdgeresError) as info:
            call()
        assert "apt-get install qemu-user-static debootstrap" in str(info.value)
    proc = run_cli("devices", "--setup", "raspberrypi")
    assert proc.returncode == 1 and "not found" in proc.stderr and "apt-get install qemu-user-static" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "cache" / "arm64-root").exists()


def test_a_half_made_root_is_detected_and_never_used(tmp_path, monkeypatch, exported):
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path))
    root = _half_made(tmp_path)
    assert emulation.status() == ("incomplete", None)
    (root / emulation.MARKER).write_text(json.dumps({"format": emulation.FORMAT + 1}))  # an older edgeres's
    assert emulation.status() == ("incomplete", None)
    profile = devices.emulated(devices.get("raspberrypi"))
    with pytest.raises(EdgeresError) as info:
        backends.run_variant(profile, exported["tflite"], _job(exported["tflite"], "tflite", {}))
    assert "incomplete" in str(info.value) and "edgeres devices --setup raspberrypi" in str(info.value)
    ok, why = devices.usable(profile)
    assert not ok and "incomplete" in why
    proc = run_cli("bench", "--device", "raspberrypi", "--emulate", workspace=exported["workspace"])
    assert proc.returncode == 1 and "incomplete" in proc.stderr and "--setup raspberrypi" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_mirror_is_one_clear_error_and_leaves_no_root(tmp_path, monkeypatch):
    if shutil.which("debootstrap") is None or shutil.which(emulation.QEMU) is None:
        pytest.fail(f"debootstrap and qemu-user-static must be installed: {emulation.APT_HINT}")
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path))
    monkeypatch.setenv("EDGERES_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")  # the discard port: refused
    root = _half_made(tmp_path)
    with pytest.raises(EdgeresError) as info:
        emulation.setup()
    assert "debootstrap failed" in str(info.value) and "127.0.0.1:9" in str(info.value)
    assert "mirror" in info.value.hint
    assert emulation.status() == ("incomplete", None) and (root / "usr" / "bin" / "python3").read_text() == "half-made"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arm64-root", "arm64-root.lock"]  # no staging left


def test_a_runtime_without_an_aarch64_wheel_is_skipped_and_named(tmp_path, monkeypatch, exported, arm64_root):
    # onnxruntime-openvino publishes x86-64 wheels only
    assert emulation._download("onnxruntime-openvino", arm64_root.info, tmp_path) is None
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path))
    fake = _half_made(tmp_path)
    (fake / emulation.SITE).mkdir(parents=True)
    reason = "no aarch64 wheel of onnxruntime for CPython 3.11.2 (glibc 2.36) on PyPI"
    marker = {**arm64_root.info, "runtimes": {}, "skipped": {"onnxruntime": reason}}
    (fake / emulation.MARKER).write_text(json.dumps(marker))
    profile = devices.emulated(devices.get("raspberrypi"))
    report = backends.run_variant(profile, exported["onnx"], _job(exported["onnx"], "onnxruntime", {}))
    assert not report["result"]["ok"] and report["result"]["error"] == f"the arm64 root has no onnxruntime: {reason}"


def test_debian_mirror_comes_from_the_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGERES_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    assert emulation.debian_mirror(tmp_path) == emulation.DEFAULT_MIRROR
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n")
    assert emulation.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("# local\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert emulation.debian_mirror(tmp_path) == "http://other.example/debian"
    monkeypatch.setenv("EDGERES_DEBIAN_MIRROR", "http://chosen.example/debian")
    assert emulation.debian_mirror(tmp_path) == "http://chosen.example/debian"


def test_emulation_needs_an_aarch64_profile(tmp_path):
    (tmp_path / "box.yaml").write_text("description: x\narch: x86_64\nconnection: {type: emulated, cpu: cortex-a72}\n"
                                       "runtimes: {tflite: {}}\n")
    with pytest.raises(EdgeresError, match="emulation.*needs arch: aarch64"):
        devices.load(tmp_path / "box.yaml")
    (tmp_path / "box.yaml").write_text("description: x\narch: aarch64\nconnection: {type: emulated, cpu: max}\n"
                                       "runtimes: {tflite: {}}\n")
    with pytest.raises(EdgeresError, match="connection.cpu"):
        devices.load(tmp_path / "box.yaml")
    with pytest.raises(EdgeresError, match="cannot be emulated"):
        devices.emulated(devices.get("cpu"))
