"""Bad inputs and concurrency against the real `edgeres` command: counted, each checked.

    python benchmarks/hardening.py [--keep DIR] [--only TEXT]

Builds a small workspace (resnet20, 3 epochs on 10,000 Fashion-MNIST images, int8, exported to all three
formats, its ONNX files benchmarked), then runs every bad input below as its own `edgeres` process and
checks that it ends with a non-zero exit, one clear message (the expected words), no traceback, and a
workspace the command left no worse: no manifest or file damaged beyond what the case itself damaged, no
temp dir left. Then 20 `edgeres` processes run at once on one workspace (10 train, 10 export) and the
same checks are made on what they wrote.
Prints a Markdown table; a small JSON (each case's area, input, exit and verdict, the totals, the machine)
to benchmarks/results/hardening.json. ``--only TEXT`` runs the matching cases alone (no JSON).
"""

from __future__ import annotations

import argparse
import gzip
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
    env: dict[str, str] | None = None  # more environment (paths relative to the case's directory)


def edgeres(*args: str, workspace: Path, cwd: Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGERES_WORKSPACE=str(workspace), COLUMNS="200", **(env or {}))
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
        except (OSError, ValueError, RecursionError) as exc:
            problems.append(f"{entry.name}: manifest unreadable ({str(exc)[:100]})")
            continue
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict):
            problems.append(f"{entry.name}: manifest has no files")
            continue
        for name, digest in files.items():
            try:
                intact = (entry / name).is_file() and sha256(entry / name) == digest
            except OSError:
                intact = False
            if not intact:
                problems.append(f"{entry.name}/{name}: missing or changed")
    return problems


# -- the workspace the cases run against ----------------------------------------------------------
def build_workspace(root: Path) -> dict[str, str]:
    """resnet20 trained briefly, quantized, exported, benchmarked; the ids the cases need."""
    from edgeres.workspace import Workspace

    steps = [("train", "resnet20", "--epochs", "3", "--limit", "10000", "--eval-limit", "200"),
             ("quantize", "resnet20", "--int8", "--calib-samples", "64", "--eval-limit", "200", "--val-limit", "200"),
             ("export", "--target", "all", "--precision", "fp32", "--precision", "int8", "--verify-limit", "100",
              "--calib-samples", "64"),
             ("bench", "--target", "onnx", "--eval-limit", "50", "--min-runs", "2", "--min-seconds", "0", "--warmup",
              "0", "--rounds", "1")]
    for args in steps:
        proc = edgeres(*args, workspace=root)
        if proc.returncode != 0:
            raise SystemExit(f"building the workspace failed at `edgeres {' '.join(args)}`:\n{proc.stderr}")
    ws = Workspace(root)
    ids = {"train": ws.latest("train").id, "int8": ws.latest("quantize").id, "bench": ws.latest("bench").id}
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


def edit_manifest(artifact: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """An artifact's manifest.json edited as a hand would: ``change`` edits the dict (or returns another value)."""
    def make(d: Path) -> None:
        path = d / "ws" / artifact / "manifest.json"
        manifest = json.loads(path.read_text())
        changed = change(manifest)
        path.write_text(json.dumps(manifest if changed is None else changed, indent=2))
    return make


def manifest_bytes(artifact: str, content: Callable[[str], str | bytes]) -> Callable[[Path], None]:
    """An artifact's manifest.json replaced by ``content(old text)``."""
    def make(d: Path) -> None:
        path = d / "ws" / artifact / "manifest.json"
        new = content(path.read_text())
        (path.write_bytes if isinstance(new, bytes) else path.write_text)(new)
    return make


def flip_bit(artifact: str, name: str, keep_mtime: bool = False) -> Callable[[Path], None]:
    """One bit of an artifact's file flipped (with ``keep_mtime``, its mtime set back, as a careful tamperer would)."""
    def make(d: Path) -> None:
        path = d / "ws" / artifact / name
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
        if keep_mtime:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return make


def copy_over(source: str, target: str, name: str) -> Callable[[Path], None]:
    """``name`` of artifact ``target`` replaced by that of ``source`` (the fp32 file in place of the int8 one)."""
    return lambda d: shutil.copy(d / "ws" / source / name, d / "ws" / target / name)


def remove(artifact: str, name: str) -> Callable[[Path], None]:
    return lambda d: (d / "ws" / artifact / name).unlink()


def consistent(artifact: str, name: str, content: Callable[[Path], str | bytes]) -> Callable[[Path], None]:
    """A careful hand edit: ``name`` rewritten and its new hash recorded in the manifest, so that only the
    content itself can be wrong."""
    from edgeres.workspace import sha256

    def make(d: Path) -> None:
        folder = d / "ws" / artifact
        new = content(folder / name)
        (folder / name).write_bytes(new if isinstance(new, bytes) else new.encode())
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"][name] = sha256(folder / name)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return make


def edit_json(change: Callable[[dict], object]) -> Callable[[Path], str]:
    """For ``consistent``: the file's JSON edited by ``change`` (in place, or returning another value)."""
    def content(path: Path) -> str:
        doc = json.loads(path.read_text())
        changed = change(doc)
        return json.dumps(doc if changed is None else changed)
    return content


def nan_weights(path: Path) -> bytes:
    """For ``consistent``: the checkpoint with every floating-point tensor NaN."""
    import io

    import torch

    state = torch.load(path, weights_only=True)
    buffer = io.BytesIO()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, buffer)
    return buffer.getvalue()


def renamed_copy(artifact: str, new_id: str) -> Callable[[Path], None]:
    """A copy of an artifact under another id (directory and manifest agree)."""
    def make(d: Path) -> None:
        shutil.copytree(d / "ws" / artifact, d / "ws" / new_id)
        edit_manifest(new_id, lambda m: m.update(id=new_id))(d)
    return make


