"""Device profiles: the shipped ones validate, bad ones fail with one clear line, lookups help the user;
plus the roofline estimate and the `edgeres devices` command."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from edgeres import devices
from edgeres.backends.estimate import estimate_latency_ms
from edgeres.errors import EdgeresError

SHIPPED = {"cpu", "gpu", "raspberrypi", "raspberrypi5", "jetson-orin-nano", "intel-npu", "coral-edgetpu",
           "qualcomm-npu"}
GOOD = textwrap.dedent("""\
    description: a test board
    arch: aarch64
    connection: {type: ssh, host: board.invalid, user: me}
    runtimes:
      onnxruntime: {provider: CPUExecutionProvider}
    """)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def test_every_shipped_profile_validates_with_sourced_figures():
    profiles = devices.load_all()
    assert SHIPPED <= set(profiles)
    for name, profile in profiles.items():
        assert profile.name == name and profile.description and profile.runtimes.names()
        if profile.connection.type == "ssh":
            assert profile.estimate is not None, name  # unreachable devices can still be estimated
        if profile.estimate is not None:
            for unit in profile.estimate.units.values():
                figures = unit.model_dump(exclude_none=True, exclude={"description", "compiled_for"})
                for figure in figures.values():
                    assert figure["value"] > 0 and len(figure["source"]) > 10
        assert profile.verified_on_hardware == (name == "cpu")  # the others have never run on their hardware
    assert profiles["raspberrypi"].connection.host == "raspberrypi.local"
    assert profiles["raspberrypi"].connection.user == "pi"
    assert profiles["intel-npu"].runtimes.openvino.device == "NPU"
    assert profiles["coral-edgetpu"].runtimes.tflite.delegate == "libedgetpu.so.1"
    assert profiles["qualcomm-npu"].runtimes.onnxruntime.provider == "QNNExecutionProvider"


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("user: me", "user: me, prot: 22"),
     ["connection.prot", "unknown key", "expected one of", "did you mean 'port'"]),
    (GOOD.replace("{provider: CPUExecutionProvider}", "{provder: X}"),
     ["runtimes.onnxruntime.provder", "did you mean 'provider'"]),
    (GOOD + "colour: red\n", ["unknown key 'colour'", "description, arch, connection"]),
    (GOOD.replace("user: me", "user: me, port: abc"), ["connection.port", "integer", "'abc'"]),
    (GOOD.replace("type: ssh", "type: telnet"), ["connection.type", "'local', 'ssh' or 'emulated'"]),
    (GOOD.replace("arch: aarch64\n", ""), ["missing key 'arch'"]),
    (GOOD.replace("  onnxruntime: {provider: CPUExecutionProvider}\n", "  {}\n"),
     ["runtimes: name at least one runtime"]),
    (GOOD + "estimate: {peak_fp32_gops: {value: 1}}\n", ["estimate.peak_fp32_gops.source", "missing key"]),
    (GOOD + "estimate: {peak_fp32_gops: {value: 1, source: a}, colour: red}\n",
     ["unknown key 'estimate.colour'", "peak_int8_gops"]),
    (GOOD + "estimate: {units: {cpu: {description: c, peak_fp32_gops: {value: 1, source: a}}}}\n",
     ["estimate.units.cpu.memory_bandwidth_gbs", "missing key"]),
    (GOOD + "estimate:\n  units: {cpu: {description: c, peak_fp32_gops: {value: 1, source: a}, memory_bandwidth_gbs: "
     "{value: 1, source: a}, compute_efficiency: {value: 0.5, source: a}}}\n  runs_on: {tflite: gpu}\n",
     ["runs_on['tflite'] names unit 'gpu'", "units: cpu"]),
    ("description: [oops\n", ["not valid YAML", "line"]),
    (GOOD + "arch: x86_64\n", ["key 'arch' is given twice", "line 6"]),
    (GOOD + "threads: 100000\n", ["threads", "1024"]),
    (GOOD + "estimate: {peak_fp32_gops: {value: 1, source: a}, memory_bandwidth_gbs: {value: .inf, source: a}, "
     "compute_efficiency: {value: 0.5, source: a}}\n", ["memory_bandwidth_gbs.value", "finite"]),
    (GOOD + "estimate: {peak_fp32_gops: {value: 1, source: a}, memory_bandwidth_gbs: {value: 1, source: a}, "
     "compute_efficiency: {value: .nan, source: a}}\n", ["compute_efficiency.value", "finite"]),
    ("- a list\n", ["mapping"]),
    (GOOD + "name: other\n", ["unknown key 'name'"]),
])
def test_malformed_profile_is_one_clear_line(tmp_path, text, expected):
    path = write(tmp_path, "board", text)
    with pytest.raises(EdgeresError) as info:
        devices.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in expected:
        assert fragment in message


def test_unknown_device_lists_the_known_and_suggests():
    with pytest.raises(EdgeresError) as info:
        devices.get("raspberypi")
    message = str(info.value)
    assert "unknown device 'raspberypi'" in message
    assert all(name in message for name in SHIPPED)
    assert "did you mean raspberrypi" in message


def test_user_profiles_add_and_override(tmp_path, monkeypatch):
    write(tmp_path, "cpu", GOOD.replace("a test board", "my own cpu"))
    write(tmp_path, "board", GOOD)
    assert devices.get("cpu", tmp_path).description == "my own cpu"
    monkeypatch.setenv(devices.ENV_DIR, str(tmp_path))
    assert devices.get("board").connection.host == "board.invalid"
    assert devices.get("raspberrypi").connection.user == "pi"
    assert devices.get(str(tmp_path / "board.yaml")).name == "board"
    with pytest.raises(EdgeresError, match="does not exist"):
        devices.load_all(tmp_path / "nope")
    with pytest.raises(EdgeresError, match="is not a directory"):
        devices.load_all(tmp_path / "board.yaml")


def test_a_profile_that_is_no_text_file_is_refused_unread(tmp_path):
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")  # would be read forever
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "bytes.yaml").write_bytes(GOOD.encode() + b"# \xff\n")
    (tmp_path / "big.yaml").write_text(GOOD + "#" * (2 << 20))
    for name, needle in [("zero", "not a regular file"), ("dir", "a directory"), ("bytes", "not UTF-8"),
                         ("big", "larger than")]:
        with pytest.raises(EdgeresError, match=needle):
            devices.load(tmp_path / f"{name}.yaml")


def test_threads_are_bounded_by_the_cores_of_the_device(tmp_path):
    import os

    pi = devices.get("raspberrypi")  # threads: 4, its cores
    devices.check_threads(pi, 16)
    with pytest.raises(EdgeresError, match="at most 16"):
        devices.check_threads(pi, 17)
    limit = devices.THREADS_PER_CORE * os.cpu_count()
    devices.check_threads(devices.get("cpu"), limit)
    with pytest.raises(EdgeresError, match=f"--threads 10000: at most {limit}"):
        devices.check_threads(devices.get("cpu"), 10000)
    local = devices.load(write(tmp_path, "many", GOOD.replace("{type: ssh, host: board.invalid, user: me}",
                                                              "{type: local}") + f"threads: {limit + 1}\n"))
    with pytest.raises(EdgeresError, match="threads in .*many.yaml"):
        devices.check_threads(local, None)


def test_runtime_options_from_profile_and_override():
    pi = devices.get("raspberrypi")
    assert devices.runtime_options(pi, "onnxruntime") == {
        "provider": "CPUExecutionProvider", "provider_options": {}, "threads": 4}
    assert devices.runtime_options(pi, "tflite", threads=2)["threads"] == 2
    with pytest.raises(EdgeresError, match="has no openvino runtime"):
        devices.runtime_options(pi, "openvino")


def test_usable_here():
    ok, reason = devices.usable(devices.get("cpu"), "onnxruntime")
    assert ok and "CPUExecutionProvider" in reason
    ok, reason = devices.usable(devices.get("intel-npu"))
    assert not ok and "NPU" in reason


def test_usable_ssh_checks_the_port(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = write(tmp_path, "closed", GOOD.replace("board.invalid", "127.0.0.1").replace(
        "user: me", f"user: me, port: {port}"))
    ok, reason = devices.usable(devices.load(closed))
    assert not ok and "refuses" in reason
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listening = write(tmp_path, "open", GOOD.replace("board.invalid", "127.0.0.1").replace(
            "user: me", f"user: me, port: {server.getsockname()[1]}"))
        assert devices.usable(devices.load(listening))[0]


def test_estimate_is_labelled_and_follows_the_roofline():
    pi5 = devices.get("raspberrypi5")
    resnet18 = {"macs": 1.82e9, "params": 11.7e6}
    fp32 = estimate_latency_ms(pi5, weight_bytes=None, precision="fp32", **resnet18)
    int8 = estimate_latency_ms(pi5, weight_bytes=None, precision="int8", **resnet18)
    assert fp32["label"] == int8["label"] == "estimated" and fp32["unit"] == "cpu"
    assert fp32["latency_ms"] == max(fp32["compute_ms"], fp32["memory_ms"])
    assert int8["latency_ms"] < fp32["latency_ms"]
    assert fp32["assumptions"] and "derived" in fp32["sources"]["peak_gops"]["source"]
    with pytest.raises(EdgeresError, match="no estimate figures"):
        estimate_latency_ms(devices.get("cpu"), 1e9, 1e6, None, "fp32")
    with pytest.raises(EdgeresError, match="precision"):
        estimate_latency_ms(pi5, 1e9, 1e6, None, "int4")


def test_each_row_is_priced_on_the_unit_that_runs_it():
    """Jetson: TFLite on its CPU, onnxruntime on its GPU. Qualcomm: only int8 on the NPU. Coral: only files
    that edgetpu_compiler compiled on the Edge TPU, everything else on the board's CPU (not at PCIe speed)."""
    jetson, qualcomm, coral = (devices.get(n).estimate for n in ("jetson-orin-nano", "qualcomm-npu", "coral-edgetpu"))
    assert [jetson.unit_for(r, "fp32") for r in ("onnxruntime", "tflite")] == ["gpu", "cpu"]
    assert [qualcomm.unit_for("onnxruntime", p) for p in ("fp32", "fp16", "int8")] == ["cpu", "cpu", "npu"]
    edgetpu = frozenset({"edgetpu"})
    assert [coral.unit_for("tflite", "int8"), coral.unit_for("tflite", "int8", edgetpu)] == ["cpu", "edgetpu"]
    resnet50 = (4.1e9, 25.6e6, 25.6e6)
    on_tpu = estimate_latency_ms(devices.get("coral-edgetpu"), *resnet50, "int8", unit="edgetpu")
    on_cpu = estimate_latency_ms(devices.get("coral-edgetpu"), *resnet50, "int8", unit="cpu")
    assert on_tpu["bound"] == "memory"  # the Edge TPU streams weights beyond 8 MB over PCIe
    assert on_cpu["bound"] == "compute" and on_cpu["latency_ms"] > on_tpu["latency_ms"]
    assert "Cortex-A53" in on_cpu["unit_description"] and "Edge TPU" in on_tpu["unit_description"]
    with pytest.raises(EdgeresError, match="has no peak_fp32_gops"):  # the Edge TPU computes in int8 only
        estimate_latency_ms(devices.get("coral-edgetpu"), *resnet50, "fp32", unit="edgetpu")
    tflite_cpu = estimate_latency_ms(devices.get("jetson-orin-nano"), 1.82e9, 11.7e6, None, "fp32", unit="cpu")
    onnx_gpu = estimate_latency_ms(devices.get("jetson-orin-nano"), 1.82e9, 11.7e6, None, "fp32", unit="gpu")
    assert tflite_cpu["sources"]["peak_gops"]["value"] == 144 and onnx_gpu["sources"]["peak_gops"]["value"] == 1280


