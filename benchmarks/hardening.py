"""Bad inputs and concurrency against the real `edgeres` command: counted, each checked.

    python benchmarks/hardening.py [--keep DIR]

Builds a small workspace (resnet20, 3 epochs on 10,000 Fashion-MNIST images, int8, exported to all three
formats), then runs every bad input below as its own `edgeres` process and checks that it ends with a
non-zero exit, one clear message (the expected words), no traceback, and a workspace whose every
manifest still parses and matches its files' hashes, with no temp dir left. Then 20 `edgeres` processes
run at once on one workspace (10 train, 10 export) and the same checks are made on what they wrote.
Prints a Markdown table; JSON to benchmarks/out/hardening.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

EDGERES = [sys.executable, "-m", "edgeres"]


@dataclass
class Case:
    area: str
    what: str
    args: list[str]
    expect: str  # words the message must contain (case-insensitive)
    prepare: Callable[[Path], None] | None = None  # makes the bad file(s) in the case's directory


def edgeres(*args: str, workspace: Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGERES_WORKSPACE=str(workspace), COLUMNS="200")
    return subprocess.run([*EDGERES, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def check_workspace(root: Path) -> list[str]:
    """Problems in a workspace: unreadable manifests, files that do not match their hashes, temp dirs."""
    from edgeres.workspace import MANIFEST, sha256

    problems = []
    for entry in root.iterdir():
        if entry.name.startswith(".tmp-"):
            problems.append(f"temp dir left: {entry.name}")
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{entry.name}: manifest unreadable ({exc})")
            continue
        for name, digest in manifest.get("files", {}).items():
            if not (entry / name).is_file() or sha256(entry / name) != digest:
                problems.append(f"{entry.name}/{name}: missing or changed")
    return problems


# -- the workspace the cases run against ----------------------------------------------------------
def build_workspace(root: Path) -> dict[str, str]:
    """resnet20 trained briefly, quantized, exported; the ids the cases need."""
    from edgeres.workspace import Workspace

    steps = [("train", "resnet20", "--epochs", "3", "--limit", "10000", "--eval-limit", "200"),
             ("quantize", "resnet20", "--int8", "--calib-samples", "64", "--eval-limit", "200", "--val-limit", "200"),
             ("export", "--target", "all", "--precision", "fp32", "--precision", "int8", "--verify-limit", "100",
              "--calib-samples", "64")]
    for args in steps:
        proc = edgeres(*args, workspace=root)
        if proc.returncode != 0:
            raise SystemExit(f"building the workspace failed at `edgeres {' '.join(args)}`:\n{proc.stderr}")
    ws = Workspace(root)
    ids = {"train": ws.latest("train").id, "int8": ws.latest("quantize").id}
    for artifact in ws.artifacts("export"):
        ids[f"{artifact.manifest['format']}-{artifact.manifest['precision']}"] = artifact.id
    return ids


# -- the bad files ------------------------------------------------------------------------------------
class Evil:
    """A pickle that runs code when unpickled: it would create the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return make


def evil_pickle(d: Path) -> None:
    with open(d / "evil.pt", "wb") as fh:
        pickle.dump({"conv1.weight": Evil(d / "PWNED")}, fh)


def foreign_checkpoint(d: Path) -> None:
    import torch

    from edgeres import models
    torch.save(models.build("resnet32", 10, 1).state_dict(), d / "resnet32.pt")


def truncate_export(ws: Path, artifact: str, file_suffix: str, keep: float = 0.5) -> None:
    for path in (ws / artifact).glob(f"*{file_suffix}"):
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])


RECIPE = """name: {name}
model: {model}
dataset: {dataset}
steps:
{steps}
"""
GOOD_STEPS = "  train: {epochs: 1}\n  quantize: {}\n  export: {targets: [onnx]}\n  bench: {devices: [cpu]}"


def recipe(name="bad", model="resnet20", dataset="fashion-mnist", steps=GOOD_STEPS, extra="") -> str:
    return RECIPE.format(name=name, model=model, dataset=dataset, steps=steps) + extra


