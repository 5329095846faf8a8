"""Reading the YAML files users write (recipes, device profiles): safe loading, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_BYTES = 1 << 20  # a recipe or a profile is a few kB; more is a wrong file (or /dev/zero)


def _loader():
    """PyYAML's safe loader, refusing a key given twice (plain PyYAML keeps the last one silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def read_mapping(path: Path, what: str, keys_hint: str) -> dict[str, Any]:
    """Safe-load ``path``, which must hold a mapping; errors name the file (and the line)."""
    import yaml

    from edgeres.errors import EdgeresError

    try:
        if path.exists() and not path.is_file():  # a directory, or a device such as /dev/zero: endless
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise EdgeresError(f"cannot read {what} {path}: it is {kind}")
        if path.exists() and path.stat().st_size > MAX_BYTES:
            raise EdgeresError(f"{what} {path} is larger than {MAX_BYTES >> 20} MB: not a {what}")
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())  # noqa: S506 - a safe loader
    except OSError as exc:
        raise EdgeresError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EdgeresError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EdgeresError(f"{what} {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise EdgeresError(f"{what} {path} must be a mapping of keys ({keys_hint}), got {type(data).__name__}")
    return data
