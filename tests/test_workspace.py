"""Artifacts are atomic: complete and findable, or not there at all; and nothing on disk is believed
unchecked: manifests are validated, files hashed, paths kept inside, user text printed verbatim."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace

# what a train, prune or quantize manifest must record besides the basics
MODEL = {"architecture": {"name": "resnet20", "num_classes": 10, "in_channels": 1},
         "preprocessing": {"input_size": 28, "channels": 1, "mean": [0.286], "std": [0.353], "layout": "NCHW"}}


def test_create_writes_manifest_with_hashes(tmp_path):
    ws = Workspace(tmp_path)
    with ws.create("train", model="resnet20", dataset="fashion-mnist", config={"epochs": 1}, **MODEL) as art:
        (art.dir / "model.pt").write_bytes(b"weights")
    manifest = json.loads((art.artifact.path / "manifest.json").read_text())
    assert manifest["kind"] == "train" and manifest["config"] == {"epochs": 1}
    assert set(manifest["files"]) == {"model.pt"} and len(manifest["files"]["model.pt"]) == 64
    assert ws.latest("train", model="resnet20").id == art.artifact.id


def test_failure_leaves_nothing(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(RuntimeError):
        with ws.create("train", model="resnet20", dataset="fashion-mnist", **MODEL) as art:
            (art.dir / "half.pt").write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [] and ws.latest() is None


def test_killed_writer_leaves_no_artifact_and_is_cleaned(tmp_path):
    code = (
        "import os, sys\nfrom edgeres.workspace import Workspace\n"
        f"with Workspace({str(tmp_path)!r}).create('train', model='m', dataset='d', **{MODEL!r}) as a:\n"
        "    (a.dir / 'model.pt').write_bytes(b'x')\n    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code])
    leftovers = [p for p in tmp_path.iterdir()]
    assert leftovers and all(p.name.startswith(".tmp-") for p in leftovers)
    ws = Workspace(tmp_path)
    assert ws.latest() is None
    with ws.create("train", model="m", dataset="d", **MODEL):
        pass
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_latest_is_newest_and_resolve_takes_prefixes(tmp_path):
    ws = Workspace(tmp_path)
    ids = []
    for _ in range(3):
        with ws.create("train", model="resnet20", dataset="fashion-mnist", **MODEL) as art:
            pass
        ids.append(art.artifact.id)
    assert ws.latest("train").id == ids[-1]
    assert ws.resolve(ids[0][:-1]).id == ids[0]
    with pytest.raises(EdgeresError, match="no artifact"):
        ws.resolve("nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_workspace_is_a_clear_error(tmp_path):
    tmp_path.chmod(0o500)
    with pytest.raises(EdgeresError, match="not writable"):
        with Workspace(tmp_path / "ws").create("train", model="m", dataset="d"):
            pass


def test_workspace_on_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeresError, match="not writable"):
        with Workspace(tmp_path / "file" / "ws").create("train", model="m", dataset="d"):
            pass


def _writer(root: str, index: int) -> str:
    """One of many processes: read the workspace, write an artifact of a few files, read again."""
    ws = Workspace(root)
    ws.artifacts()
    with ws.create("train", model=f"m{index}", dataset="d", config={"index": index}, **MODEL) as art:
        for name in ("model.pt", "notes.txt"):
            (art.dir / name).write_bytes(os.urandom(4096) + str(index).encode())
    ws.artifacts()
    return art.artifact.id


def test_twenty_concurrent_writers_corrupt_nothing(tmp_path):
    import multiprocessing

    from edgeres.workspace import MANIFEST, sha256

    with multiprocessing.get_context("spawn").Pool(20) as pool:
        ids = pool.starmap(_writer, [(str(tmp_path), i) for i in range(20)])
    assert len(set(ids)) == 20
    ws = Workspace(tmp_path)
    found = ws.artifacts("train")
    assert sorted(a.id for a in found) == sorted(ids)
    for artifact in found:
        manifest = json.loads((artifact.path / MANIFEST).read_text())
        assert manifest["config"]["index"] == int(manifest["model"][1:])
        assert {name: sha256(artifact.path / name) for name in manifest["files"]} == manifest["files"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _recorder(root: str, index: int) -> None:
    from edgeres.pipeline import _State
    from edgeres.recipe import Recipe

    recipe = Recipe.model_validate({"name": "r", "model": "resnet20", "steps": {"train": {}}})
    state = _State(Workspace(root), recipe)
    with Workspace(root).create("train", model="m", dataset="d", **MODEL) as art:
        pass
    state.record(f"key{index}", [art.artifact])


def test_concurrent_runs_of_one_recipe_keep_every_record(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.starmap(_recorder, [(str(tmp_path), i) for i in range(8)])
    state = json.loads((tmp_path / ".pipeline" / "r.json").read_text())
    assert sorted(state) == sorted(f"key{i}" for i in range(8))


def test_full_disk_during_a_write_keeps_nothing(tmp_path):
    """A file-size limit makes writes fail with EFBIG, as a full disk fails them with ENOSPC."""
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))\n"
        "from edgeres.cli.app import main\nmain()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "train", "resnet20", "--epochs", "0", "--eval-limit", "10",
                           "--workspace", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "could not write model.pt" in proc.stderr and "disk full" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_kill_9_during_training_leaves_no_artifact(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "edgeres", "train", "resnet20", "--epochs", "3", "--limit", "20000",
                             "--workspace", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    building = ()  # training builds in a resumable .pending- directory, other steps in .tmp-
    while time.time() < deadline and not building:
        building = [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".pending-"))]
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert building, "the training never started building its artifact"
    assert Workspace(tmp_path).latest() is None  # the half-trained model is not an artifact
    info = subprocess.run([sys.executable, "-m", "edgeres", "info", "--workspace", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "train-" not in info.stdout


# -- nothing on disk is believed unchecked --------------------------------------------------------------
BENCH_RESULTS = {  # a results.json as `edgeres bench --device raspberrypi --estimate` saves it, trimmed
    "model": "resnet20", "dataset": "fashion-mnist", "root": "train-resnet20-20261201-102352-dde04a",
    "device": {"name": "raspberrypi", "description": "Raspberry Pi 4 Model B", "arch": "aarch64",
               "connection": "ssh pi@raspberrypi.local:22", "profile": "devices/raspberrypi.yaml"},
    "mode": "estimated",
    "host": {"platform": "Linux-x86_64", "machine": "x86_64", "processor": "AMD EPYC", "cores": 2, "python": "3.11.7",
             "versions": {"onnxruntime": "1.32.0"}, "baseline_device": "cpu"},
    "device_host": None,
    "method": {"warmup": 0, "min_runs": 2, "min_seconds": 0, "max_runs": 2000, "throughput_batch": 8, "rounds": 1},
    "eval": {"split": "test", "n": 20, "limit": 20},
    "rows": [
        {"status": "measured", "top1": 5.0, "n": 20, "p50_ms": 65.613, "p90_ms": 78.397, "p99_ms": 81.273,
         "mean_ms": 65.613, "runs": 2, "throughput_ips": 224.662, "peak_rss_mb": 685.5, "variant": "torch fp32 (cpu)",
         "role": "baseline", "artifact": "train-resnet20-20261201-102352-dde04a", "format": "torch",
         "precision": "fp32", "runtime": "torch", "device": "cpu", "where": "host", "threads": 2,
         "size_bytes": 1114339, "rounds": 1, "speedup": 1.0, "delta_top1_pp": 0.0},
        {"status": "estimated", "top1": 5.0, "top1_where": "host", "n": 20, "p50_ms": 2.568, "variant": "onnx fp32",
         "role": "variant", "artifact": "export-resnet20-20261201-102434-c2b98b", "format": "onnx",
         "precision": "fp32", "runtime": "onnxruntime", "device": "CPUExecutionProvider", "where": "raspberrypi",
         "size_bytes": 1092003, "speedup": 25.546, "delta_top1_pp": 0.0, "agreement": 100.0,
         "estimate": {"bound": "compute", "compute_ms": 2.568, "memory_ms": 0.122, "macs": 30821248.0,
                      "assumptions": ["roofline at batch 1"],
                      "sources": {"peak_gops": {"value": 48.0, "source": "4 cores x 1.5 GHz x 8"},
                                  "memory_bandwidth_gbs": {"value": 12.8, "source": "LPDDR4-3200, 32 bit"}}}},
        {"status": "failed", "error": "model.onnx: cannot load", "variant": "onnx int8", "role": "variant",
         "format": "onnx", "precision": "int8", "runtime": "onnxruntime", "device": "CPUExecutionProvider",
         "artifact": "export-resnet20-20261201-102436-c38f00"},
    ],
    "skipped": [], "warnings": ["a [red]warning[/] that names [/x]"],
}


def small_workspace(root) -> dict[str, str]:
    """A train artifact, an OpenVINO-like export of it (two files) and a bench artifact with its reports,
    written by the real writers; their ids by kind."""
    from edgeres import report

    ws = Workspace(root)
    with ws.create("train", model="resnet20", dataset="fashion-mnist", **MODEL) as train:
        (train.dir / "model.pt").write_bytes(os.urandom(2048))
    with ws.create("export", model="resnet20", dataset="fashion-mnist", parent=train.artifact, format="openvino",
                   precision="fp32", runtime="openvino", file="model.xml", preprocessing=MODEL["preprocessing"]) as exp:
        (exp.dir / "model.xml").write_text("<net/>")
        (exp.dir / "model.bin").write_bytes(os.urandom(1024))
    fields = {k: v for k, v in BENCH_RESULTS.items() if k not in ("model", "dataset")}
    with ws.create("bench", model="resnet20", dataset="fashion-mnist", parent=train.artifact, **fields) as bench:
        report.save(BENCH_RESULTS, bench.dir, ("json", "md", "csv"))
    return {"train": train.artifact.id, "export": exp.artifact.id, "bench": bench.artifact.id}


def cli(*args: str, workspace) -> tuple[int, str]:
    """The edgeres command in this process (fast); exit code and stdout + stderr."""
    from typer.testing import CliRunner

    from edgeres.cli.app import app

    result = CliRunner().invoke(app, [*args, "--workspace", str(workspace)], env={"COLUMNS": "300"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def flip_a_bit(path, keep_mtime: bool = True) -> None:
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    if keep_mtime:  # as a careful tamperer would: only the ctime shows the write
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_changed_file_is_refused_naming_it_and_the_fix(tmp_path, monkeypatch):
    from edgeres import workspace

    monkeypatch.setattr(workspace, "_RACY_NS", 0)  # remember hashes at once (normally: files older than 2 s)
    ids = small_workspace(tmp_path)
    ws = Workspace(tmp_path)
    train = ws.resolve(ids["train"])
    assert train.file("model.pt") == train.path / "model.pt" and train.intact()
    assert (tmp_path / ".cache" / "hashes.json").is_file()  # the next process trusts a stat
    flip_a_bit(train.path / "model.pt")  # same size, same mtime: the remembered hash must not be believed
    for read in (lambda: train.file("model.pt"), lambda: ws.pick(None, ("train",)), lambda: ws.latest("train"),
                 lambda: ws.resolve(ids["train"], verify=True)):
        with pytest.raises(EdgeresError, match="model.pt of artifact train-resnet20-.* has changed") as info:
            read()
        assert "re-run the step that made it" in str(info.value) and str(train.path) in str(info.value)
    assert not train.intact()
    assert ws.latest("train", verify=False).id == ids["train"]  # listing still shows it


def test_a_missing_companion_file_is_named(tmp_path):
    ids = small_workspace(tmp_path)
    export = Workspace(tmp_path).resolve(ids["export"])
    (export.path / "model.bin").unlink()
    with pytest.raises(EdgeresError, match=r"model\.bin of artifact export-.* is missing"):
        export.file(export.manifest["file"])  # reading the .xml checks its .bin too
    code, text = cli("info", ids["export"], workspace=tmp_path)
    assert code == 1 and "model.bin" in text and "Traceback" not in text


def test_a_file_swapped_for_a_link_outside_is_refused(tmp_path):
    ids = small_workspace(tmp_path)
    train = Workspace(tmp_path).resolve(ids["train"])
    outside = tmp_path.parent / f"{tmp_path.name}-outside.pt"
    os.replace(train.path / "model.pt", outside)
    (train.path / "model.pt").symlink_to(outside)  # same content, but no longer the artifact's
    with pytest.raises(EdgeresError, match="leads outside the artifact"):
        train.verify()


def _edit(path, change):
    manifest = json.loads(path.read_text())
    changed = change(manifest)
    path.write_text(json.dumps(manifest if changed is None else changed))


MALFORMED = {  # what a hand edit, a bad copy or a hostile file does to a manifest -> words of the message
    "numeric created": (lambda m: m.update(created=12345), "created"),
    "a list": (lambda m: [m], "JSON list"),
    "no kind": (lambda m: m.pop("kind") and None, "kind"),
    "unknown kind": (lambda m: m.update(kind="deploy"), "kind"),
    "string input_size": (lambda m: m["preprocessing"].update(input_size="28"), "input_size"),
    "zero std": (lambda m: m["preprocessing"].update(std=[0.0]), "std"),
    "../ in model": (lambda m: m.update(model="../../evil"), "model"),
    "[/x] in model": (lambda m: m.update(model="a[/x]"), "model"),
    "parent in another workspace": (lambda m: m.update(parent="../other/train-x"), "parent"),
    "absolute file": (lambda m: m["files"].update({"/etc/passwd": "0" * 64}), "/etc/passwd"),
    "../ in files": (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "../../etc/passwd"),
    "hash that is not one": (lambda m: m["files"].update({"model.pt": "abc"}), "sha256"),
    "id of another directory": (lambda m: m.update(id="train-other"), "train-other"),
    "metrics a list": (lambda m: m.update(metrics=[1]), "metrics"),
    "architecture without a name": (lambda m: m["architecture"].pop("name") and None, "architecture.name"),
    "its own parent": (lambda m: m.update(parent=m["id"]), "own parent"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_manifest_is_skipped_with_a_warning_and_refused_by_name(tmp_path, case):
    change, words = MALFORMED[case]
    ids = small_workspace(tmp_path)
    manifest = tmp_path / ids["train"] / "manifest.json"
    _edit(manifest, change)
    ws = Workspace(tmp_path)
    assert ids["train"] not in {a.id for a in ws.artifacts()} and ids["export"] in {a.id for a in ws.artifacts()}
    with pytest.raises(EdgeresError, match="manifest") as info:
        ws.resolve(ids["train"])
    assert str(manifest) in str(info.value) and words in str(info.value), info.value
    code, text = cli("info", workspace=tmp_path)  # the listing goes on, naming what it left out
    assert code == 0 and str(manifest) in text and ids["export"] in text and "Traceback" not in text
    code, text = cli("info", ids["train"], workspace=tmp_path)
    assert code == 1 and str(manifest) in text and "Traceback" not in text


@pytest.mark.parametrize("field,value,words", [("format", "coreml", "format 'coreml'"),
                                               ("precision", "int4", "precision 'int4'"),
                                               ("runtime", "onnxruntime", "openvino files run on openvino")])
def test_an_export_manifest_names_a_known_format_precision_and_runtime(tmp_path, field, value, words):
    ids = small_workspace(tmp_path)
    _edit(tmp_path / ids["export"] / "manifest.json", lambda m: m.update({field: value}))
    with pytest.raises(EdgeresError, match=words):
        Workspace(tmp_path).resolve(ids["export"])


@pytest.mark.parametrize("text", ["", "{", '{"id": "x"', "NaN", '{"a": NaN}', "[" * 100_000, "\xff\xfe"])
def test_unparsable_manifests_are_named(tmp_path, text):
    ids = small_workspace(tmp_path)
    manifest = tmp_path / ids["train"] / "manifest.json"
    manifest.write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe{")
    assert ids["train"] not in {a.id for a in Workspace(tmp_path).artifacts()}
    code, out = cli("info", ids["train"], workspace=tmp_path)
    assert code == 1 and f"{manifest} is not valid JSON" in out


def test_infinity_in_a_manifest_is_refused(tmp_path):
    ids = small_workspace(tmp_path)
    manifest = tmp_path / ids["train"] / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"metrics": {}', '"metrics": {"top1": 1e999}'))
    with pytest.raises(EdgeresError, match="metrics.top1"):
        Workspace(tmp_path).resolve(ids["train"])


def test_followed_parents_and_paths_stay_in_the_workspace(tmp_path):
    ids = small_workspace(tmp_path / "a")
    other = Workspace(tmp_path / "b")
    with pytest.raises(EdgeresError, match="not an artifact of workspace") as info:
        other.resolve(str(tmp_path / "a" / ids["train"]))
    assert f"--workspace {tmp_path / 'a'}" in str(info.value)
    ws = Workspace(tmp_path / "a")
    export = ws.resolve(ids["export"])
    assert ws.parent_of(export).id == ids["train"] and ws.parent_of(ws.resolve(ids["train"])) is None
    shutil.rmtree(tmp_path / "a" / ids["train"])
    with pytest.raises(EdgeresError, match=f"made from {ids['train']}, which is not in workspace"):
        ws.parent_of(export)


def test_nan_never_lands_in_a_manifest(tmp_path):
    import numpy as np

    ws = Workspace(tmp_path)
    for bad, where in ((float("nan"), "metrics.drop_pp"), (np.float32("inf"), "metrics.drop_pp"),
                       ([1.0, float("-inf")], "metrics.drop_pp.1")):
        with pytest.raises(EdgeresError, match=f"non-finite number .* at {where}; nothing was saved"):
            with ws.create("quantize", model="resnet20", dataset="fashion-mnist", **MODEL) as art:
                (art.dir / "model.pt").write_bytes(b"x")
                art.manifest["metrics"] = {"drop_pp": bad}
    with pytest.raises(EdgeresError, match="non-finite number .* at config.max_drop"):
        with ws.create("quantize", model="resnet20", dataset="fashion-mnist", config={"max_drop": float("nan")},
                       **MODEL):
            pass
    assert list(tmp_path.iterdir()) == []


def test_report_checks_results_and_rewrites_its_files_with_new_hashes(tmp_path):
    ids = small_workspace(tmp_path)
    bench = tmp_path / ids["bench"]
    (bench / "results.md").write_text("stale")  # an older rendering: re-written, and its new hash recorded
    code, text = cli("report", workspace=tmp_path)
    assert code == 0, text
    assert "a [red]warning[/] that names [/x]" in text  # verbatim
    Workspace(tmp_path).resolve(ids["bench"]).verify()
    flip_a_bit(bench / "results.json", keep_mtime=False)
    code, text = cli("report", ids["bench"], workspace=tmp_path)
    assert code == 1 and "results.json of artifact" in text and "has changed" in text


def test_report_that_cannot_write_its_files_says_so_after_the_table(tmp_path):
    ids = small_workspace(tmp_path)
    (tmp_path / ids["bench"] / "results.csv").unlink()
    (tmp_path / ids["bench"] / "results.csv").mkdir()  # as unwritable as a read-only disk, even for root
    code, text = cli("report", workspace=tmp_path)
    assert code == 1 and "torch fp32 (cpu)" in text and "could not re-write the reports" in text


def test_user_text_prints_verbatim(tmp_path):
    """Paths, names and ids with rich markup in them print as they are, never as markup nor as an error."""
    root = tmp_path / "[red]ws[" / "x]:smile:"  # the path reads `[red]ws[/x]:smile:`
    ids = small_workspace(root)
    train = root / ids["train"]
    renamed = root / "train-[red]x[bold]"
    train.rename(renamed)
    _edit(renamed / "manifest.json", lambda m: m.update(id=renamed.name))
    code, text = cli("info", workspace=root)
    assert code == 0 and "train-[red]x[bold]" in text
    for args, words in ((["export", "--model", "[/x]", "--target", "onnx"], "for model '[/x]'"),
                        (["eval", "[red]nope[/red]"], "for model '[red]nope[/red]'"),
                        (["report", "[/x]"], f"in workspace {root}"),
                        (["info", "train-[red]x[bold]"], "train-[red]x[bold]")):
        code, text = cli(*args, workspace=root)
        assert words in text and "Traceback" not in text and "MarkupError" not in text, (args, text)
    code, text = cli("export", "--model", "resnet20", "--target", "onnx", workspace=root)  # model.pt is noise
    assert code == 1 and "using train-[red]x[bold] (train, resnet20" in text  # Workspace.pick's line
    assert f"failed onnx fp32: checkpoint {renamed / 'model.pt'}" in text  # a status line of the step's own


def test_say_reads_only_a_leading_style():
    from edgeres.console import styled

    assert styled("[green]saved[/] train-[red]x[/x]").plain == "saved train-[red]x[/x]"
    assert styled("[yellow]--calib-samples [bold]5").plain == "--calib-samples [bold]5"
    assert styled("[dim]train: unchanged ([/x])[/]").plain == "train: unchanged ([/x])"
    assert styled("[/x] :smile: [red]").plain == "[/x] :smile: [red]"
    assert styled("[notastyle]x[/] y").plain == "[notastyle]x[/] y"
