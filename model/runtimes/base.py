"""What every runtime implements (`Runtime`), what it is given (`Loaded`), and the value that
names a way of running the model (`Choice`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vsearch.core.home import Home

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16", "int8")

# Normalised pixels on the model's device -> the model's output tensors (VideoMAE: logits and
# pooled features; a visual model: window or frame vectors).
Forward = Callable[["torch.Tensor"], tuple["torch.Tensor", ...]]


@dataclass(frozen=True)
class Choice:
    """How the model runs: a runtime, a precision, the windows per batch (None: not measured), and
    how many requests of a batch run side by side (`streams`, each on its share of the cores)."""

    runtime: str
    precision: str
    batch: int | None = None
    streams: int = 1

    @property
    def label(self) -> str:
        """"bf16" (torch) or "openvino bf16": how people and the catalog name it."""
        return self.precision if self.runtime == "torch" else f"{self.runtime} {self.precision}"

    @classmethod
    def from_label(cls, label: str, batch: int | None = None, streams: int = 1) -> Choice:
        runtime, _, precision = label.rpartition(" ")
        return cls(runtime or "torch", precision, batch, streams)

    def at(self, batch: int) -> Choice:
        return replace(self, batch=batch)

    def in_streams(self, streams: int) -> Choice:
        return replace(self, streams=streams)

    @property
    def prepared_as(self) -> tuple[str, str, int]:
        """What a prepared model depends on (the batch size does not: one model serves every batch)."""
        return self.runtime, self.precision, self.streams

    @property
    def described(self) -> str:
        """"openvino bf16, batch 2 in 2 streams": the whole choice, as people read it."""
        streams = f" in {self.streams} streams" if self.streams > 1 else ""
        return f"{self.label}, batch {self.batch}{streams}"

    def __str__(self) -> str:
        text = f"{self.label}@{self.batch}" if self.batch else self.label
        return f"{text} in {self.streams} streams" if self.streams > 1 else text


class Loaded(Protocol):
    """What a runtime needs of a loaded model to prepare it (model.runner.RuntimeModel gives it)."""

    device: str
    home: Home  # where a runtime keeps what it converts

    @property
    def model_id(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One item of the input, without the batch dimension (VideoMAE: frames, 3, height, width)."""
        ...

    def traceable(self) -> Any:
        """The torch module to run: normalised pixels in, a tuple of tensors out."""
        ...

    def calibration_pixels(self) -> np.ndarray:
        """Inputs of real windows, for a runtime that quantizes on them."""
        ...


class Runtime(Protocol):
    name: str

    def available(self) -> bool:
        """Installed and importable here."""
        ...

    def version(self) -> str | None:
        """Its version, for the calibration's cache key; None when not installed."""
        ...

    def install_hint(self) -> str: ...

    def precisions(self, device: str) -> tuple[str, ...]:
        """What it can run on `device` at all (an empty tuple: not this device)."""
        ...

    def fast_precisions(self, device: str) -> tuple[str, ...]:
        """What is worth timing on `device`: its precisions that this hardware runs natively."""
        ...

    def streams(self, device: str) -> tuple[int, ...]:
        """How many requests it can run side by side on `device`: (1,) where it runs one at a time."""
        ...

    def prepare(self, model: Loaded, precision: str, streams: int = 1) -> Forward:
        """The model made ready to run in `precision` (converted, quantized, compiled: slow the
        first time, cached where it can be), a batch split over `streams` requests."""
        ...
