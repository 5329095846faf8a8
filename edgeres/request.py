"""The base of the library's requests: a step's options, as its recipe model declares them, plus where they apply.

``QuantizeRequest(Request, QuantizeStep)`` adds only the model and the data to the step's own fields, so a
default or a bound is written once, in ``edgeres.recipe``, for the command line, the recipe and the library
call alike. A bad value is one ``EdgeresError`` naming its option (``--lr nan: Input should be a finite
number``), whichever of the three it came from.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from edgeres.errors import EdgeresError


class Request(BaseModel):
    """Keyword-only, validated on construction; unknown names are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise EdgeresError(problem(exc, type(self), values)) from None


def flag(name: str, field: FieldInfo) -> str:
    """The command-line name of a model field (``calib_samples`` -> ``--calib-samples``, unless it says)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return extra.get("flag") or "--" + name.replace("_", "-")


def problem(exc: ValidationError, model: type[BaseModel], given: dict[str, Any]) -> str:
    """The first problem of a validation, in one line that names the option and the value given."""
    first = exc.errors()[0]
    name = first["loc"][0] if first["loc"] else None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown option {name!r}"
    if first["type"] == "missing" and name in model.model_fields:
        return f"missing option {flag(name, model.model_fields[name])}"
    if name in given and name in model.model_fields:
        return f"{flag(name, model.model_fields[name])} {given[name]!r}: {message}"
    return message
