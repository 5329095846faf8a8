"""The preprocessing contract that travels with a model: what its input tensor must look like."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Preprocessing:
    """Images are resized to ``input_size`` square, given ``channels`` channels, scaled to [0, 1],
    then normalized per channel with ``mean`` / ``std``. ``layout`` is the tensor layout of the model
    input (``NCHW`` for torch, ONNX and OpenVINO; TFLite files are ``NHWC``)."""

    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "NCHW"

    def __post_init__(self):
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            # a single value applies to every channel
            if len(self.mean) == 1 and len(self.std) == 1:
                object.__setattr__(self, "mean", tuple(self.mean) * self.channels)
                object.__setattr__(self, "std", tuple(self.std) * self.channels)
            else:
                raise ValueError(f"mean/std need 1 or {self.channels} values, got {self.mean} / {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.input_size < 8:
            raise ValueError(f"input size must be at least 8, got {self.input_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        return cls(int(data["input_size"]), int(data["channels"]), tuple(data["mean"]), tuple(data["std"]),
                   data.get("layout", "NCHW"))

    def override(self, input_size: int | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None) -> "Preprocessing":
        """The same spec with the user's overrides (for checkpoints trained differently)."""
        changes: dict[str, Any] = {}
        if input_size is not None:
            changes["input_size"] = input_size
        if mean is not None:
            changes["mean"] = tuple(mean)
        if std is not None:
            changes["std"] = tuple(std)
        return replace(self, **changes) if changes else self

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.channels, self.input_size, self.input_size)