def both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        for maker in makers:
            maker(d)
    return make


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
             "model.onnx of artifact", lambda d: truncate_export(d / "ws", ids["onnx-fp32"], ".onnx")),
        Case("model file", "truncated OpenVINO .bin to bench", [*bench, "--target", "openvino", "--precision",
             "fp32"], "model.bin of artifact", lambda d: truncate_export(d / "ws", ids["openvino-fp32"], ".bin")),
        Case("model file", "truncated OpenVINO .xml to bench", [*bench, "--target", "openvino", "--precision",
             "int8"], "model.xml of artifact", lambda d: truncate_export(d / "ws", ids["openvino-int8"], ".xml", 0.3)),
        Case("model file", "truncated TFLite to bench", [*bench, "--target", "tflite", "--precision", "int8"],
             "model.tflite of artifact", lambda d: truncate_export(d / "ws", ids["tflite-int8"], ".tflite")),
        Case("model file", "garbage as the torch model of an artifact", ["export", "--target", "onnx", "--model", t],
             "model.pt of artifact", write(f"ws/{t}/model.pt", b"\x80\x04garbage")),
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
        Case("cli", "an empty --model", ["export", "--target", "onnx", "--model", ""], "empty"),
        Case("cli", "an empty artifact to eval", ["eval", ""], "empty"),
        Case("cli", "a prefix that matches many artifacts", ["export", "--target", "onnx", "--model", "export-"],
             "matches"),
        Case("cli", "an artifact path from another workspace", ["info", f"other/{t}"], "--workspace",
             lambda d: shutil.copytree(d / "ws" / t, d / "other" / t)),
        # manifests: untrusted input, validated on read; a bad one is named where it is needed
        *manifest_cases(ids),
        # file integrity: each file is checked against the manifest's sha256 before use
        Case("integrity", "int8 .onnx replaced by the fp32 one", [*bench, "--target", "onnx", "--precision", "int8"],
             "model.onnx of artifact", copy_over(ids["onnx-fp32"], ids["onnx-int8"], "model.onnx")),
        Case("integrity", "int8 .tflite replaced by the fp32 one", [*bench, "--target", "tflite", "--precision",
             "int8"], "model.tflite of artifact", copy_over(ids["tflite-fp32"], ids["tflite-int8"], "model.tflite")),
        Case("integrity", "OpenVINO .bin of int8 replaced by the fp32 one", [*bench, "--target", "openvino",
             "--precision", "int8"], "model.bin of artifact",
             copy_over(ids["openvino-fp32"], ids["openvino-int8"], "model.bin")),
        Case("integrity", "OpenVINO .bin deleted", [*bench, "--target", "openvino", "--precision", "fp32"],
             "model.bin of artifact", remove(ids["openvino-fp32"], "model.bin")),
        Case("integrity", "bit-flipped model.pt to export", ["export", "--target", "onnx", "--precision", "fp32",
             "--model", t], "model.pt of artifact", flip_bit(t, "model.pt")),
        Case("integrity", "bit-flipped model.pt to quantize", ["quantize", t, "--int8", "--calib-samples", "16"],
             "model.pt of artifact", flip_bit(t, "model.pt")),
        Case("integrity", "bit-flipped model.pt to eval", ["eval", t, "--eval-limit", "10"], "model.pt of artifact",
             flip_bit(t, "model.pt")),
        Case("integrity", "bit-flipped model.pt, mtime set back", ["eval", t, "--eval-limit", "10"],
             "model.pt of artifact", flip_bit(t, "model.pt", keep_mtime=True)),
        Case("integrity", "bit-flipped model.pt as the bench baseline", [*bench, "--target", "onnx", "--precision",
             "fp32"], "model.pt of artifact", flip_bit(t, "model.pt")),
        Case("integrity", "bit-flipped int8 model.pt to export", ["export", "--target", "onnx", "--precision", "int8",
             "--model", q], "model.pt of artifact", flip_bit(q, "model.pt")),
        Case("integrity", "quantizers.json edited", ["eval", q, "--eval-limit", "10"], "quantizers.json of artifact",
             flip_bit(q, "quantizers.json")),
        Case("integrity", "model.pt deleted", ["export", "--target", "onnx", "--precision", "fp32", "--model", t],
             "missing", remove(t, "model.pt")),
        Case("integrity", "model.pt emptied", ["eval", t, "--eval-limit", "10"], "model.pt of artifact",
             write(f"ws/{t}/model.pt", b"")),
        Case("integrity", "model.pt a link to a copy outside", ["eval", t, "--eval-limit", "10"], "outside",
             lambda d: (shutil.copy(d / "ws" / t / "model.pt", d / "copy.pt"), (d / "ws" / t / "model.pt").unlink(),
                        (d / "ws" / t / "model.pt").symlink_to(d / "copy.pt"))),
        Case("integrity", "model.pt a directory", ["eval", t, "--eval-limit", "10"], "missing",
             lambda d: ((d / "ws" / t / "model.pt").unlink(), (d / "ws" / t / "model.pt").mkdir())),
        Case("integrity", "results.json bit-flipped", ["report", ids["bench"]], "results.json of artifact",
             flip_bit(ids["bench"], "results.json")),
        Case("integrity", "results.json deleted", ["report", ids["bench"]], "results.json of artifact",
             remove(ids["bench"], "results.json")),
        # numbers: NaN and infinity never pass
        Case("numbers", "NaN weights, consistently recorded, to export", ["export", "--target", "onnx", "--precision",
             "fp32", "--model", t, "--verify-limit", "20"], "nan", consistent(t, "model.pt", nan_weights)),
        Case("numbers", "--max-drop nan --strict", ["quantize", t, "--int8", "--max-drop", "nan", "--strict",
             "--calib-samples", "16", "--eval-limit", "20", "--val-limit", "20"], "nan"),
        # saved bench results, edited consistently (hash re-recorded): report draws them or names the file
        *results_cases(ids["bench"]),
        Case("report", "report of a train artifact", ["report", t], "not a bench artifact"),
        Case("report", "report in a workspace without benches", ["report"], "no bench artifact",
             lambda d: shutil.rmtree(d / "ws" / ids["bench"])),
        Case("report", "report files that cannot be re-written", ["report"], "could not re-write",
             lambda d: ((d / "ws" / ids["bench"] / "results.csv").unlink(),
                        (d / "ws" / ids["bench"] / "results.csv").mkdir())),
        # user text is never markup
        Case("markup", "[/x] as --model", ["export", "--target", "onnx", "--model", "[/x]"], "'[/x]'"),
        Case("markup", "[red] in a model name", ["quantize", "[red]x[/red]", "--int8"], "[red]x[/red]"),
        Case("markup", ":smile: as a model name", ["train", ":smile:"], ":smile:"),
        Case("markup", "[/x] in the workspace path", ["report", "--workspace", "w[red]s[/x]"], "w[red]s[/x]"),
        Case("markup", "[bold] in an artifact id", [*bench, "--model", "train-[bold]x-1"], "train-[bold]x-1",
             renamed_copy(t, "train-[bold]x-1")),
        Case("markup", "[/x] in a device name", [*bench, "--device", "pi[/x]"], "pi[/x]"),
        Case("markup", "[red] in a recipe path", ["run", "[red]r.yaml"], "[red]r.yaml"),
        *dataset_cases(),
        *number_cases(ids),
        *more_manifest_cases(ids),
        *more_results_cases(ids["bench"]),
        *more_recipe_cases(),
        *more_profile_cases(),
        *workspace_cases(ids),
        *more_cli_cases(ids),
    ]


