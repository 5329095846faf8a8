"""A TFLite file cut short after one of its tensors: the operators up to (and including) the one that makes
it, that tensor as the only output. TFLite has no per-operator profiler in Python, so a block's time is
measured as the difference between the files cut after the block and after the one before it, each run as
bench runs the file (XNNPACK).

The cut is made on the flatbuffer with the schema's object API (``schema_py_generated``, which LiteRT ships,
and ``flatbuffers``): the primary subgraph's operator list is in execution order, so a prefix of it is a
complete model. Weights and every other tensor stay as they are.
"""

from __future__ import annotations

import importlib
from pathlib import Path

_SCHEMAS = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated")


def _schema():
    for name in _SCHEMAS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no TFLite flatbuffer schema here (pip install ai-edge-litert)")


class Cutter:
    """One file, read once; ``cut(tensor)`` gives the bytes of the file cut after ``tensor``."""

    def __init__(self, path: Path):
        self._schema = _schema()
        self._model = self._schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
        graph = self._model.subgraphs[0]
        self._operators, self._outputs = list(graph.operators), list(graph.outputs)
        self._producer = {int(t): i for i, op in enumerate(self._operators) for t in op.outputs}

    @property
    def operators(self) -> int:
        return len(self._operators)

    def position(self, tensor: int) -> int:
        """How many operators the file cut after ``tensor`` keeps."""
        if int(tensor) not in self._producer:
            raise ValueError(f"tensor {tensor} is made by no operator of the file")
        return self._producer[int(tensor)] + 1

    def cut(self, tensor: int) -> bytes:
        import flatbuffers

        graph, signatures = self._model.subgraphs[0], self._model.signatureDefs
        graph.operators, graph.outputs = self._operators[:self.position(tensor)], [int(tensor)]
        self._model.signatureDefs = None  # they name the file's own outputs
        try:
            builder = flatbuffers.Builder(1024)
            builder.Finish(self._model.Pack(builder), file_identifier=b"TFL3")
            return bytes(builder.Output())
        finally:
            graph.operators, graph.outputs, self._model.signatureDefs = self._operators, self._outputs, signatures
