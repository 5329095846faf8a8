"""How long ``edgeres diagnose`` takes, and whether the runtimes' per-operator times add up.

    python benchmarks/diagnose.py [--workdir DIR] [--epochs 2] [--images 64]

ResNet-18 on Fashion-MNIST at 32x32 (edgeres's default preprocessing for it), PTQ int8 with the default 300
calibration images, exported to ONNX, OpenVINO IR and TFLite at int8 and fp32: taken as they are from
``--workdir``'s workspace (``ws``) when it holds them (the recorded run used the main recipe's artifacts:
13 epochs), else trained briefly here (``--epochs``) and made with the CLI. Then, through the real command
line, on ``--device`` (default: this machine; ``raspberrypi`` with no board: its qemu emulation), each run in
a fresh process and timed from the outside:

- ``edgeres diagnose --precision int8``: the three int8 files, every layer compared with the torch int8
  model and FP32, three keep-float trials, every file profiled operator by operator (the issue's < 2 min);
- ``edgeres diagnose --recover 0``: the six files, int8 beside fp32, without keep-float trials.

Placement on Qualcomm's HTP emulator is left out unless ``--placement`` (it emulates the NPU on this CPU).

From the second run's report, for each file: the runtime's own end-to-end p50 beside the p50 of its
per-operator sums, and their ratio (the issue asks for within 10 %). JSON to
benchmarks/results/diagnose.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import write  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def edgeres(workspace: Path, *args: str) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system, the process and its children) and the result."""
    env = dict(os.environ, EDGERES_WORKSPACE=str(workspace))
    start, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run([sys.executable, "-m", "edgeres", *args], capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if result.returncode != 0:
        sys.exit(f"edgeres {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--name", default="diagnose", help="results/NAME.json")
    parser.add_argument("--note", default="", help="What the machine was doing (recorded with the load average)")
    parser.add_argument("--device", default=None, help="Diagnose on this device profile (e.g. raspberrypi: its "
                        "emulation here when no board answers); default: this machine")
    parser.add_argument("--placement", action="store_true", help="Also place the int8 ONNX file on Qualcomm's HTP "
                        "emulator (minutes per ResNet-18 on x86; off by default)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgeres-bench-diagnose-"))
    ws = workdir / "ws"
    steps = {}
    if not list(ws.glob("export-*")):
        steps["train_s"], _, _ = edgeres(ws, "train", "resnet18", "--epochs", str(args.epochs))
        steps["quantize_s"], _, _ = edgeres(ws, "quantize", "resnet18", "--int8")
        steps["export_s"], _, _ = edgeres(ws, "export", "--target", "all", "--precision", "int8", "--precision",
                                          "fp32")
    runs = {}
    load_before = os.getloadavg()
    placement = () if args.placement else ("--no-placement",)
    for name, extra in (("int8_three_targets", ("--precision", "int8")),
                        ("int8_and_fp32_three_targets", ("--recover", "0"))):
        device = ("--device", args.device) if args.device else ()
        command = ["diagnose", "--images", str(args.images), *device, *placement, *extra]
        seconds, cpu, result = edgeres(ws, *command, "--json")
        document = json.loads(result.stdout)
        report = document["report"]
        runs[name] = {
            "args": command, "wall_s": round(seconds, 1), "cpu_s": round(cpu, 1), "inside_s": report["seconds"],
            "artifact": document["artifact"],
            "files": [{"file": f"{f['format']} {f['precision']}", "min_sqnr_db": f["min_sqnr_db"],
                       "logits_sqnr_db": f["layers"][-1]["sqnr_db"], "agreement": f["agreement"],
                       "culprits": f["culprits"], "seconds": f["seconds"],
                       "float_ops": (f.get("fallback") or {}).get("float_ops"),
                       **({"on_device": f["on_device"]} if f.get("on_device") else {})} for f in report["files"]],
            "latency": [{"file": f"{f['format']} {f['precision']}", "p50_ms": f["p50_ms"],
                         "ops_p50_ms": f.get("ops_p50_ms"), "coverage": f.get("coverage"),
                         "e2e_source": f["e2e_source"], "speedup_vs_fp32": f.get("speedup_vs_fp32"),
                         **({"unavailable": f["unavailable"]} if f.get("unavailable") else {})}
                        for f in report["latency"]["files"]],
            "latency_device": {k: report["latency"].get(k) for k in ("device", "where", "processor", "unavailable")},
            "cpu": report["latency"].get("cpu"),
            "quantization": {k: report["quantization"][0].get(k) for k in ("culprits", "recovery", "fix")},
        }
        print(f"{name}: {seconds:.1f} s", file=sys.stderr)
    root = next(ws.glob("train-resnet18-*"))
    trained = json.loads((root / "manifest.json").read_text())
    path = write(args.name, {"model": "resnet18", "data": "fashion-mnist (embedded), test split",
                              "device": args.device or "cpu (this machine)",
                              "checkpoint": {"artifact": trained["id"], "epochs": trained["config"].get("epochs"),
                                             "test_top1": trained["metrics"]["test"]["top1"]},
                              "input_size": 32, "threads": "runtime default (every core)", "images": args.images,
                              "setup": steps or "the workspace's own artifacts", "runs": runs,
                              "load_average_before": [round(v, 2) for v in load_before],
                              "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                              "niceness": os.nice(0),
                              "note": args.note or "cpu_s (user + system of the command and its children) is the "
                                                   "work itself; wall_s also holds any wait for a shared CPU"})
    print(path)


if __name__ == "__main__":
    main()
