"""The lean install and the runtime registry: the core alone installs and does the core road; a missing extra
is one clear error with its pip command; pyproject's extras, ``edgeres.extras`` and the registry agree; the
runtimes package runs without the rest of edgeres (as on an ssh device)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from edgeres import extras
from edgeres.errors import EdgeresError
from edgeres.export.formats import FORMATS
from edgeres.runtimes import registry

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
HEAVY = ("tensorflow", "tf_keras", "onnx2tf", "openvino", "nncf", "torchao", "ai_edge_litert", "onnxruntime_qnn")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_each_extra_installs_the_modules_edgeres_checks_for():
    optional = PYPROJECT["optional-dependencies"]
    for extra, modules in extras.EXTRAS.items():
        declared = {_name(r) for r in optional[extra]}
        for module in modules:  # the distribution that provides each module is one the extra installs
            provided_by = {d.lower().replace("_", "-") for d in metadata.packages_distributions()[module]}
            assert provided_by & declared, f"{module} ({provided_by}) is not in edgeres[{extra}] ({declared})"
    assert optional["all"] == [f"edgeres[{','.join(extras.EXTRAS)}]"]
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    assert not core & {_name(r) for extra in extras.EXTRAS for r in optional[extra]}


def test_every_runtime_and_format_names_a_known_extra_and_a_session_module():
    suffixes = [s for r in registry.RUNTIMES.values() for s in r.suffixes]
    assert len(suffixes) == len(set(suffixes))
    for runtime in registry.RUNTIMES.values():
        assert runtime.extra is None or runtime.extra in extras.EXTRAS
        module = registry.session_module(runtime.name)
        assert callable(module.open_session) and callable(module.check)
    for fmt in FORMATS.values():
        assert registry.for_suffix(fmt.suffix).name == fmt.runtime
    assert registry.install_command("tflite") == extras.install_command("tflite") == "pip install 'edgeres[tflite]'"
    assert registry.device_label("tflite", {"delegate": None}) == "XNNPACK"
    assert registry.device_label("onnxruntime", {"provider": "QNNExecutionProvider"}) == "QNNExecutionProvider"


def test_a_missing_extra_is_one_error_with_its_install_command(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "tflite", ("tensorflow", "edgeres_no_such_module"))
    with pytest.raises(EdgeresError) as caught:
        extras.require("tflite", "TFLite export")
    assert "TFLite export needs the 'tflite' extra (edgeres_no_such_module not installed)" in str(caught.value)
    assert caught.value.hint == "pip install 'edgeres[tflite]'"
    extras.require("openvino", "OpenVINO export")  # installed here: no error


def test_the_runtimes_package_runs_without_edgeres(tmp_path):
    """As the ssh backend ships it: the ``runtimes`` folder beside a job, numpy and no edgeres."""
    shutil.copytree(REPO / "edgeres" / "runtimes", tmp_path / "runtimes", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.path.insert(0, '.'); from runtimes import registry, runner; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('edgeres', 'torch', 'pydantic')], 'heavy'; "
            "print(registry.not_installed('openvino')); print(runner.host_info()['versions']['numpy'])")
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "openvino is not installed (pip install openvino)"  # the plain package


# torch's CUDA build (5.3 GB with its libraries): linked into the core venv rather than copied
LINKED_DISTRIBUTIONS, LINKED_PREFIXES = {"torch", "torchvision", "triton"}, ("nvidia-", "cuda-")


def _link_torch(venv: Path) -> list[str]:
    """Links this environment's torch, torchvision and their CUDA libraries into ``venv``'s site-packages, so
    pip counts them installed and resolves and installs everything else the core asks for."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    linked = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"].lower()
        if name not in LINKED_DISTRIBUTIONS and not name.startswith(LINKED_PREFIXES):
            continue
        linked.append(name)
        for top in {f.parts[0] for f in dist.files or ()} - {".."}:  # "..": its scripts in bin/
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return linked


def _core_venv(tmp_path: Path) -> tuple[Path, float]:
    """A fresh venv holding edgeres's core only (a copy of the package, installed as a user would, but for
    torch's CUDA build, which is linked: see ``_link_torch``)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("edgeres", "devices"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    assert {"torch", "torchvision"} <= set(_link_torch(venv))
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           str(src)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv, time.perf_counter() - start


@pytest.mark.slow
def test_the_core_alone_installs_and_runs_the_core_road(tmp_path):
    venv, seconds = _core_venv(tmp_path)
    print(f"core install: {seconds:.0f} s")
    python = str(venv / "bin" / "python")
    absent = subprocess.run([python, "-c", "import importlib.util as u; print(*[m for m in %r if u.find_spec(m)])"
                             % (HEAVY,)], capture_output=True, text=True, check=True).stdout.split()
    assert absent == [], f"the core installed {absent}"

    env = {**os.environ, "EDGERES_WORKSPACE": str(tmp_path / "ws"), "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)

    def edgeres(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "edgeres"), *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)

    def clean_error(proc: subprocess.CompletedProcess, command: str) -> None:
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert command in proc.stderr, proc.stderr

    assert edgeres("--help").returncode == 0
    proc = edgeres("models")
    assert proc.returncode == 0 and "resnet18" in proc.stdout, proc.stderr
    assert edgeres("train", "resnet20", "--epochs", "0", "--eval-limit", "20").returncode == 0
    proc = edgeres("export", "--target", "onnx", "--precision", "fp32", "--verify-limit", "20")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "ws").glob("export-resnet20-*/model.onnx"))) == 1

    proc = edgeres("export", "--precision", "fp16", "--verify-limit", "20")  # --target all: what is installed
    assert proc.returncode == 0, proc.stderr
    assert "not exporting openvino (pip install 'edgeres[openvino]'), tflite (pip install 'edgeres[tflite]')" \
        in proc.stderr
    clean_error(edgeres("export", "--target", "tflite"), "pip install 'edgeres[tflite]'")
    clean_error(edgeres("quantize", "resnet20", "--int8"), "pip install 'edgeres[quantize]'")
    proc = edgeres("devices")
    assert proc.returncode == 0
    cpu = next(line for line in proc.stdout.splitlines() if line.startswith("cpu\t"))
    assert "openvino is not installed (pip install 'edgeres[openvino]')" in cpu
    assert "tflite is not installed (pip install 'edgeres[tflite]')" in cpu
