"""Reading the YAML files users write (recipes, device profiles): safe loading, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_mapping(path: Path, what: str, keys_hint: str) -> dict[str, Any]:
    """Safe-load ``path``, which must hold a mapping; errors name the file (and the line)."""
    import yaml

    from edgeres.errors import EdgeresError

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise EdgeresError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EdgeresError(f"{what} {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise EdgeresError(f"{what} {path} must be a mapping of keys ({keys_hint}), got {type(data).__name__}")
    return data