PROFILE = """description: test device
arch: {arch}
connection: {connection}
runtimes: {runtimes}
"""


def profile(connection="{type: local}", runtimes="{onnxruntime: {}}", arch="native", extra="") -> str:
    return PROFILE.format(connection=connection, runtimes=runtimes, arch=arch) + extra


def ssh(host="127.0.0.1", **more) -> str:
    fields = {"type": "ssh", "host": host, "user": "pi", "connect_timeout": 3, **more}
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()) + "}"


def cases(ids: dict[str, str]) -> list[Case]:
    t, q = ids["train"], ids["int8"]
    bench = ["bench", "--model", "resnet20", "--eval-limit", "20", "--min-runs", "1", "--min-seconds", "0",
             "--warmup", "0", "--rounds", "1"]
    return [
        # checkpoints
        Case("checkpoint", "malicious pickle as --weights (must not run)", ["train", "resnet20", "--epochs", "0",
             "--eval-limit", "10", "--weights", "evil.pt"], "arbitrary code", evil_pickle),
        Case("checkpoint", "truncated checkpoint", ["train", "resnet20", "--epochs", "0", "--eval-limit", "10",
             "--weights", "half.pt"], "corrupt", write("half.pt", b"PK\x03\x04" + b"\0" * 100)),
        Case("checkpoint", "empty checkpoint file", ["train", "resnet20", "--epochs", "0", "--weights", "empty.pt"],
             "corrupt", write("empty.pt", b"")),
        Case("checkpoint", "text file as checkpoint", ["quantize", "resnet20", "--int8", "--weights", "notes.pt"],
             "corrupt", write("notes.pt", "just some text\n")),
        Case("checkpoint", "checkpoint of another model", ["train", "resnet20", "--epochs", "0", "--weights",
             "resnet32.pt"], "does not fit", foreign_checkpoint),
        Case("checkpoint", "checkpoint path that does not exist", ["train", "resnet20", "--epochs", "0", "--weights",
             "nope.pt"], "nope.pt"),
        Case("checkpoint", "--weights imagenet for a CIFAR ResNet", ["train", "resnet20", "--epochs", "0",
             "--weights", "imagenet"], "imagenet"),
        Case("checkpoint", "--weights imagenet offline without the file", ["train", "resnet34", "--epochs", "0",
             "--weights", "imagenet"], "resnet34"),
        # recipes
        Case("recipe", "malformed YAML", ["run", "r.yaml"], "yaml", write("r.yaml", "name: [unclosed\n  model: x")),
        Case("recipe", "a list instead of a mapping", ["run", "r.yaml"], "mapping", write("r.yaml", "- a\n- b\n")),
        Case("recipe", "empty file", ["run", "r.yaml"], "r.yaml", write("r.yaml", "")),
        Case("recipe", "unknown top-level key", ["run", "r.yaml"], "unknown key",
             write("r.yaml", recipe(extra="colour: blue\n"))),
        Case("recipe", "unknown step", ["run", "r.yaml"], "unknown key",
             write("r.yaml", recipe(steps=GOOD_STEPS + "\n  deploy: {}"))),
        Case("recipe", "unknown export target", ["run", "r.yaml"], "targets",
             write("r.yaml", recipe(steps="  train: {}\n  quantize: {}\n  export: {targets: [coreml]}"))),
        Case("recipe", "int8 export without a quantize step", ["run", "r.yaml"], "no quantize step",
             write("r.yaml", recipe(steps="  train: {}\n  export: {precisions: [int8]}"))),
        Case("recipe", "bench without an export step", ["run", "r.yaml"], "needs an export",
             write("r.yaml", recipe(steps="  train: {}\n  bench: {}"))),
        Case("recipe", "device that runs none of the targets", ["run", "r.yaml"], "runs none",
             write("r.yaml", recipe(steps="  train: {}\n  quantize: {}\n  export: {targets: [openvino]}\n"
                                          "  bench: {devices: [raspberrypi]}"))),
        Case("recipe", "dataset missing on disk", ["run", "r.yaml"], "cifar",
             write("r.yaml", recipe(dataset="cifar10", extra="data: no-such-dir\n"))),
        Case("recipe", "wrong type (epochs: many)", ["run", "r.yaml"], "epochs",
             write("r.yaml", recipe(steps="  train: {epochs: many}"))),
        Case("recipe", "name escaping the workspace (../)", ["run", "r.yaml"], "name",
             write("r.yaml", recipe(name="../../etc/evil"))),
        Case("recipe", "YAML python tag (code execution attempt)", ["run", "r.yaml"], "r.yaml",
             write("r.yaml", "name: !!python/object/apply:os.system ['touch PWNED']\nmodel: resnet20\n")),
        Case("recipe", "unknown model", ["run", "r.yaml"], "resnet",
             write("r.yaml", recipe(model="resnet19"))),
        Case("recipe", "recipe file missing", ["run", "missing.yaml"], "missing.yaml"),
        Case("recipe", "--from an unknown step", ["run", "r.yaml", "--from", "deploy"], "deploy",
             write("r.yaml", recipe())),
        # device profiles
        Case("profile", "unknown device name", [*bench, "--device", "raspberry"], "raspberrypi"),
        Case("profile", "malformed profile YAML", [*bench, "--device", "p.yaml"], "yaml",
             write("p.yaml", "description: [x\n")),
        Case("profile", "unknown key in a profile", [*bench, "--device", "p.yaml"], "unknown",
             write("p.yaml", profile(extra="colour: red\n"))),
        Case("profile", "host that is an ssh option", [*bench, "--device", "p.yaml"], "connection.host",
             write("p.yaml", profile(connection=ssh(host="-oProxyCommand=touch PWNED"), arch="aarch64"))),
        Case("profile", "user with a space", [*bench, "--device", "p.yaml"], "connection.user",
             write("p.yaml", profile(connection=ssh(user="pi -l root")))),
        Case("profile", "workdir that is an option", [*bench, "--device", "p.yaml"], "connection.workdir",
             write("p.yaml", profile(connection=ssh(workdir="-rf")))),
        Case("profile", "no runtimes", [*bench, "--device", "p.yaml"], "runtime",
             write("p.yaml", profile(runtimes="{}"))),
        Case("profile", "an unknown runtime", [*bench, "--device", "p.yaml"], "tensorrt",
             write("p.yaml", profile(runtimes="{tensorrt: {}}"))),
        Case("profile", "compute efficiency above 1", [*bench, "--device", "p.yaml", "--estimate"], "fraction",
             write("p.yaml", profile(extra="estimate: {peak_fp32_gops: {value: 1, source: x}, peak_int8_gops: "
                                           "{value: 1, source: x}, memory_bandwidth_gbs: {value: 1, source: x}, "
                                           "compute_efficiency: {value: 3, source: x}}\n"))),
        Case("profile", "port out of range", [*bench, "--device", "p.yaml"], "port",
             write("p.yaml", profile(connection=ssh(port=70000)))),
        Case("profile", "YAML python tag in a profile", [*bench, "--device", "p.yaml"], "p.yaml",
             write("p.yaml", "description: !!python/object/apply:os.system ['touch PWNED']\n")),
        # ssh faults
        Case("ssh", "host that refuses connections", [*bench, "--device", "p.yaml", "--target", "onnx"],
             "refuses connections", write("p.yaml", profile(connection=ssh(port=1)))),
        Case("ssh", "host name that does not resolve", [*bench, "--device", "p.yaml", "--target", "onnx"],
             "does not resolve", write("p.yaml", profile(connection=ssh(host="no-such-device.invalid")))),
        Case("ssh", "key file that does not exist", [*bench, "--device", "p.yaml", "--target", "onnx"],
             "does not exist", write("p.yaml", profile(connection=ssh(key="/no/such/key")))),
        Case("ssh", "host that never answers (blackhole address)", [*bench, "--device", "p.yaml", "--target", "onnx"],
             "timed out", write("p.yaml", profile(connection=ssh(host="10.255.255.1", connect_timeout=2)))),
        # model files
        Case("model file", "truncated ONNX to bench", [*bench, "--target", "onnx", "--precision", "fp32"],
             "cannot load", lambda d: truncate_export(d / "ws", ids["onnx-fp32"], ".onnx")),
        Case("model file", "truncated OpenVINO .bin to bench", [*bench, "--target", "openvino", "--precision",
             "fp32"], "cannot load", lambda d: truncate_export(d / "ws", ids["openvino-fp32"], ".bin")),
        Case("model file", "truncated OpenVINO .xml to bench", [*bench, "--target", "openvino", "--precision",
             "int8"], "cannot load", lambda d: truncate_export(d / "ws", ids["openvino-int8"], ".xml", 0.3)),
        Case("model file", "truncated TFLite to bench", [*bench, "--target", "tflite", "--precision", "int8"],
             "cannot load", lambda d: truncate_export(d / "ws", ids["tflite-int8"], ".tflite")),
        Case("model file", "garbage as the torch model of an artifact", ["export", "--target", "onnx", "--model", t],
             "corrupt", write(f"ws/{t}/model.pt", b"\x80\x04garbage")),
        Case("model file", "info on a directory that is not an artifact", ["info", "no-such-artifact"],
             "no artifact"),
        # CLI options
        Case("cli", "unknown model name", ["train", "resnet19"], "resnet18"),
        Case("cli", "unknown export target", ["export", "--target", "coreml"], "coreml"),
        Case("cli", "unknown precision", ["export", "--target", "onnx", "--precision", "int4"], "int4"),
        Case("cli", "an option the target does not have", ["export", "--target", "onnx", "--io", "int8"], "io"),
        Case("cli", "an unknown TFLite io type", ["export", "--target", "tflite", "--io", "int16"], "int16"),
        Case("cli", "a precision the target cannot do", ["export", "--target", "onnx", "--precision", "int4"],
             "int4"),
        Case("cli", "quantize without --int8", ["quantize", "resnet20"], "--int8"),
        Case("cli", "unsupported quantize precision", ["quantize", "resnet20", "--precision", "int4"], "int4"),
        Case("cli", "calibration samples 0", ["quantize", "resnet20", "--int8", "--calib-samples", "0"],
             "calib"),
        Case("cli", "unknown range estimator", ["quantize", "resnet20", "--int8", "--estimator", "entropyy"],
             "entropyy"),
        Case("cli", "prune ratio above 1", ["prune", "resnet20", "--ratio", "1.5"], "ratio"),
        Case("cli", "prune ratio 0", ["prune", "resnet20", "--ratio", "0"], "ratio"),
        Case("cli", "prune an int8 artifact", ["prune", q, "--ratio", "0.3"], "before quantiz"),
        Case("cli", "bench --eval-limit 0", ["bench", "--eval-limit", "0"], "eval-limit"),
        Case("cli", "train --epochs -1", ["train", "resnet20", "--epochs", "-1"], "epochs"),
        Case("cli", "unknown dataset", ["train", "resnet20", "--dataset", "mnist"], "mnist"),
        Case("cli", "dataset directory missing", ["train", "resnet20", "--data", "no-such-dir", "--dataset",
             "imagefolder"], "no-such-dir"),
        Case("cli", "export --output that exists, without --force", ["export", "--target", "onnx", "--precision",
             "fp32", "--model", t, "--no-verify", "--output", "out"], "--force", write("out/resnet20-fp32.onnx", "x")),
        Case("cli", "workspace that is a file", ["info", "--workspace", "wsfile"], "wsfile", write("wsfile", "x")),
        Case("cli", "unknown option", ["export", "--colour", "red"], "--colour"),
        Case("cli", "unknown command", ["deploy"], "deploy"),
    ]


