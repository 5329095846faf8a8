"""The CLI as a user runs it: fast help, clear errors without tracebacks, Ctrl-C, an end-to-end run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import torch

from conftest import interruptible, run_cli


def assert_clean_error(result, *needles: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_help_does_not_import_heavy_runtimes():
    code = ("import sys\nfrom edgeres.cli.app import main\nsys.argv = ['edgeres', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'tensorflow', 'openvino', 'onnxruntime') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stdout
    for command in ("train", "quantize", "export", "models", "info", "eval"):
        assert command in result.stdout


def test_models_lists_the_zoo():
    result = run_cli("models", "resnet2*")
    assert result.returncode == 0 and "resnet20" in result.stdout and "resnet18" not in result.stdout


def test_unknown_model(tmp_path):
    assert_clean_error(run_cli("train", "resnet19", workspace=tmp_path), "unknown model", "resnet18")


def test_missing_dataset(tmp_path):
    assert_clean_error(run_cli("train", "resnet20", "--data", str(tmp_path / "none"), workspace=tmp_path),
                       "apt-get install dataset-fashion-mnist")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    assert_clean_error(run_cli("train", "resnet20", "--epochs", "0", "--weights", str(tmp_path / "bad.pt"),
                               workspace=tmp_path / "ws"), "corrupt")
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_checkpoint_of_another_shape(tmp_path):
    from edgeres import models

    torch.save(models.build("resnet32", 10, 1).state_dict(), tmp_path / "r32.pt")
    assert_clean_error(run_cli("train", "resnet20", "--epochs", "0", "--weights", str(tmp_path / "r32.pt"),
                               workspace=tmp_path / "ws"), "unexpected keys", "layer1.3")


def test_workspace_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_clean_error(run_cli("train", "resnet20", "--epochs", "0", "--eval-limit", "10",
                               "--workspace", str(tmp_path / "file")), "not writable")


def test_ctrl_c_during_training_keeps_nothing(tmp_path):
    import os

    env = dict(os.environ, EDGERES_WORKSPACE=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "edgeres", "train", "resnet18", "--epochs", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=interruptible)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith((".tmp-", ".pending-")) for p in tmp_path.iterdir()):
        time.sleep(0.5)
    time.sleep(3)  # well into the first epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_train_eval_info_end_to_end(tmp_path):
    result = run_cli("train", "resnet20", "--epochs", "1", "--limit", "1500", "--eval-limit", "300",
                     workspace=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test top-1" in result.stderr
    result = run_cli("eval", "resnet20", "--eval-limit", "300", workspace=tmp_path)
    assert result.returncode == 0 and "top-1" in result.stdout and "(300 test images)" in result.stdout
    info = run_cli("info", workspace=tmp_path)
    assert "resnet20" in info.stdout and "train" in info.stdout


def test_closed_choices_are_checked_as_the_command_is_parsed(tmp_path):
    """An unknown target, precision or TFLite io type is refused before any work, with the choices."""
    for args, word in ((["export", "--target", "coreml"], "coreml"), (["export", "--precision", "int4"], "int4"),
                       (["export", "--io", "int16"], "int16"), (["bench", "--target", "tensorrt"], "tensorrt")):
        result = run_cli(*args, workspace=tmp_path / "ws")
        assert result.returncode == 2 and word in result.stderr and "is not one of" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "ws").exists()
    help_text = run_cli("export", "--help").stdout
    assert "onnx|openvino|tflite|all" in help_text.replace("\n", "").replace(" ", "").replace("│", "")
