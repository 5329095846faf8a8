"""Output for people and for programs: --json documents, tables that never cut a value, one-line error summaries."""

from __future__ import annotations

import pytest

from edgeres.errors import first_line


@pytest.mark.parametrize("exc, expected", [
    (RuntimeError(), "RuntimeError"),
    (ValueError("  \n\n"), "ValueError"),
    (OSError("\n  first  \nsecond"), "first"),
    (KeyError("k"), "'k'"),
])
def test_first_line_is_never_empty(exc, expected):
    from edgeres.runtimes.base import first_line as runtimes_first_line  # its twin shipped to devices

    assert first_line(exc) == expected == runtimes_first_line(exc)
    assert first_line(RuntimeError("x" * 500), 200) == "x" * 200


def test_an_empty_error_message_is_reported_not_a_traceback(tmp_path):
    """A model whose export raises an exception without text still ends in one EdgeresError naming it."""
    import torch

    from edgeres.errors import EdgeresError
    from edgeres.export.onnx import torch_to_onnx

    class Silent(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError()

    with pytest.raises(EdgeresError, match="ONNX export failed: RuntimeError"):
        torch_to_onnx(Silent(), tmp_path / "m.onnx", (1, 1, 8, 8))
    assert not (tmp_path / "m.onnx").exists()