def run_case(case: Case, base: Path, index: int) -> dict:
    d = base / f"case-{index:02d}"
    shutil.copytree(base / "ws", d / "ws", symlinks=True)
    if case.prepare:
        case.prepare(d)
    before = sorted(p.name for p in (d / "ws").iterdir())
    start = time.perf_counter()
    proc = edgeres(*case.args, workspace=d / "ws", cwd=d, timeout=300)
    text = proc.stdout + proc.stderr
    after = sorted(p.name for p in (d / "ws").iterdir())
    problems = []
    if proc.returncode == 0:
        problems.append("exit code 0")
    if "Traceback" in text:
        problems.append("traceback")
    if case.expect.lower() not in text.lower():
        problems.append(f"message lacks {case.expect!r}")
    if (d / "PWNED").exists():
        problems.append("CODE WAS EXECUTED")
    broken = [p for p in check_workspace(d / "ws") if not case.area == "model file" or "changed" not in p]
    problems += broken
    new = [name for name in after if name not in before and not name.startswith(".")]
    lines = [line.strip(" │╭╰─\u2500") for line in proc.stderr.splitlines()]  # Typer boxes usage errors
    message = next((line for line in lines if "rror" in line and len(line) > 8), "") or \
        next((line for line in lines if line and "Usage" not in line and "Try" not in line), text.strip()[-200:])
    return {"area": case.area, "what": case.what, "args": case.args, "exit": proc.returncode,
            "ok": not problems, "problems": problems, "message": message[:300], "new_artifacts": new,
            "seconds": round(time.perf_counter() - start, 1)}


