"""Property-based tests (hypothesis) over what users type and write: recipes, device profiles, the CLI's
options, and what lies in a workspace (manifests, saved bench results). Every input either works or ends
in one clear ``EdgeresError`` (CLI: a message and a non-zero exit), never another exception. Inputs are
mutations of the shipped, valid files, so that most of them get deep into validation instead of failing
at the first key."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from edgeres import devices, recipe
from edgeres.errors import EdgeresError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                    st.text(max_size=12), st.sampled_from(["", "..", "../../etc/passwd", "-rf", "a b", "int8",
                                                           "fp32", "all", "cpu", "onnx", "0", "-1", "1e999"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(doc, prefix=()):
    """Every key path of a nested mapping (lists count as leaves)."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))


def _mutate(doc: dict, draw) -> dict:
    """``doc`` with one to three random edits: a value replaced, a key removed, a key added."""
    doc = yaml.safe_load(yaml.safe_dump(doc))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "remove":
            parent.pop(path[-1], None)
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return doc


def _write(text: str) -> Path:
    handle, name = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(handle, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    return Path(name)


def _load_or_clear_error(loader, text: str):
    path = _write(text)
    try:
        return loader(path)
    except EdgeresError as exc:
        assert str(path) in str(exc), exc  # names the file
        return exc
    finally:
        path.unlink()


MAIN_RECIPE = yaml.safe_load((REPO / "recipes" / "resnet18-fashion-int8-all.yaml").read_text())
PI_PROFILE = yaml.safe_load((REPO / "devices" / "raspberrypi.yaml").read_text())


@FUZZ
@given(st.data())
def test_recipe_schema_never_crashes(data):
    doc = _mutate(MAIN_RECIPE, data.draw)
    result = _load_or_clear_error(recipe.load, yaml.safe_dump(doc, allow_unicode=True))
    if isinstance(result, recipe.Recipe):  # accepted: then it is what the schema promises
        assert result.enabled_steps() and all(s in recipe.STEP_ORDER for s in result.enabled_steps())


@FUZZ
@given(st.data())
def test_device_profile_schema_never_crashes(data):
    doc = _mutate(PI_PROFILE, data.draw)
    result = _load_or_clear_error(devices.load, yaml.safe_dump(doc, allow_unicode=True))
    if isinstance(result, devices.Profile):
        assert result.runtimes.names() and result.description
        if result.estimate is not None:
            figures = [f for unit in result.estimate.units.values() for f in (
                unit.peak_fp32_gops, unit.peak_fp16_gops, unit.peak_int8_gops, unit.memory_bandwidth_gbs) if f]
            assert figures and all(math.isfinite(f.value) for f in figures)


@FUZZ
@given(st.text(max_size=200))
def test_any_text_as_a_recipe_or_profile_is_a_clear_error_or_valid(text):
    for loader in (recipe.load, devices.load):
        _load_or_clear_error(loader, text)


# -- the CLI ------------------------------------------------------------------------------------------
# Options per command, with values that are wrong in every way a user manages. Options that would start
# real work once parsed (training, the arm64 root) get a dataset directory that does not exist, so that
# the work stops at its first check.
OPTIONS = {
    "train": ["--epochs", "--batch-size", "--lr", "--label-smoothing", "--weights", "--num-classes",
              "--input-size", "--limit", "--eval-limit", "--dataset", "--mean", "--std", "--seed"],
    "quantize": ["--calib-samples", "--estimator", "--bias-correction", "--max-drop", "--epochs", "--weights",
                 "--eval-limit", "--dataset", "--int8", "--qat", "--analyze", "--strict"],
    "prune": ["--ratio", "--method", "--finetune-epochs", "--iterative", "--eval-limit", "--global", "--uniform"],
    "export": ["--target", "--precision", "--model", "--output", "--io", "--verify-limit", "--force",
               "--no-verify"],
    "bench": ["--device", "--model", "--target", "--precision", "--eval-limit", "--threads", "--min-runs",
              "--min-seconds", "--warmup", "--rounds", "--estimate", "--emulate"],
    "eval": ["--dataset", "--eval-limit"],
    "info": [],
    "report": [],
    "run": ["--device", "--from", "--dry-run"],
    "models": [],
}
WORDS = st.sampled_from(["", "0", "-1", "1", "3", "0.5", "1.5", "nan", "inf", "-0", "1e999", "int8", "fp16", "all",
                         "onnx", "tflite", "openvino", "cpu", "raspberrypi", "nosuchdevice", "resnet18", "resnet20",
                         "resnet", "../../etc/passwd", "/dev/null", "--", "-x", "x" * 300, "ü", "l1", "magnitude",
                         "100000", "1000000000000", "/dev/zero"])


@pytest.fixture(scope="module")
def empty_places(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "ws").mkdir()
    return base


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cli_options_work_or_fail_clearly(empty_places, data):
    from typer.testing import CliRunner

    from edgeres.cli.app import app

    command = data.draw(st.sampled_from(sorted(OPTIONS)))
    args = [command]
    if command in ("info", "report", "run", "train", "quantize", "prune"):
        args.append(data.draw(st.one_of(WORDS, st.text(max_size=20))))
    for _ in range(data.draw(st.integers(0, 4))):
        args.append(data.draw(st.sampled_from(OPTIONS[command] or ["--help"])))
        if data.draw(st.booleans()):
            args.append(data.draw(st.one_of(WORDS, st.text(max_size=20))))
    if command in ("train", "quantize", "prune", "eval", "bench", "run"):
        args += ["--data", str(empty_places / "no-dataset")]
    env = {"EDGERES_WORKSPACE": str(empty_places / "ws"), "COLUMNS": "200"}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code != 0:
        assert result.output.strip(), args  # a message, not silence
    assert not any(p.name.startswith(".tmp-") for p in (empty_places / "ws").iterdir())  # nothing half-written


# -- what lies in a workspace: manifests and saved bench results -------------------------------------------
# A hand edit, a bad copy or a hostile file: every mutation either leaves a valid artifact, or is skipped in
# listings with a warning naming the file and refused by name where it is asked for; never a traceback.
@pytest.fixture(scope="module")
def workspace_template(tmp_path_factory):
    from test_workspace import small_workspace

    root = tmp_path_factory.mktemp("template") / "ws"
    return root, small_workspace(root)


def _fresh_copy(template: Path) -> Path:
    """A copy of the template workspace under a new name (so that each example's messages are its own)."""
    import shutil

    target = Path(tempfile.mkdtemp(prefix="fuzz-ws-")) / "ws"
    shutil.copytree(template, target, symlinks=True)
    return target


def _mutated_text(data, text: str) -> str:
    """``text`` (JSON) after a structural mutation, or cut short, or with one character changed."""
    how = data.draw(st.sampled_from(["structure", "structure", "truncate", "character"]))
    if how == "structure":
        return json.dumps(_mutate(json.loads(text), data.draw))  # NaN and infinity written as bare tokens
    cut = data.draw(st.integers(0, max(len(text) - 1, 0)))
    if how == "truncate":
        return text[:cut]
    return text[:cut] + data.draw(st.characters(codec="utf-8")) + text[cut + 1:]


def _cli(*args: str, workspace: Path) -> tuple[int, str]:
    from test_workspace import cli

    code, text = cli(*args, workspace=workspace)
    assert "Traceback" not in text, (args, text)
    return code, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_manifest_mutations_are_skipped_or_refused_by_name(workspace_template, data):
    import shutil

    from edgeres.workspace import read_manifest

    template, ids = workspace_template
    kind = data.draw(st.sampled_from(sorted(ids)))
    ws = _fresh_copy(template)
    try:
        directory = ws / ids[kind]
        manifest = directory / "manifest.json"
        manifest.write_text(_mutated_text(data, manifest.read_text()), encoding="utf-8", errors="surrogatepass")
        try:
            read_manifest(directory)
            valid = True
        except EdgeresError as exc:
            assert str(manifest) in str(exc)
            valid = False
        code, text = _cli("info", workspace=ws)
        assert code == 0 and (ids[kind] in text if valid else str(manifest) in text), text
        assert all(ids[other] in text for other in ids if other != kind), text  # the others are unaffected
        code, text = _cli("info", ids[kind], workspace=ws)
        assert code == 0 or str(manifest) in text or f"artifact {ids[kind]}" in text, text
        reader = ["report"] if kind == "bench" else ["export", "--target", "onnx", "--no-verify"]
        code, text = _cli(*reader, workspace=ws)  # the step that would read it: a clear end, whatever it is
        assert code == 0 or "error: " in text, text
    finally:
        shutil.rmtree(ws.parent, ignore_errors=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_bench_results_mutations_render_or_are_refused_by_name(workspace_template, data):
    """results.json edited consistently (its hash re-recorded, as a careful hand edit would): `report`
    draws it, or names the file; nothing in between."""
    import shutil

    from edgeres.workspace import Workspace

    template, ids = workspace_template
    ws = _fresh_copy(template)
    try:
        results = ws / ids["bench"] / "results.json"
        text = results.read_text()
        if data.draw(st.booleans()):  # into one row: the renderers read rows most
            doc = json.loads(text)
            index = data.draw(st.integers(0, len(doc["rows"]) - 1))
            doc["rows"][index] = _mutate(doc["rows"][index], data.draw)
            text = json.dumps(doc)
        else:
            text = _mutated_text(data, text)
        results.write_text(text, encoding="utf-8", errors="surrogatepass")
        workspace = Workspace(ws)
        workspace.rehash(workspace.resolve(ids["bench"]), ["results.json"])
        code, out = _cli("report", ids["bench"], workspace=ws)
        assert code == 0 or str(results) in out, out
        code, out = _cli("info", workspace=ws)  # the listing and the other artifacts are unaffected
        assert code == 0 and all(i in out for i in ids.values()), out
        code, out = _cli("info", ids["export"], workspace=ws)
        assert code == 0, out
    finally:
        shutil.rmtree(ws.parent, ignore_errors=True)
