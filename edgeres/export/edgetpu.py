"""Compile a full-integer int8 TFLite file for the Coral Edge TPU with Coral's ``edgetpu_compiler``.

The compiler maps the operators the Edge TPU supports into its custom operator (``edgetpu-custom-op``);
the rest stay TFLite operators, which run on the board's CPU. The compiled file runs only with the Edge
TPU delegate, so export verifies the file it was compiled from (the same int8 weights and scales: the
compiler maps operators, it does not requantize) and records what the compiler mapped and its log.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgeres.errors import EdgeresError, first_line

COMPILER = "edgetpu_compiler"
TIMEOUT_S = 900
INSTALL_HINT = ("install Coral's compiler (x86-64 Debian/Ubuntu): add the apt source `deb "
                "https://packages.cloud.google.com/apt coral-edgetpu-stable main` with its key "
                "(https://coral.ai/docs/edgetpu/compiler/), then `apt-get install edgetpu-compiler`")


def require() -> str:
    """The compiler's path; an error saying how to install it when it is not on PATH."""
    exe = shutil.which(COMPILER)
    if exe is None:
        raise EdgeresError(f"{COMPILER} is not on PATH: compiling for the Edge TPU needs it", hint=INSTALL_HINT)
    return exe


def compile_file(path: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``path`` compiled into ``out_dir`` (``<stem>_edgetpu.tflite``), and what the compiler reported:
    its version, the operators it mapped and those left to the CPU (from the file itself), its log."""
    from edgeres.backends.placement import EDGETPU_OP, edgetpu_offload, tflite_ops

    exe = require()
    if EDGETPU_OP in (tflite_ops(path) or ()):
        raise EdgeresError(f"{path.name} is already compiled for the Edge TPU")
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
        done = subprocess.run([exe, "--show_operations", "--out_dir", str(out_dir), str(path)],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EdgeresError(f"{COMPILER} did not finish within {TIMEOUT_S} s") from None
    except OSError as exc:
        raise EdgeresError(f"{COMPILER} could not be run: {first_line(exc)}", hint=INSTALL_HINT) from None
    output = (done.stdout + done.stderr).strip()
    compiled = out_dir / f"{path.stem}_edgetpu.tflite"
    if done.returncode != 0 or not compiled.is_file():
        why = f"exit {done.returncode}" if done.returncode else f"it wrote no {compiled.name}"
        raise EdgeresError(f"{COMPILER} failed ({why}): {_last_lines(output)}")
    offload = edgetpu_offload(compiled)
    if not offload or not offload["subgraphs"]:
        raise EdgeresError(f"{COMPILER} mapped no operator to the Edge TPU: the whole model would run on the "
                           f"board's CPU ({_last_lines(output)})",
                           hint="the Edge TPU takes full-integer int8 files: --precision int8 --io int8")
    log = compiled.with_suffix(".log")
    return compiled, {"compiler": re.sub(r"^Edge TPU Compiler version\s*", "", version) or "unknown",
                      "offload": offload, "log": log.read_text(errors="replace") if log.is_file() else output}


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no output"
