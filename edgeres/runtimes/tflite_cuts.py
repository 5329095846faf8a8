"""A TFLite file cut short after one of its tensors: the operators up to (and including) the one that makes
it, that tensor as the only output. TFLite has no per-operator profiler in Python, so a block's time is
measured as the difference between the files cut after the block and after the one before it, each run as
bench runs the file (XNNPACK).

The primary subgraph's operator list is in execution order, so a prefix of it is a complete model. The cut
is made in the file's own bytes: the length of the operator list and of the output list is lowered and the
one output rewritten (the signatures, which name the file's own outputs, are dropped the same way). Nothing
moves, so every weight keeps the alignment the converter gave it: a file packed anew ran its fp32
ResNet-18 about 14 % slower here. The flatbuffer is read with the schema's generated code, which LiteRT ships.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .tflite_rt import flatbuffer_schema

# vtable slots (4 + 2 x field index) in TFLite's schema: SubGraph.outputs, SubGraph.operators,
# Model.signature_defs
_OUTPUTS, _OPERATORS, _SIGNATURES = 8, 10, 18


def _length_at(table, slot: int) -> int | None:
    """Where the length of one of ``table``'s vector fields lies in the buffer (None: no such field)."""
    offset = table._tab.Offset(slot)  # noqa: SLF001 - the generated code's own table accessor
    return table._tab.Vector(offset) - 4 if offset else None  # noqa: SLF001


class Cutter:
    """One file, read once; ``cut(tensor)`` gives the bytes of the file cut after ``tensor``."""

    def __init__(self, path: Path):
        schema = flatbuffer_schema()
        if schema is None:
            raise ImportError("no TFLite flatbuffer schema here (pip install ai-edge-litert)")
        self._bytes = Path(path).read_bytes()
        model = schema.Model.GetRootAs(self._bytes, 0)
        graph = model.Subgraphs(0)
        self.operators = graph.OperatorsLength()
        self._producer = {int(op.Outputs(j)): i for i in range(self.operators)
                          for op in [graph.Operators(i)] for j in range(op.OutputsLength())}
        self._at = {"operators": _length_at(graph, _OPERATORS), "outputs": _length_at(graph, _OUTPUTS),
                    "signatures": _length_at(model, _SIGNATURES)}

    def position(self, tensor: int) -> int:
        """How many operators the file cut after ``tensor`` keeps."""
        if int(tensor) not in self._producer:
            raise ValueError(f"tensor {tensor} is made by no operator of the file")
        return self._producer[int(tensor)] + 1

    def cut(self, tensor: int) -> bytes:
        kept = self.position(tensor)
        data = bytearray(self._bytes)
        struct.pack_into("<I", data, self._at["operators"], kept)
        struct.pack_into("<Ii", data, self._at["outputs"], 1, int(tensor))
        if self._at["signatures"] is not None:
            struct.pack_into("<I", data, self._at["signatures"], 0)
        return bytes(data)