def test_a_flat_estimate_of_an_older_profile_is_one_unit(tmp_path):
    flat = ("estimate:\n  peak_fp32_gops: {value: 10, source: s}\n  peak_int8_gops: {value: 40, source: s}\n"
            "  memory_bandwidth_gbs: {value: 5, source: s}\n  compute_efficiency: {value: 0.5, source: s}\n")
    profile = devices.load(write(tmp_path, "old", GOOD + flat))
    assert list(profile.estimate.units) == ["device"] and profile.estimate.unit_for("onnxruntime", "int8") == "device"
    result = estimate_latency_ms(profile, 1e9, 1e6, None, "fp16")  # no fp16 figure: the fp32 rate, said so
    assert result["compute_ms"] == pytest.approx(2 * 1e9 / (10e9 * 0.5) * 1e3)
    assert any("fp16 computed at its fp32 rate" in a for a in result["assumptions"])
    assert profile.verified_on_hardware is False  # a profile says it has run on its hardware, or it has not


def test_devices_command_lists_every_profile(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad, "broken", GOOD + "colour: red\n")
    result = run_cli("devices")
    assert result.returncode == 0, result.stderr
    for name in SHIPPED:
        assert name in result.stdout
    assert "usable here" in result.stdout and "not yet" in result.stdout  # profiles never run on their hardware
    result = run_cli("devices", "--devices-dir", str(bad))
    assert result.returncode == 1 and "unknown key 'colour'" in result.stderr
    assert "Traceback" not in result.stderr