def concurrent(base: Path, train_id: str, n: int = 20) -> dict:
    """n `edgeres` processes at once on one workspace: half train, half export."""
    ws = base / "concurrent"
    shutil.copytree(base / "ws", ws)
    before = {p.name for p in ws.iterdir()}
    jobs = [("train", "resnet20", "--epochs", "0", "--eval-limit", "50") if i % 2 == 0 else
            ("export", "--target", "onnx", "--precision", "fp32", "--model", train_id, "--no-verify")
            for i in range(n)]
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        procs = list(pool.map(lambda args: edgeres(*args, workspace=ws, timeout=900), jobs))
    wall = time.perf_counter() - start
    created = [p for p in ws.iterdir() if p.name not in before and not p.name.startswith(".")]
    return {"processes": n, "exit_codes": [p.returncode for p in procs], "new_artifacts": len(created),
            "problems": check_workspace(ws), "wall_seconds": round(wall, 1),
            "tracebacks": sum("Traceback" in p.stderr for p in procs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build and keep the work directories here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="edgeres-hardening-"))
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "ws").is_dir():
        print("building the workspace (resnet20, 3 epochs, int8, 3 exports) ...", file=sys.stderr)
        ids = build_workspace(base / "ws")
        (base / "ids.json").write_text(json.dumps(ids))
    ids = json.loads((base / "ids.json").read_text())
    all_cases = cases(ids)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda ic: run_case(ic[1], base, ic[0]), enumerate(all_cases)))
    many = concurrent(base, ids["train"])
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "hardening.json").write_text(json.dumps({"cases": results, "concurrent": many}, indent=2))

    print("| # | area | bad input | exit | message (first error line) | ok |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        ok = "yes" if r["ok"] else "**NO**: " + "; ".join(r["problems"])
        print(f"| {i} | {r['area']} | {r['what']} | {r['exit']} | {r['message'].replace('|', '/')[:140]} | {ok} |")
    passed = sum(r["ok"] for r in results)
    print(f"\n{passed} of {len(results)} bad inputs handled cleanly "
          f"({sum('traceback' in r['problems'] for r in results)} tracebacks, "
          f"{sum(any('manifest' in p or 'changed' in p or 'temp' in p for p in r['problems']) for r in results)} "
          "corrupt workspaces).")
    print(f"{many['processes']} concurrent edgeres processes: exit codes {sorted(set(many['exit_codes']))}, "
          f"{many['new_artifacts']} new artifacts, {len(many['problems'])} problems, {many['tracebacks']} "
          f"tracebacks, {many['wall_seconds']} s wall")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