def manifest_cases(ids: dict[str, str]) -> list[Case]:
    """Malformed manifests, each met by a command that needs that artifact."""
    t, q, onnx8 = ids["train"], ids["int8"], ids["onnx-int8"]
    bench = ["bench", "--model", "resnet20", "--eval-limit", "20", "--min-runs", "1", "--min-seconds", "0",
             "--warmup", "0", "--rounds", "1"]
    export_fp32 = ["export", "--target", "onnx", "--precision", "fp32", "--verify-limit", "20", "--model"]
    return [
        Case("manifest", "numeric created", ["info", t], "created", edit_manifest(t, lambda m: m.update(created=1))),
        Case("manifest", "created not a date", ["eval", t], "created",
             edit_manifest(t, lambda m: m.update(created="yesterday"))),
        Case("manifest", "a list", [*export_fp32, t], "JSON list", edit_manifest(t, lambda m: [m])),
        Case("manifest", "a string", ["eval", t], "JSON str", edit_manifest(t, lambda m: "train")),
        Case("manifest", "no kind", ["quantize", t, "--int8"], "kind",
             edit_manifest(t, lambda m: m.pop("kind") and None)),
        Case("manifest", "unknown kind", ["info", t], "kind", edit_manifest(t, lambda m: m.update(kind="deploy"))),
        Case("manifest", "no files", ["info", t], "files", edit_manifest(t, lambda m: m.pop("files") and None)),
        Case("manifest", "no model", ["eval", t], "model", edit_manifest(t, lambda m: m.pop("model") and None)),
        Case("manifest", "truncated JSON", ["info", t], "not valid JSON", manifest_bytes(t, lambda text: text[:200])),
        Case("manifest", "empty manifest", ["eval", t], "not valid JSON", manifest_bytes(t, lambda text: "")),
        Case("manifest", "not UTF-8", ["info", t], "not valid JSON", manifest_bytes(t, lambda text: b"\xff\xfe{}")),
        Case("manifest", "100,000 nested lists", ["info", t], "not valid JSON",
             manifest_bytes(t, lambda text: "[" * 100_000 + "]" * 100_000)),
        Case("manifest", "NaN in metrics", ["info", q], "NaN",
             manifest_bytes(q, lambda text: text.replace('"metrics": {', '"metrics": {"x": NaN, ', 1))),
        Case("manifest", "1e999 in metrics", ["export", "--target", "onnx", "--precision", "int8", "--model", q],
             "inf", manifest_bytes(q, lambda text: text.replace('"metrics": {', '"metrics": {"x": 1e999, ', 1))),
        Case("manifest", "a 70 MB manifest", ["info", t], "larger than",
             manifest_bytes(t, lambda text: text[:-2] + ', "pad": "' + "x" * (70 << 20) + '"}')),
        Case("manifest", "manifest.json a directory", ["info", t], "manifest.json",
             lambda d: ((d / "ws" / t / "manifest.json").unlink(), (d / "ws" / t / "manifest.json").mkdir())),
        Case("manifest", "manifest.json a link to /etc/passwd", ["info", t], "not valid JSON",
             lambda d: ((d / "ws" / t / "manifest.json").unlink(),
                        (d / "ws" / t / "manifest.json").symlink_to("/etc/passwd"))),
        Case("manifest", "file: ../../etc/passwd", [*bench, "--target", "onnx", "--precision", "int8"],
             "'../../../../etc/passwd'",
             edit_manifest(onnx8, lambda m: m.update(file="../../../../etc/passwd"))),
        Case("manifest", "../ in files", ["info", onnx8], "not a path inside",
             edit_manifest(onnx8, lambda m: m["files"].update({"../../../../etc/passwd": "0" * 64}))),
        Case("manifest", "absolute path in files", ["info", onnx8], "/etc/passwd",
             edit_manifest(onnx8, lambda m: m["files"].update({"/etc/passwd": "0" * 64}))),
        Case("manifest", "hash that is not a sha256", ["eval", t], "sha256",
             edit_manifest(t, lambda m: m["files"].update({"model.pt": "deadbeef"}))),
        Case("manifest", "string input_size", [*export_fp32, t], "input_size",
             edit_manifest(t, lambda m: m["preprocessing"].update(input_size="28"))),
        Case("manifest", "input_size 100000", ["eval", t], "input_size",
             edit_manifest(t, lambda m: m["preprocessing"].update(input_size=100_000))),
        Case("manifest", "std 0", [*export_fp32, t], "std",
             edit_manifest(t, lambda m: m["preprocessing"].update(std=[0]))),
        Case("manifest", "five mean values", ["eval", t], "mean",
             edit_manifest(t, lambda m: m["preprocessing"].update(mean=[0.1] * 5))),
        Case("manifest", "no preprocessing", [*export_fp32, t], "preprocessing",
             edit_manifest(t, lambda m: m.pop("preprocessing") and None)),
        Case("manifest", "no architecture", ["eval", t], "architecture",
             edit_manifest(t, lambda m: m.pop("architecture") and None)),
        Case("manifest", "num_classes a string", ["eval", t], "num_classes",
             edit_manifest(t, lambda m: m["architecture"].update(num_classes="10"))),
        Case("manifest", "../ in model", [*export_fp32, t], "model",
             edit_manifest(t, lambda m: m.update(model="../../evil"))),
        Case("manifest", "[/x] in model", ["eval", t], "a[/x]", edit_manifest(t, lambda m: m.update(model="a[/x]"))),
        Case("manifest", "id of another directory", ["info", t], "its directory",
             edit_manifest(t, lambda m: m.update(id="train-resnet20-other"))),
        Case("manifest", "parent in another workspace", ["export", "--target", "onnx", "--precision", "int8",
             "--model", q], "parent", edit_manifest(q, lambda m: m.update(parent="../../other/train-x"))),
        Case("manifest", "parent not in the workspace", ["export", "--target", "onnx", "--precision", "int8",
             "--model", q], "train-gone", edit_manifest(q, lambda m: m.update(parent="train-gone"))),
        Case("manifest", "metrics a list", ["info", t], "metrics", edit_manifest(t, lambda m: m.update(metrics=[1]))),
        Case("manifest", "classes a string", ["eval", t], "classes", edit_manifest(t, lambda m: m.update(classes="x"))),
        Case("manifest", "export without a format", [*bench, "--target", "onnx", "--precision", "int8"], "format",
             edit_manifest(onnx8, lambda m: m.pop("format") and None)),
    ]


def results_cases(bench_id: str) -> list[Case]:
    """A bench's results.json edited consistently (its new hash recorded): `report` must name the file."""
    def case(what: str, change: Callable[[dict], object], expect: str = "results.json") -> Case:
        return Case("report", f"results.json: {what}", ["report", bench_id], expect,
                    consistent(bench_id, "results.json", edit_json(change)))

    def text(what: str, content: str) -> Case:
        return Case("report", f"results.json: {what}", ["report", bench_id], "results.json",
                    consistent(bench_id, "results.json", lambda path: content))

    def row(change: Callable[[dict], object]) -> Callable[[dict], object]:
        return lambda doc: change(doc["rows"][-1])

    return [
        text("truncated", '{"model": "resnet20", "rows": ['),
        text("empty", ""),
        text("a list", "[1, 2]"),
        text("NaN", '{"rows": NaN}'),
        case("no rows", lambda r: r.pop("rows") and None, "rows"),
        case("rows empty", lambda r: r.update(rows=[]), "rows"),
        case("rows a dict", lambda r: r.update(rows={}), "rows"),
        case("a row a string", lambda r: r["rows"].append("x"), "rows"),
        case("p50_ms a string", row(lambda x: x.update(p50_ms="fast")), "p50_ms"),
        case("negative p50_ms", row(lambda x: x.update(p50_ms=-1.0)), "p50_ms"),
        case("top1 above 100", row(lambda x: x.update(top1=250.0)), "top1"),
        case("unknown status", row(lambda x: x.update(status="great")), "status"),
        case("row without a variant", row(lambda x: x.pop("variant") and None), "variant"),
        case("no device", lambda r: r.pop("device") and None, "device"),
        case("method min_runs a string", lambda r: r["method"].update(min_runs="many"), "min_runs"),
        case("warnings a string", lambda r: r.update(warnings="careful"), "warnings"),
        case("eval.n negative", lambda r: r["eval"].update(n=-5), "eval.n"),
        case("mode unknown", lambda r: r.update(mode="guessed"), "mode"),
        case("estimated row without its estimate", row(lambda x: x.update(status="estimated", estimate=None)),
             "estimate"),
        Case("report", "results.json: 1e999 as a latency", ["report", bench_id], "inf", consistent(
            bench_id, "results.json",
            lambda path: path.read_text().replace('"p50_ms": ', '"p50_ms": 1e999, "was": ', 1))),
    ]


# -- datasets on disk, built small in the case's directory -------------------------------------------
def cifar_dir(change: Callable[[Path], None] | None = None, n: int = 20) -> Callable[[Path], None]:
    """A tiny CIFAR-10 python-batch directory ``cifar/`` (``n`` images a batch), then spoiled by ``change``."""
    def make(d: Path) -> None:
        import numpy as np

        root = d / "cifar"
        root.mkdir()
        rng = np.random.default_rng(0)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
            (root / name).write_bytes(pickle.dumps(batch))
        if change:
            change(root)
    return make


