"""Runtimes: load an exported model file and run it. One module per runtime, one entry per runtime in
``registry.RUNTIMES``.

These modules import only the standard library, numpy and their own runtime package (never torch or
the rest of edgeres), so the ssh device backend can copy them to a device as they are and run the very
same code there; ``torch_rt`` (the FP32 baseline) is the exception and runs on the edgeres host only.
Every session takes NCHW float32 batches, normalized as the model's preprocessing says, and returns
float32 logits; layout and int8 input/output conversions happen inside the session.
"""

from __future__ import annotations

from pathlib import Path

from . import registry
from .base import RuntimeUnavailable, Session  # noqa: F401


def open_session(path: Path | str, runtime: str | None = None, **options) -> Session:
    """A session for a model file; the runtime defaults to the one its suffix implies."""
    path = Path(path)
    found = registry.RUNTIMES.get(runtime) if runtime else registry.for_suffix(path.suffix)
    if found is None:
        raise RuntimeUnavailable(f"no runtime for {path.name} (known: {', '.join(registry.RUNTIMES)})")
    return registry.session_module(found.name).open_session(path, **options)
