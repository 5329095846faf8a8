"""The preprocessing contract that travels with a model: what its input tensor must look like."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input tensor.

    An image already ``input_size`` square is used as it is. Any other image is resized (bilinear,
    antialiased) so that its shorter side is ``resize`` (``None``: ``input_size``), then center-cropped to
    ``input_size`` square; ``resize = input_size / 0.875`` is the ImageNet evaluation habit. Then it gets
    ``channels`` channels, is scaled to [0, 1] and normalized per channel with ``mean`` / ``std``.
    ``layout`` is the tensor layout of the model input (``NCHW`` for torch, ONNX and OpenVINO; TFLite
    files are ``NHWC``)."""

    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "NCHW"
    resize: int | None = None

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"images have 1 or 3 channels, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            # a single value applies to every channel
            if len(self.mean) == 1 and len(self.std) == 1:
                object.__setattr__(self, "mean", tuple(self.mean) * self.channels)
                object.__setattr__(self, "std", tuple(self.std) * self.channels)
            else:
                raise ValueError(f"mean and std need 1 or {self.channels} values (one per channel of the "
                                 f"{self.channels}-channel input), got {len(self.mean)} and {len(self.std)}")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError(f"mean and std must be finite numbers, got {self.mean} / {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if not 8 <= self.input_size <= 4096:
            raise ValueError(f"input size must lie in [8, 4096], got {self.input_size}")
        if self.resize is not None and not self.input_size <= self.resize <= 8192:
            raise ValueError(f"resize must lie in [input size {self.input_size}, 8192], got {self.resize}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        resize = data.get("resize")
        return cls(int(data["input_size"]), int(data["channels"]), tuple(data["mean"]), tuple(data["std"]),
                   data.get("layout", "NCHW"), int(resize) if resize is not None else None)

    def override(self, *, input_size: int | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, resize: int | None = None) -> "Preprocessing":
        """The same spec with the user's overrides (for checkpoints trained differently). ``resize=0``
        means none: images of another size are resized straight to the input size."""
        changes: dict[str, Any] = {}
        if input_size is not None:
            changes["input_size"] = input_size
            if resize is None and self.resize is not None:  # keep the crop ratio at the new size
                changes["resize"] = max(input_size, round(self.resize * input_size / self.input_size))
        if mean is not None:
            changes["mean"] = tuple(mean)
        if std is not None:
            changes["std"] = tuple(std)
        if resize is not None:
            changes["resize"] = resize or None
        return replace(self, **changes) if changes else self

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.channels, self.input_size, self.input_size)

    def describe(self) -> str:
        crop = f", other sizes resized to {self.resize} and center-cropped" if self.resize else ""
        return f"{self.input_size}x{self.input_size}, {self.channels} channel(s){crop}"