def cifar_batch(name: str, make_batch: Callable[[], object]) -> Callable[[Path], None]:
    """For ``cifar_dir``: batch ``name`` replaced by the pickle of ``make_batch()``."""
    return lambda root: (root / name).write_bytes(pickle.dumps(make_batch()))


def image_tree(train=("cat", "dog"), val=None, n: int = 3,
               change: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """A tiny ImageFolder tree ``imgs/`` (``train/`` and ``val/``, ``n`` 40x40 PNGs a class), then spoiled."""
    def make(d: Path) -> None:
        from PIL import Image

        root = d / "imgs"
        for split, names in (("train", train), ("val", train if val is None else val)):
            for name in names:
                (root / split / name).mkdir(parents=True)
                for i in range(n):
                    Image.new("RGB", (40, 40), (40 * i, 80, 0)).save(root / split / name / f"{i}.png")
        if change:
            change(root)
    return make


def png_bomb(path: Path) -> None:
    """A 200-byte PNG whose header claims 40,000 x 40,000 pixels (1.6 gigapixels)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def idx(array, dtype_code: int = 0x08) -> bytes:
    import struct

    return struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.tobytes()


def fashion_dir(change: Callable[[Path], None] | None = None, n: int = 30) -> Callable[[Path], None]:
    """A tiny Fashion-MNIST directory ``fm/`` (the four idx files, ``n`` images each), then spoiled."""
    def make(d: Path) -> None:
        import numpy as np

        root = d / "fm"
        root.mkdir()
        rng = np.random.default_rng(0)
        for prefix in ("train", "t10k"):
            (root / f"{prefix}-images-idx3-ubyte").write_bytes(idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
            (root / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.arange(n, dtype=np.uint8) % 10))
        if change:
            change(root)
    return make


def dataset_cases() -> list[Case]:
    """Datasets a user points --data at: CIFAR-10 batches, ImageFolder trees, Fashion-MNIST idx files."""
    import numpy as np

    cifar = ["train", "resnet20", "--dataset", "cifar10", "--data", "cifar", "--epochs", "1", "--limit", "10",
             "--batch-size", "10", "--eval-limit", "10"]
    folder = ["train", "resnet20", "--dataset", "imagefolder", "--data", "imgs", "--epochs", "1",
              "--input-size", "32", "--batch-size", "4"]
    fashion = ["train", "resnet20", "--data", "fm", "--epochs", "1", "--batch-size", "10", "--eval-limit", "10"]

    def pixels(n: int = 20) -> np.ndarray:
        return np.zeros((n, 3072), np.uint8)

    return [
        Case("dataset", "CIFAR batch that is a pickled list", cifar, "not a dict",
             cifar_dir(cifar_batch("data_batch_2", lambda: [1, 2, 3]))),
        Case("dataset", "CIFAR batch with fewer labels than images", cifar, "labels",
             cifar_dir(cifar_batch("data_batch_1", lambda: {"data": pixels(), "labels": [0] * 15}))),
        Case("dataset", "CIFAR label 10 (classes are 0..9)", cifar, "labels must lie",
             cifar_dir(cifar_batch("test_batch", lambda: {"data": pixels(), "labels": [10] * 20}))),
        Case("dataset", "CIFAR label -1", cifar, "labels must lie",
             cifar_dir(cifar_batch("data_batch_4", lambda: {"data": pixels(), "labels": [-1] * 20}))),
        Case("dataset", "CIFAR pixels as float32", cifar, "uint8",
             cifar_dir(cifar_batch("data_batch_1", lambda: {"data": pixels().astype(np.float32), "labels": [0] * 20}))),
        Case("dataset", "CIFAR pixels N x 1024 (grey)", cifar, "3072",
             cifar_dir(cifar_batch("data_batch_1", lambda: {"data": np.zeros((20, 1024), np.uint8),
                                                            "labels": [0] * 20}))),
        Case("dataset", "CIFAR-100 batch (fine_labels, no labels)", cifar, "labels",
             cifar_dir(cifar_batch("test_batch", lambda: {"data": pixels(), "fine_labels": [0] * 20}))),
        Case("dataset", "CIFAR batch truncated", cifar, "data_batch_3",
             cifar_dir(lambda root: (root / "data_batch_3").write_bytes((root / "data_batch_3").read_bytes()[:500]))),
        Case("dataset", "CIFAR batch empty", cifar, "test_batch",
             cifar_dir(lambda root: (root / "test_batch").write_bytes(b""))),
        Case("dataset", "CIFAR batch a directory", cifar, "data_batch_5",
             cifar_dir(lambda root: ((root / "data_batch_5").unlink(), (root / "data_batch_5").mkdir()))),
        Case("dataset", "CIFAR batch gzipped in place", cifar, "data_batch_1",
             cifar_dir(lambda root: (root / "data_batch_1").write_bytes(
                 gzip.compress((root / "data_batch_1").read_bytes())))),
        Case("dataset", "CIFAR batch holding a malicious pickle", cifar, "refusing",
             both(cifar_dir(), lambda d: (d / "cifar" / "test_batch").write_bytes(pickle.dumps(Evil(d / "PWNED"))))),
        Case("dataset", "CIFAR labels a string", cifar, "data_batch_2",
             cifar_dir(cifar_batch("data_batch_2", lambda: {"data": pixels(), "labels": "cat"}))),
        Case("dataset", "ImageFolder val/ lacking a class of train/", folder, "different classes",
             image_tree(train=("cat", "dog", "fox"), val=("cat", "dog"))),
        Case("dataset", "ImageFolder with one class", folder, "at least two", image_tree(train=("cat",))),
        Case("dataset", "ImageFolder class folder with no images", folder, "holds no images",
             image_tree(change=lambda root: [p.unlink() for p in (root / "val" / "dog").iterdir()])),
        Case("dataset", "ImageFolder class of .txt files only", folder, "holds no images",
             image_tree(change=lambda root: [p.rename(p.with_suffix(".txt"))
                                             for p in (root / "train" / "cat").iterdir()])),
        Case("dataset", "ImageFolder 0-byte .png", folder, "1.png",
             image_tree(change=lambda root: (root / "train" / "dog" / "1.png").write_bytes(b""))),
        Case("dataset", "ImageFolder HTML page saved as .png", folder, "2.png",
             image_tree(change=lambda root: (root / "val" / "cat" / "2.png").write_text("<html>404</html>"))),
        Case("dataset", "ImageFolder truncated PNG", folder, "0.png",
             image_tree(change=lambda root: (root / "train" / "cat" / "0.png").write_bytes(
                 (root / "train" / "cat" / "0.png").read_bytes()[:60]))),
        Case("dataset", "ImageFolder decompression bomb (40k x 40k PNG header)", folder, "bomb.png",
             image_tree(change=lambda root: png_bomb(root / "train" / "dog" / "bomb.png"))),
        Case("dataset", "ImageFolder train/ a file", folder, "train/",
             image_tree(change=lambda root: (shutil.rmtree(root / "train"), (root / "train").write_text("x")))),
        Case("dataset", "ImageFolder --data a file", [*folder[:5], "imgs.zip", *folder[6:]], "not a directory",
             write("imgs.zip", b"PK\x03\x04")),
        Case("dataset", "CIFAR directory given as --dataset imagefolder", [*folder[:5], "cifar", *folder[6:]],
             "cifar10", cifar_dir()),
        Case("dataset", "Fashion-MNIST labels file truncated", fashion, "labels",
             fashion_dir(lambda root: (root / "train-labels-idx1-ubyte").write_bytes(
                 idx(np.zeros(12, np.uint8))))),
        Case("dataset", "Fashion-MNIST label 200", fashion, "labels must lie",
             fashion_dir(lambda root: (root / "t10k-labels-idx1-ubyte").write_bytes(idx(np.full(30, 200, np.uint8))))),
        Case("dataset", "Fashion-MNIST idx of float32 pixels", fashion, "unsigned-byte",
             fashion_dir(lambda root: (root / "train-images-idx3-ubyte").write_bytes(
                 idx(np.zeros((30, 28, 28), np.float32), 0x0D)))),
        Case("dataset", "Fashion-MNIST images file cut short", fashion, "t10k-images",
             fashion_dir(lambda root: (root / "t10k-images-idx3-ubyte").write_bytes(
                 (root / "t10k-images-idx3-ubyte").read_bytes()[:3000]))),
        Case("dataset", "Fashion-MNIST images 2-D", fashion, "NxHxW",
             fashion_dir(lambda root: (root / "train-images-idx3-ubyte").write_bytes(
                 idx(np.zeros((30, 784), np.uint8))))),
        Case("dataset", "Fashion-MNIST .gz that is not gzip", fashion, "train-images",
             fashion_dir(lambda root: ((root / "train-images-idx3-ubyte").unlink(),
                                       (root / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")))),
        Case("dataset", "Fashion-MNIST directory missing a file", fashion, "t10k-labels",
             fashion_dir(lambda root: (root / "t10k-labels-idx1-ubyte").unlink())),
    ]


def number_cases(ids: dict[str, str]) -> list[Case]:
    """NaN, infinity, huge and negative values in the numeric options, and the bounds of the machine."""
    t = ids["train"]
    train = ["train", "resnet20", "--epochs", "1", "--limit", "20", "--eval-limit", "10"]
    qat = ["quantize", t, "--int8", "--qat", "--train-limit", "20", "--val-limit", "10", "--eval-limit", "10"]
    prune = ["prune", t, "--finetune-epochs", "0", "--val-limit", "10", "--eval-limit", "10"]
    bench = ["bench", "--model", "resnet20", "--target", "onnx", "--precision", "fp32", "--eval-limit", "10",
             "--rounds", "1", "--min-seconds", "0"]
    export = ["export", "--target", "onnx", "--precision", "fp32", "--model", t]
    return [
        Case("numbers", "train --lr nan", [*train, "--lr", "nan"], "lr"),
        Case("numbers", "train --lr inf", [*train, "--lr", "inf"], "lr"),
        Case("numbers", "train --label-smoothing nan", [*train, "--label-smoothing", "nan"], "label"),
        Case("numbers", "train --mean nan", [*train, "--mean", "nan"], "mean"),
        Case("numbers", "train --std 0", [*train, "--std", "0"], "std"),
        Case("numbers", "train --std -0.3", [*train, "--std", "-0.3"], "std"),
        Case("numbers", "train --mean 1e400 (infinite)", [*train, "--mean", "1e400"], "mean"),
        Case("numbers", "train two means for a 1-channel model", [*train, "--mean", "0.5", "--mean", "0.4"], "mean"),
        Case("numbers", "train --seed 2**32", [*train, "--seed", str(2**32)], "seed"),
        Case("numbers", "train --epochs 1000000", [*train[:2], "--epochs", "1000000"], "epochs"),
        Case("numbers", "train --num-classes 5 on a 10-class dataset", [*train, "--num-classes", "5"], "smaller"),
        Case("numbers", "import --input-size 100000", ["import", "resnet20", "--weights", "w.pt", "--input-size",
             "100000"], "input-size", write("w.pt", b"")),
        Case("numbers", "train --resize -1", [*train, "--resize", "-1"], "resize"),
        Case("numbers", "quantize --qat --lr nan", [*qat, "--lr", "nan"], "lr"),
        Case("numbers", "quantize --qat --lr inf", [*qat, "--lr", "inf"], "lr"),
        Case("numbers", "quantize --qat --epochs 10**9", [*qat, "--epochs", str(10**9)], "epochs"),
        Case("numbers", "quantize --max-drop inf", ["quantize", t, "--int8", "--max-drop", "inf"], "max-drop"),
        Case("numbers", "quantize --max-drop -1", ["quantize", t, "--int8", "--max-drop", "-1"], "max-drop"),
        Case("numbers", "prune --ratio nan", [*prune, "--ratio", "nan"], "ratio"),
        Case("numbers", "prune --sparsity nan", [*prune, "--method", "magnitude", "--sparsity", "nan"], "sparsity"),
        Case("numbers", "prune --lr nan", [*prune, "--lr", "nan"], "lr"),
        Case("numbers", "prune --lr inf", [*prune, "--lr", "inf"], "lr"),
        Case("numbers", "export --verify-limit -5", [*export, "--verify-limit", "-5"], "verify-limit"),
        Case("numbers", "export --verify-limit 0", [*export, "--verify-limit", "0"], "verify-limit"),
        Case("numbers", "bench --min-seconds nan", [*bench, "--min-seconds", "nan"], "min-seconds"),
        Case("numbers", "bench --min-seconds inf", [*bench, "--min-seconds", "inf"], "min-seconds"),
        # bounds: what this machine (or the device) can do, the limit stated
        Case("bounds", "bench --threads 10000", [*bench, "--threads", "10000"], "at most"),
        Case("bounds", "bench --threads 64 on a 4-core Raspberry Pi (estimated)",
             [*bench, "--device", "raspberrypi", "--estimate", "--target", "tflite", "--threads", "64"], "at most 16"),
        Case("bounds", "bench --min-runs 10**12", [*bench, "--min-runs", str(10**12)], "at most"),
        Case("bounds", "bench --warmup 10**12", [*bench, "--warmup", str(10**12)], "at most"),
        Case("bounds", "bench --rounds 100000", [*bench, "--rounds", "100000"], "at most"),
        Case("bounds", "bench --min-seconds 1e9", [*bench, "--min-seconds", "1e9"], "at most"),
        Case("bounds", "profile threads: 100000", ["bench", "--device", "p.yaml", *bench[1:]], "threads",
             write("p.yaml", profile(extra="threads: 100000\n"))),
        Case("bounds", "train --input-size 4096 (terabytes of images in memory)", [*train[:2], "--epochs", "0",
             "--input-size", "4096"], "memory"),
        Case("bounds", "train --resize 8192 on 28x28 images", [*train[:2], "--epochs", "0", "--input-size", "2048",
             "--resize", "8192"], "memory"),
        Case("bounds", "prune --finetune-epochs 10**9", [*prune[:2], "--finetune-epochs", str(10**9)],
             "finetune-epochs"),
        Case("bounds", "prune --iterative 10**6", [*prune, "--iterative", str(10**6)], "iterative"),
        Case("bounds", "recipe bench threads: 100000", ["run", "r.yaml"], "threads",
             write("r.yaml", recipe(steps=GOOD_STEPS.replace("devices: [cpu]", "devices: [cpu], threads: 100000")))),
        Case("bounds", "--set bench.min_runs=10**12", ["run", "r.yaml", "--set", f"bench.min_runs={10**12}"],
             "min_runs", write("r.yaml", recipe())),
    ]


def more_manifest_cases(ids: dict[str, str]) -> list[Case]:
    """More hand-edited manifests: loops in the lineage, wrong kinds of values, paths out of place."""
    t, q, onnx8, b = ids["train"], ids["int8"], ids["onnx-int8"], ids["bench"]
    bench = ["bench", "--model", "resnet20", "--eval-limit", "20", "--min-runs", "1", "--min-seconds", "0",
             "--warmup", "0", "--rounds", "1", "--target", "onnx", "--precision", "int8"]
    export8 = ["export", "--target", "onnx", "--precision", "int8", "--verify-limit", "20", "--model", q]
    return [
        Case("manifest", "parent is the artifact itself", export8, "parent",
             edit_manifest(q, lambda m: m.update(parent=q))),
        Case("manifest", "two artifacts each other's parent", ["bench", "--export", onnx8, *bench[3:]], "parent",
             both(edit_manifest(q, lambda m: m.update(parent=onnx8)),
                  edit_manifest(onnx8, lambda m: m.update(parent=q)))),
        Case("manifest", "kind 'Train' (wrong case)", ["eval", t], "kind",
             edit_manifest(t, lambda m: m.update(kind="Train"))),
        Case("manifest", "a file's hash null", ["eval", t], "model.pt",
             edit_manifest(t, lambda m: m["files"].update({"model.pt": None}))),
        Case("manifest", "files a list", ["info", t], "files",
             edit_manifest(t, lambda m: m.update(files=["model.pt"]))),
        Case("manifest", "mean of strings", ["eval", t], "mean",
             edit_manifest(t, lambda m: m["preprocessing"].update(mean=["a"]))),
        Case("manifest", "two channels", ["eval", t], "channels",
             edit_manifest(t, lambda m: m["preprocessing"].update(channels=2))),
        Case("manifest", "input_size true", ["eval", t], "input_size",
             edit_manifest(t, lambda m: m["preprocessing"].update(input_size=True))),
        Case("manifest", "export format coreml", bench, "coreml",
             edit_manifest(onnx8, lambda m: m.update(format="coreml"))),
        Case("manifest", "export precision int4", bench, "int4",
             edit_manifest(onnx8, lambda m: m.update(precision="int4"))),
        Case("manifest", "export runtime tensorrt", bench, "tensorrt",
             edit_manifest(onnx8, lambda m: m.update(runtime="tensorrt"))),
        Case("manifest", "export file: manifest.json", bench, "manifest.json",
             edit_manifest(onnx8, lambda m: m.update(file="manifest.json"))),
        Case("manifest", "export file not among its files", bench, "other.onnx",
             edit_manifest(onnx8, lambda m: m.update(file="other.onnx"))),
        Case("manifest", "data.dir /etc", ["eval", t], "/etc",
             edit_manifest(t, lambda m: m["data"].update(dir="/etc"))),
        Case("manifest", "data.dataset mnist", ["eval", t], "mnist",
             edit_manifest(t, lambda m: m["data"].update(dataset="mnist"))),
        Case("manifest", "data.validation random", ["eval", t], "validation",
             edit_manifest(t, lambda m: m["data"].update(validation="random"))),
        Case("manifest", "quantizers.json dropped from files", ["eval", q, "--eval-limit", "10"], "quantizers.json",
             edit_manifest(q, lambda m: m["files"].pop("quantizers.json") and None)),
        Case("manifest", "id with ../", ["info", t], "id", edit_manifest(t, lambda m: m.update(id="../x"))),
        Case("manifest", "UTF-8 byte-order mark (a Windows editor)", ["info", t], "manifest.json",
             manifest_bytes(t, lambda text: "\ufeff" + text)),
        Case("manifest", "num_classes 0", ["eval", t], "num_classes",
             edit_manifest(t, lambda m: m["architecture"].update(num_classes=0))),
        Case("manifest", "architecture of another model", ["eval", t, "--eval-limit", "10"], "does not fit",
             edit_manifest(t, lambda m: m["architecture"].update(name="resnet32"))),
        Case("manifest", "3 classes for a 10-output model", ["eval", t, "--eval-limit", "10"], "classes",
             edit_manifest(t, lambda m: m.update(classes=["a", "b", "c"]))),
        Case("manifest", "bench without results.json in files", ["report", b], "results.json",
             edit_manifest(b, lambda m: m["files"].pop("results.json") and None)),
        Case("manifest", "verify top1 a string in an export", bench, "top1",
             edit_manifest(onnx8, lambda m: m["metrics"].setdefault("verify", {}).update(top1="high"))),
    ]


def more_results_cases(bench_id: str) -> list[Case]:
    """More edited results.json files (consistently re-hashed)."""
    def case(what: str, change: Callable[[dict], object], expect: str = "results.json") -> Case:
        return Case("report", f"results.json: {what}", ["report", bench_id], expect,
                    consistent(bench_id, "results.json", edit_json(change)))

    def row(change: Callable[[dict], object]) -> Callable[[dict], object]:
        return lambda doc: change(doc["rows"][-1])

    return [
        case("NaN as a latency", row(lambda x: x.update(p50_ms=float("nan")))),
        case("top1 negative", row(lambda x: x.update(top1=-5.0)), "top1"),
        case("threads a string", row(lambda x: x.update(threads="all")), "threads"),
        case("size_bytes a list", row(lambda x: x.update(size_bytes=[1])), "size_bytes"),
        case("rounds 0", lambda r: r["method"].update(rounds=0), "rounds"),
        case("rows a string", lambda r: r.update(rows="none"), "rows"),
        Case("report", "results.json: not UTF-8", ["report", bench_id], "results.json",
             consistent(bench_id, "results.json", lambda path: b"\xff\xfe" + path.read_bytes())),
        Case("report", "results.json: 100,000 nested lists", ["report", bench_id], "results.json",
             consistent(bench_id, "results.json", lambda path: "[" * 100_000 + "]" * 100_000)),
    ]


def more_recipe_cases() -> list[Case]:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    return [
        Case("recipe", "duplicate key (model twice)", ["run", "r.yaml"], "model",
             write("r.yaml", recipe() + "model: resnet32\n")),
        Case("recipe", "invalid UTF-8", ["run", "r.yaml"], "r.yaml",
             write("r.yaml", recipe().encode() + b"# \xff\xfe\n")),
        Case("recipe", "YAML bomb as the mean (a billion x)", ["run", "r.yaml"], "mean",
             write("r.yaml", bomb + recipe().replace("model:", "mean: *i\nmodel:"))),
        Case("recipe", "tab indentation", ["run", "r.yaml"], "yaml",
             write("r.yaml", recipe().replace("  train", "\ttrain"))),
        Case("recipe", "recipe path a directory", ["run", "recipes.d"], "recipes.d",
             lambda d: (d / "recipes.d").mkdir()),
        Case("recipe", "recipe /dev/zero (endless)", ["run", "/dev/zero"], "/dev/zero"),
        Case("recipe", "recipe a link to /dev/urandom", ["run", "r.yaml"], "r.yaml",
             lambda d: (d / "r.yaml").symlink_to("/dev/urandom")),
        Case("recipe", "a 20 MB recipe", ["run", "r.yaml"], "larger than",
             write("r.yaml", recipe() + "# " + "x" * (20 << 20) + "\n")),
        Case("recipe", "epochs: .nan", ["run", "r.yaml"], "epochs",
             write("r.yaml", recipe(steps="  train: {epochs: .nan}"))),
        Case("recipe", "lr: 1e400", ["run", "r.yaml"], "lr", write("r.yaml", recipe(steps="  train: {lr: 1e400}"))),
        Case("recipe", "steps a list", ["run", "r.yaml"], "steps",
             write("r.yaml", recipe(steps="  - train\n  - export"))),
        Case("recipe", "mean: [.nan]", ["run", "r.yaml"], "mean", write("r.yaml", recipe(extra="mean: [.nan]\n"))),
        Case("recipe", "data: a file", ["run", "r.yaml"], "cifar",
             both(write("r.yaml", recipe(dataset="cifar10", extra="data: notes.txt\n")), write("notes.txt", "x"))),
        Case("recipe", "--set without =", ["run", "r.yaml", "--set", "train.epochs"], "KEY=VALUE",
             write("r.yaml", recipe())),
        Case("recipe", "--set value not YAML", ["run", "r.yaml", "--set", "train.epochs=[1"], "not valid YAML",
             write("r.yaml", recipe())),
        Case("recipe", "--set a step to a number", ["run", "r.yaml", "--set", "train=5"], "train",
             write("r.yaml", recipe())),
    ]


def more_profile_cases() -> list[Case]:
    bench = ["bench", "--model", "resnet20", "--eval-limit", "20", "--min-runs", "1", "--min-seconds", "0",
             "--warmup", "0", "--rounds", "1", "--target", "onnx", "--precision", "fp32"]
    estimate = ("estimate: {peak_fp32_gops: {value: 10, source: x}, memory_bandwidth_gbs: {value: %s, source: x}, "
                "compute_efficiency: {value: %s, source: x}}\n")
    return [
        Case("profile", "EDGERES_DEVICES a file", [*bench, "--device", "mine"], "not a directory",
             write("devices.txt", "x"), env={"EDGERES_DEVICES": "devices.txt"}),
        Case("profile", "--devices-dir a file", [*bench, "--device", "mine", "--devices-dir", "devices.txt"],
             "not a directory", write("devices.txt", "x")),
        Case("profile", "EDGERES_DEVICES holding a broken profile", [*bench, "--device", "mine"], "mine.yaml",
             write("devs/mine.yaml", "description: [x\n"), env={"EDGERES_DEVICES": "devs"}),
        Case("profile", "threads 0", [*bench, "--device", "p.yaml"], "threads",
             write("p.yaml", profile(extra="threads: 0\n"))),
        Case("profile", "invalid UTF-8", [*bench, "--device", "p.yaml"], "p.yaml",
             write("p.yaml", profile().encode() + b"# \xff\n")),
        Case("profile", "profile path a directory", [*bench, "--device", "p.yaml"], "p.yaml",
             lambda d: (d / "p.yaml").mkdir()),
        Case("profile", "profile a link to /dev/zero", [*bench, "--device", "p.yaml"], "p.yaml",
             lambda d: (d / "p.yaml").symlink_to("/dev/zero")),
        Case("profile", "duplicate key", [*bench, "--device", "p.yaml"], "arch",
             write("p.yaml", profile() + "arch: aarch64\n")),
        Case("profile", "memory bandwidth .inf", [*bench, "--device", "p.yaml", "--estimate"], "memory_bandwidth",
             write("p.yaml", profile(extra=estimate % (".inf", "0.5")))),
        Case("profile", "compute efficiency .nan", [*bench, "--device", "p.yaml", "--estimate"], "compute_efficiency",
             write("p.yaml", profile(extra=estimate % ("10", ".nan")))),
        Case("profile", "max_eval_images 0", [*bench, "--device", "p.yaml"], "max_eval_images",
             write("p.yaml", profile(extra="max_eval_images: 0\n"))),
        Case("profile", "connection type telnet", [*bench, "--device", "p.yaml"], "connection.type",
             write("p.yaml", profile(connection="{type: telnet}"))),
        Case("profile", "connection an ssh URL string", [*bench, "--device", "p.yaml"], "connection",
             write("p.yaml", profile(connection="ssh://pi@raspberrypi.local"))),
        Case("profile", "execution provider not here (CUDA)", [*bench, "--device", "p.yaml"], "CUDAExecutionProvider",
             write("p.yaml", profile(runtimes="{onnxruntime: {provider: CUDAExecutionProvider}}"))),
        Case("profile", "TFLite delegate library missing", [*bench[:-4], "--target", "tflite", "--device", "p.yaml"],
             "delegate", write("p.yaml", profile(runtimes="{tflite: {delegate: /no/such/libdelegate.so}}"))),
        Case("profile", "OpenVINO device not here (NPU)", [*bench[:-4], "--target", "openvino", "--device", "p.yaml"],
             "NPU", write("p.yaml", profile(runtimes="{openvino: {device: NPU}}"))),
        Case("profile", "arch riscv64", [*bench, "--device", "p.yaml"], "arch",
             write("p.yaml", profile(arch="riscv64"))),
        Case("profile", "emulation cpu unknown", [*bench, "--device", "p.yaml"], "emulation.cpu",
             write("p.yaml", profile(arch="aarch64", extra="emulation: {cpu: cortex-x1}\n"))),
        Case("ssh", "port 0", [*bench, "--device", "p.yaml"], "port", write("p.yaml", profile(connection=ssh(port=0)))),
        Case("ssh", "port with a shell command", [*bench, "--device", "p.yaml"], "port",
             write("p.yaml", profile(connection=ssh(port="22; touch PWNED")))),
        Case("ssh", "empty host", [*bench, "--device", "p.yaml"], "connection.host",
             write("p.yaml", profile(connection=ssh(host="")))),
        Case("ssh", "host with a newline and an option", [*bench, "--device", "p.yaml"], "connection.host",
             write("p.yaml", profile(connection=ssh(host="pi\n-oProxyCommand=touch PWNED")))),
        Case("ssh", "key a directory", [*bench, "--device", "p.yaml"], "connection.key",
             both(write("p.yaml", profile(connection=ssh(key="keys"))), lambda d: (d / "keys").mkdir())),
        Case("ssh", "python that is an option", [*bench, "--device", "p.yaml"], "connection.python",
             write("p.yaml", profile(connection=ssh(python="-c import os")))),
        Case("ssh", "connect_timeout .nan", [*bench, "--device", "p.yaml"], "connect_timeout",
             write("p.yaml", profile(connection=ssh(connect_timeout=float("nan"))))),
        Case("ssh", "retries 100", [*bench, "--device", "p.yaml"], "retries",
             write("p.yaml", profile(connection=ssh(retries=100)))),
    ]


def workspace_cases(ids: dict[str, str]) -> list[Case]:
    """Faults of the workspace itself: where it cannot be written, links, odd entries."""
    t = ids["train"]
    train = ["train", "resnet20", "--epochs", "0", "--eval-limit", "10"]
    return [
        Case("workspace", "workspace on a read-only file system (/proc)", [*train, "--workspace", "/proc/edgeres-ws"],
             "/proc/edgeres-ws"),
        Case("workspace", "workspace under a file", [*train, "--workspace", "afile/ws"], "afile", write("afile", "x")),
        Case("workspace", "workspace a dangling link", [*train, "--workspace", "wslink"], "wslink",
             lambda d: (d / "wslink").symlink_to(d / "gone")),
        Case("workspace", "workspace a link loop", ["info", "--workspace", "loop"], "loop",
             lambda d: (d / "loop").symlink_to(d / "loop")),
        Case("workspace", "an artifact directory linked to another's", ["info", "train-resnet20-linked"],
             "its directory",
             lambda d: (d / "ws" / "train-resnet20-linked").symlink_to(d / "ws" / t)),
        Case("workspace", "an artifact directory linked to outside",
             ["eval", "train-resnet20-out", "--eval-limit", "10"], "outside",
             lambda d: (shutil.copytree(d / "ws" / t, d / "elsewhere"),
                        edit_manifest("../elsewhere", lambda m: m.update(id="train-resnet20-out"))(d),
                        (d / "ws" / "train-resnet20-out").symlink_to(d / "elsewhere"))),
        Case("workspace", "model.pt a link loop", ["eval", t], "model.pt",
             lambda d: ((d / "ws" / t / "model.pt").unlink(), (d / "ws" / t / "model.pt").symlink_to("model.pt"))),
        Case("workspace", "model.pt a link to /dev/zero", ["eval", t], "model.pt",
             lambda d: ((d / "ws" / t / "model.pt").unlink(), (d / "ws" / t / "model.pt").symlink_to("/dev/zero"))),
        Case("workspace", "export --output on a read-only file system", ["export", "--target", "onnx", "--precision",
             "fp32", "--model", t, "--no-verify", "--output", "/proc/edgeres-out"], "/proc/edgeres-out"),
        Case("workspace", "export --output an existing file", ["export", "--target", "onnx", "--precision", "fp32",
             "--model", t, "--no-verify", "--output", "out.onnx"], "not a directory", write("out.onnx", "x")),
    ]


def more_cli_cases(ids: dict[str, str]) -> list[Case]:
    t, q, b = ids["train"], ids["int8"], ids["bench"]
    return [
        Case("cli", "--weights /dev/zero", ["train", "resnet20", "--epochs", "0", "--weights", "/dev/zero"],
             "/dev/zero"),
        Case("cli", "--weights a directory", ["train", "resnet20", "--epochs", "0", "--weights", "wdir"], "directory",
             lambda d: (d / "wdir").mkdir()),
        Case("cli", "--weights a link loop", ["import", "resnet20", "--weights", "w.pt"], "w.pt",
             lambda d: (d / "w.pt").symlink_to("w.pt")),
        Case("cli", "a 5,000-character model name", ["export", "--target", "onnx", "--model", "r" * 5000], "rrrr"),
        Case("cli", "a 5,000-character artifact to info", ["info", "train-" + "x" * 5000], "no artifact"),
        Case("cli", "a model name with a newline", ["train", "resnet20\n"], "resnet20"),
        Case("cli", "bench --export of a train artifact", ["bench", "--export", t, "--eval-limit", "10"], "export"),
        Case("cli", "bench --precision fp16 with no fp16 export", ["bench", "--model", "resnet20", "--target", "onnx",
             "--precision", "fp16", "--eval-limit", "10"], "fp16"),
        Case("cli", "quantize an export artifact", ["quantize", ids["onnx-fp32"], "--int8"], "export"),
        Case("cli", "export a bench artifact", ["export", "--target", "onnx", "--model", b], "bench"),
        Case("cli", "eval a bench artifact", ["eval", b], "bench"),
        Case("cli", "prune --method unknown", ["prune", t, "--method", "random"], "random"),
        Case("cli", "prune --method magnitude with --ratio", ["prune", t, "--method", "magnitude", "--ratio", "0.3"],
             "--sparsity"),
        Case("cli", "eval --dataset cifar10 on a Fashion-MNIST model", ["eval", t, "--dataset", "cifar10"],
             "fashion-mnist"),
        Case("cli", "eval --data of another dataset's files", ["eval", t, "--data", "cifar"], "cifar", cifar_dir()),
        Case("cli", "devices --setup of an unknown device", ["devices", "--setup", "raspberry"], "raspberry"),
        Case("cli", "quantize an int8 artifact again", ["quantize", q, "--int8"], "int8"),
    ]


def run_case(case: Case, base: Path, index: int) -> dict:
    d = base / f"case-{index:03d}"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base / "ws", d / "ws", symlinks=True)
    if case.prepare:
        try:
            case.prepare(d)
        except Exception as exc:  # noqa: BLE001 - a broken case is reported, and the others still run
            return {"area": case.area, "what": case.what, "args": case.args, "exit": None, "ok": False,
                    "problems": [f"prepare failed: {exc!r}"[:300]], "message": "", "new_artifacts": [], "seconds": 0}
    damaged = set(check_workspace(d / "ws"))  # what the case damaged on purpose
    before = sorted(p.name for p in (d / "ws").iterdir())
    start = time.perf_counter()
    try:
        proc = edgeres(*case.args, workspace=d / "ws", cwd=d, timeout=300, env=case.env)
    except subprocess.TimeoutExpired:
        return {"area": case.area, "what": case.what, "args": case.args, "exit": None, "ok": False,
                "problems": ["hang: no answer within 300 s"], "message": "", "new_artifacts": [], "seconds": 300}
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
    problems += [p for p in check_workspace(d / "ws") if p not in damaged]
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


def machine() -> dict:
    """What the cases ran on."""
    import platform

    from edgeres import __version__

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else \
        platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "edgeres": __version__,
            "system": f"{platform.system()} {platform.release()}"}


def totals(results: list[dict]) -> dict:
    def count(test: Callable[[list[str]], bool]) -> int:
        return sum(test(r["problems"]) for r in results)
    return {"cases": len(results), "clean": sum(r["ok"] for r in results),
            "tracebacks": count(lambda p: "traceback" in p),
            "wrong_successes": count(lambda p: "exit code 0" in p),
            "unclear_messages": count(lambda p: any(x.startswith("message lacks") for x in p)),
            "hangs": count(lambda p: any(x.startswith("hang") for x in p)),
            "corrupt": count(lambda p: any("manifest" in x or "changed" in x or "temp" in x
                                           for x in p))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build and keep the work directories here")
    parser.add_argument("--only", help="run only the cases whose area or description contains this text "
                                       "(no JSON is written then)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="edgeres-hardening-"))
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "ws").is_dir():
        print("building the workspace (resnet20, 3 epochs, int8, 3 exports) ...", file=sys.stderr)
        ids = build_workspace(base / "ws")
        (base / "ids.json").write_text(json.dumps(ids))
    ids = json.loads((base / "ids.json").read_text())
    all_cases = cases(ids)
    if args.only:
        all_cases = [c for c in all_cases if args.only.lower() in f"{c.area} {c.what}".lower()]
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda ic: run_case(ic[1], base, ic[0]), enumerate(all_cases)))
    many = None if args.only else concurrent(base, ids["train"])
    if not args.only:
        out = Path(__file__).parent / "results" / "hardening.json"
        out.parent.mkdir(exist_ok=True)
        kept = [{"area": r["area"], "what": r["what"], "exit": r["exit"], "verdict": "clean" if r["ok"] else
                 "; ".join(r["problems"]), "message": r["message"][:160]} for r in results]
        out.write_text(json.dumps({"command": "python benchmarks/hardening.py", "machine": machine(),
                                   "totals": totals(results), "seconds": round(time.perf_counter() - start),
                                   "concurrent": many, "cases": kept}, indent=1) + "\n")

    print("| # | area | bad input | exit | message (first error line) | ok |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        ok = "yes" if r["ok"] else "**NO**: " + "; ".join(r["problems"])
        print(f"| {i} | {r['area']} | {r['what']} | {r['exit']} | {r['message'].replace('|', '/')[:140]} | {ok} |")
    t = totals(results)
    print(f"\n{t['clean']} of {t['cases']} bad inputs handled cleanly ({t['tracebacks']} tracebacks, "
          f"{t['wrong_successes']} wrong successes, {t['unclear_messages']} unclear messages, {t['hangs']} hangs, "
          f"{t['corrupt']} corrupt workspaces).")
    if many:
        print(f"{many['processes']} concurrent edgeres processes: exit codes {sorted(set(many['exit_codes']))}, "
              f"{many['new_artifacts']} new artifacts, {len(many['problems'])} problems, {many['tracebacks']} "
              f"tracebacks, {many['wall_seconds']} s wall")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
