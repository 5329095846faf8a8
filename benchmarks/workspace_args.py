"""The command line of the benchmarks that measure the files already in a workspace, pinned to one
runtime thread and repeated: ``--workspace`` (or EDGERES_WORKSPACE), ``--threads``, ``--repeats``; and the
files they measure (``newest_exports``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    """The shared options; a script adds its own before ``parse``."""
    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    found.add_argument("--workspace", type=Path, default=os.environ.get("EDGERES_WORKSPACE"))
    found.add_argument("--threads", type=int, default=1)
    found.add_argument("--repeats", type=int, default=3)
    return found


def parse(found: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments; exits with a message when no workspace is given."""
    args = found.parse_args()
    if args.workspace is None:
        sys.exit("--workspace (or EDGERES_WORKSPACE) is needed")
    return args


def newest_exports(ws, fmt: str, precisions: tuple[str, ...] | None = None) -> dict:
    """Precision -> the workspace's newest export of format ``fmt`` (not compiled for an Edge TPU), of
    ``precisions`` or every precision; exits with a message when there is none."""
    newest = {}
    for export in sorted(ws.artifacts("export"), key=lambda a: a.manifest["created"]):
        m = export.manifest
        if m["format"] == fmt and not m.get("edgetpu") and (precisions is None or m["precision"] in precisions):
            newest[m["precision"]] = export
    if not newest:
        sys.exit(f"no {fmt} export in {ws.root}: run `edgeres export --target {fmt}` first")
    return dict(sorted(newest.items()))
