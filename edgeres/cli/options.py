"""Command-line options generated from a step's pydantic model, so that each option is declared once.

``@step_options(QuantizeStep)`` on a command that takes ``options``: every field of the model the command
does not declare itself becomes a Typer option (``calib_samples`` -> ``--calib-samples``; ``json_schema_extra=
{"flag": "--device"}`` names it otherwise). A ``Literal`` becomes a choice that Typer checks as it parses and
lists in ``--help``; a ``bool`` becomes ``--x/--no-x``; the field's description, bounds and default make the
help. Options not given stay unset, so the model supplies every default (timm's ``create_model`` dropping
``None``); the model validates the rest before the command runs, and a bad value is one error naming the flag.
"""

from __future__ import annotations

import inspect
import types
import typing
from enum import Enum
from typing import Annotated, Any, Callable, Literal, Optional

import annotated_types
import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from edgeres.errors import EdgeresError
from edgeres.request import flag, problem

_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="), (annotated_types.Lt, "lt", "<"),
           (annotated_types.Le, "le", "<="))


def step_options(model: type[BaseModel], *, into: str = "options") -> Callable[[Callable], Callable]:
    """Give the decorated command one option per field of ``model``; it receives the validated model as ``into``."""

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True).parameters
        fields = {name: field for name, field in model.model_fields.items() if name not in own}
        parameters = []
        for parameter in own.values():
            parameters += ([_parameter(name, field) for name, field in fields.items()] if parameter.name == into
                           else [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)])

        def run(**kwargs: Any) -> Any:
            given = {name: _plain(value) for name in fields if (value := kwargs.pop(name)) not in (None, [], ())}
            return command(**kwargs, **{into: parse(model, given)})

        run.__name__, run.__qualname__, run.__doc__, run.__module__ = (command.__name__, command.__qualname__,
                                                                        command.__doc__, command.__module__)
        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def parse(model: type[BaseModel], given: dict[str, Any]) -> BaseModel:
    """``model`` from the options given; the first problem as one error naming its ``--flag``."""
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise EdgeresError(problem(exc, model, given)) from None


def default(field: FieldInfo) -> Any:
    """The value a field takes when it is not given."""
    return field.get_default(call_default_factory=True)


def bounds(field: FieldInfo) -> dict[str, float]:
    """A number field's bounds: ``{"gt": 0, "le": 10}``."""
    found = {}
    for item in field.metadata:
        for kind, key, _ in _BOUNDS:
            if isinstance(item, kind):
                found[key] = getattr(item, key)
    return found


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    kind = _cli_type(name, _without_none(field.annotation))
    option = flag(name, field)
    declared = f"{option}/--no-{option[2:]}" if kind is bool else option
    annotation = Annotated[Optional[kind], typer.Option(declared, help=_help(field), show_default=False)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None)


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def _cli_type(name: str, annotation: Any) -> Any:
    """What Typer parses: a ``Literal`` becomes an Enum of its values, lists keep their item type."""
    if typing.get_origin(annotation) is list:
        return list[_cli_type(name, typing.get_args(annotation)[0])]
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        return Enum(name.title().replace("_", ""), [(v, v) for v in values], type=str)
    if typing.get_origin(annotation) is Annotated:
        return _cli_type(name, typing.get_args(annotation)[0])
    return annotation


def _help(field: FieldInfo) -> str:
    """The description, then the bounds and the default: ``Peak learning rate. (0 < x <= 10; default 0.1)``."""
    found = bounds(field)
    lower = [f"{found[k]} {'<' if k == 'gt' else '<='} " for k in ("gt", "ge") if k in found]
    upper = [f" {'<' if k == 'lt' else '<='} {found[k]}" for k in ("lt", "le") if k in found]
    notes = [f"{''.join(lower)}x{''.join(upper)}"] if found else []
    if field.is_required():
        notes.append("required")
    elif (value := default(field)) not in (None, False, []):
        notes.append(f"default {_shown(value)}")
    return f"{field.description or ''} ({'; '.join(notes)})" if notes else field.description or ""


def _shown(value: Any) -> str:
    if value is True:
        return "on"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _plain(value: Any) -> Any:
    """A parsed value as the model takes it: Enum members become their strings."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.value if isinstance(value, Enum) else value
