"""Each step's options are declared once, in its recipe model: the command line offers every field with the
model's default, choices and bounds, and refuses a bad value by its flag before any work."""

from __future__ import annotations

import typing

import pytest
import typer
from typer.testing import CliRunner

from edgeres.cli.app import app
from edgeres.cli.options import bounds, default, flag
from edgeres.recipe import (BenchStep, DiagnoseOptions, ExportStep, ImportStep, Origin, PruneStep, QuantizeStep,
                            TrainStep, TuneStep)

COMMANDS = {  # command line before the options, and the models it takes its options from
    "train": (["train", "resnet20"], [Origin, TrainStep]),
    "import": (["import", "resnet20", "--weights", "w.pt"], [ImportStep]),
    "quantize": (["quantize", "resnet20", "--int8"], [QuantizeStep]),
    "prune": (["prune", "resnet20"], [PruneStep]),
    "export": (["export"], [ExportStep]),
    "bench": (["bench"], [BenchStep]),
    "tune": (["tune", "resnet20", "--max-drop", "0.5"], [TuneStep]),
    "diagnose": (["diagnose"], [DiagnoseOptions]),
}
REQUIRED = {"max_drop": 0.5}  # what the command lines above give for each model's required fields
CASES = [(command, model, name) for command, (_, models) in COMMANDS.items() for model in models
         for name in model.model_fields if not (command == "import" and name == "weights")]


def _params(command: str) -> dict:
    return {param.name: param for param in typer.main.get_command(app).commands[command].params}


def _choices(annotation) -> tuple[str, ...]:
    """The values of the first ``Literal`` inside a field's type."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return next((found for arg in typing.get_args(annotation) if (found := _choices(arg))), ())


def _bad_values(model, name: str) -> list[str]:
    field = model.model_fields[name]
    found = bounds(field)
    outside = {"gt": 0, "ge": -1, "lt": 0, "le": 1}  # how far past each kind of bound a bad value lies
    bad = [str(bound + outside[key]) for key, bound in found.items()]
    return bad + (["nosuchchoice"] if _choices(field.annotation) else [])


@pytest.mark.parametrize("command, model, name", CASES)
def test_every_field_is_an_option_with_the_model_default(command, model, name):
    field = model.model_fields[name]
    param = _params(command)[name]
    assert flag(name, field) in param.opts
    assert param.default is None  # not given: the model's own default applies
    if field.is_required():
        assert "required" in (param.help or "")
        return
    required = {k: v for k, v in REQUIRED.items() if k in model.model_fields and model.model_fields[k].is_required()}
    made = model(**required)
    assert made.model_dump()[name] == default(field) or name in ("targets", "precisions")
    if _choices(field.annotation):
        parsed = param.type_descriptor.annotation  # the Enum Typer parses into, or a list of it
        parsed = (typing.get_args(parsed) or (parsed,))[0]
        assert set(_choices(field.annotation)) == {choice.value for choice in parsed}
    text = param.help or ""
    for value in bounds(field).values():
        assert str(value) in text, text
    if default(field) not in (None, False, [], ()):
        assert "default" in text, text


@pytest.mark.parametrize("command, model, name", [case for case in CASES if _bad_values(case[1], case[2])])
def test_a_bad_value_is_refused_by_its_flag_before_any_work(tmp_path, command, model, name):
    args, _ = COMMANDS[command]
    option = flag(name, model.model_fields[name])
    for value in _bad_values(model, name):
        result = CliRunner().invoke(app, [*args, option, value, "-w", str(tmp_path / "ws")])
        assert result.exit_code != 0, (option, value, result.output)
        assert isinstance(result.exception, SystemExit), (option, value, result.exception)
        assert "Traceback" not in result.output and option in result.output, result.output
        assert not (tmp_path / "ws").exists()
