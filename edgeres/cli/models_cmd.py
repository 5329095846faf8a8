from __future__ import annotations

from typing import Annotated

import typer

from edgeres.cli.common import JsonOpt


def models(pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'resnet1*'.")] = "*",
           json_: JsonOpt = False) -> None:
    """List the model zoo.

    --json: {"models": [{"name", "family", "depth", "description", "default_epochs", "imagenet_weights"}]},
    imagenet_weights being torchvision's file name in the torch hub cache, or null."""
    from edgeres.console import emit_json, show, table
    from edgeres.models import REGISTRY, list_models

    rows = [{"name": spec.name, "family": spec.family, "depth": spec.depth, "description": spec.description,
             "default_epochs": spec.default_epochs, "imagenet_weights": spec.imagenet_weights_file}
            for spec in (REGISTRY[name] for name in list_models(pattern))]
    if json_:
        emit_json({"models": rows})
        return
    shown = table("name", "family", "description", "ImageNet weights")
    for row in rows:
        shown.add_row(row["name"], row["family"], row["description"], "local file" if row["imagenet_weights"] else "-")
    show(shown)
