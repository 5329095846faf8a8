from __future__ import annotations

from typing import Annotated

import typer


def models(pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'resnet1*'.")] = "*") -> None:
    """List the model zoo."""
    from rich.table import Table

    from edgeres.console import out
    from edgeres.models import REGISTRY, list_models

    table = Table("name", "family", "description", "ImageNet weights")
    for name in list_models(pattern):
        spec = REGISTRY[name]
        table.add_row(name, spec.family, spec.description, "local file" if spec.imagenet_weights_file else "-")
    out.print(table)
