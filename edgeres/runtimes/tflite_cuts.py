"""A TFLite file cut short: its first operators, with every tensor they make that none of them reads as an
output (``prefix``), so that a runtime which drops operators whose results nobody reads (XNNPACK does: a
file cut after a block's shortcut convolution alone skipped the block's two other convolutions) still runs
them all. TFLite has no per-operator profiler in Python, so an operator's time is measured
as the difference between the prefixes that end after it and before it, each run as bench runs the file
(XNNPACK); the prefix of no operator (its input as its output) costs what a call costs.

The primary subgraph's operator list is in execution order, so a prefix of it is a complete model. The cut
is made in the file's own bytes: the length of the operator list is lowered, and the output list is
rewritten in place (one output) or appended at the end of the file and pointed to (several); the
signatures, which name the file's own outputs, are dropped the same way. Nothing moves, so every weight
keeps the alignment the converter gave it: a file packed anew ran its fp32 ResNet-18 about 14 % slower
here. The flatbuffer is read with the schema's generated code, which LiteRT ships.
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
    """One file, read once: its operators' types (``kinds``) in execution order, ``position(tensor)``: how many
    operators make it; ``prefix(kept)`` gives the bytes of the file's first ``kept`` operators."""

    def __init__(self, path: Path):
        schema = flatbuffer_schema()
        if schema is None:
            raise ImportError("no TFLite flatbuffer schema here (pip install ai-edge-litert)")
        self._bytes = Path(path).read_bytes()
        model = schema.Model.GetRootAs(self._bytes, 0)
        graph = model.Subgraphs(0)
        self.operators = graph.OperatorsLength()
        self._input = int(graph.Inputs(0))
        names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        self.kinds: list[str] = []
        self._reads: list[list[int]] = []
        self._makes: list[list[int]] = []
        for i in range(self.operators):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            custom = code.CustomCode()
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            self.kinds.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
            self._reads.append([int(op.Inputs(j)) for j in range(op.InputsLength())])
            self._makes.append([int(op.Outputs(j)) for j in range(op.OutputsLength())])
        self._producer = {t: i for i, made in enumerate(self._makes) for t in made}
        self._at = {"operators": _length_at(graph, _OPERATORS), "outputs": _length_at(graph, _OUTPUTS),
                    "signatures": _length_at(model, _SIGNATURES)}
        self._outputs_field = graph._tab.Pos + graph._tab.Offset(_OUTPUTS)  # noqa: SLF001

    def position(self, tensor: int) -> int:
        """How many of the file's first operators it takes to make ``tensor``."""
        if int(tensor) not in self._producer:
            raise ValueError(f"tensor {tensor} is made by no operator of the file")
        return self._producer[int(tensor)] + 1

    def prefix(self, kept: int) -> bytes:
        """The file's first ``kept`` operators (0: none, the input as the output); every tensor they make that
        none of them reads is an output, the last operator's first."""
        if not 0 <= kept <= self.operators:
            raise ValueError(f"the file has {self.operators} operators, not {kept}")
        if kept == 0:
            return self._cut(0, [self._input])
        read = {t for inputs in self._reads[:kept] for t in inputs}
        unread = [t for made in self._makes[:kept] for t in made if t not in read]
        last = self._makes[kept - 1][0]
        return self._cut(kept, [last, *(t for t in unread if t != last)])

    def _cut(self, kept: int, outputs: list[int]) -> bytes:
        data = bytearray(self._bytes)
        struct.pack_into("<I", data, self._at["operators"], kept)
        if self._at["signatures"] is not None:
            struct.pack_into("<I", data, self._at["signatures"], 0)
        if len(outputs) == 1:
            struct.pack_into("<Ii", data, self._at["outputs"], 1, outputs[0])
            return bytes(data)
        data += bytes(-len(data) % 16)  # a new output list at the end, which the field then points to
        struct.pack_into("<I", data, self._outputs_field, len(data) - self._outputs_field)
        data += struct.pack(f"<I{len(outputs)}i", len(outputs), *outputs)
        return bytes(data)
