"""A torch model run by one of the registered runtimes, in the runtime and precision chosen for it.

Both models vsearch runs on every window are one of these: the video model (VideoEncoder: what
happens) and the visual model (VisualModel: what is seen). The runtime registry, the calibration
and its cache treat them alike: each is a torch module that maps normalised pixels to a few
output tensors (`traceable`), with a fixed input shape per item and a batch dimension free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.core.home import Home
from vsearch.model import runtimes
from vsearch.model.hardware import choose_device
from vsearch.model.runtimes import Choice, Forward
from vsearch.video.decode import FrameSpec

if TYPE_CHECKING:
    import torch

    from vsearch.model.checkpoint import Preprocessing


class RuntimeModel:
    """The runtime side of a model: what was asked, what runs (`choice`), and its prepared forms.

    Subclasses give `traceable`, `input_shape`, `pixel_values`, `sample_windows`, `frame_spec`,
    `model_id` and `agrees`; this class prepares and switches runtimes and precisions."""

    name: str
    module: Any  # the torch model
    preprocessing: Preprocessing
    _window_source: Callable[[FrameSpec], np.ndarray] | None
    _samples: np.ndarray | None

    def _setup_runtime(self, device: str | None, runtime: str | None, precision: str | None,
                       home: Path | Home | None) -> None:
        self.device = choose_device(device)
        self.home = Home.at(home)
        self.runtime_asked = runtime or "auto"
        self.precision_asked = precision or "auto"
        if self.runtime_asked != "auto":
            runtimes.get(self.runtime_asked)
        if self.precision_asked not in ("auto", *runtimes.PRECISIONS):
            raise ModelError(f"unknown precision {precision!r}; choose from auto, {', '.join(runtimes.PRECISIONS)}")
        self._prepared: dict[tuple[str, str, int], Forward] = {}

    def _start_runtime(self, device: str | None, runtime: str | None, precision: str | None, home: Path | Home | None,
                       window_source: Callable[[FrameSpec], np.ndarray] | None, channels: tuple[int, ...]) -> None:
        """What every model does once its module and preprocessing are known: the device and runtime
        asked for, the module there in eval mode, rescale and normalise folded into one multiply-add
        (x * scale - shift, shaped `channels` to broadcast over its pixels), the first choice in use."""
        import torch

        self._setup_runtime(device, runtime, precision, home)
        self.module.eval().to(self.device)
        self._window_source = window_source
        self._samples = None
        p = self.preprocessing
        std = torch.tensor(p.std, dtype=torch.float32)
        self._scale = (p.rescale / std).view(*channels).to(self.device)
        self._shift = (torch.tensor(p.mean, dtype=torch.float32) / std).view(*channels).to(self.device)
        self.choice: Choice = self.first_choice()
        self.use(self.choice)

    def first_choice(self) -> Choice:
        """Before anything is measured: what was asked, else torch in the first precision this
        device runs natively beyond fp32 (bf16 on AVX-512 BF16, AMX or a GPU), else fp32."""
        runtime = "torch" if self.runtime_asked == "auto" else self.runtime_asked
        if self.precision_asked != "auto":
            return Choice(runtime, self.precision_asked)
        fast = runtimes.get(runtime).fast_precisions(self.device)
        return Choice(runtime, next((p for p in fast if p in ("bf16", "fp16")), fast[0] if fast else "fp32"))

    def use(self, choice: Choice) -> None:
        """Run as `choice` from now on, preparing it the first time (the calibration tries several on
        one loaded model). Raises RuntimeUnavailable when this machine cannot run it."""
        key = choice.prepared_as
        if key not in self._prepared:
            self._prepared[key] = runtimes.check(choice, self.device).prepare(self, choice.precision, choice.streams)
        self._forward = self._prepared[key]
        self.choice = choice

    def forget_others(self) -> None:
        """Drop the torch copies prepared for choices not in use (after calibration, a quantized
        copy the chosen runtime never uses holds memory for nothing). OpenVINO's compiled models
        stay: with OpenVINO 2026.4, freeing one compiled in another precision hint while its sibling
        runs made the process die of SIGSEGV at the next signal (Ctrl-C), seen on an AMX Xeon."""
        key = self.choice.prepared_as
        self._prepared = {k: v for k, v in self._prepared.items() if k == key or k[0] != "torch"}

    @property
    def batch_size(self) -> int | None:
        return self.choice.batch

    def outputs(self, frames: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The traceable module's outputs for these frames, in the chosen runtime and precision."""
        return tuple(t.float() for t in self._forward(self.pixel_values(frames)))

    def sample_windows(self) -> np.ndarray:
        """Windows to check and quantize on: the window source's (decoded once), or generated ones."""
        if self._samples is None:
            from vsearch.model.checkpoint import synthetic_windows

            windows = self._window_source(self.frame_spec) if self._window_source else None
            self._samples = windows if windows is not None and len(windows) else synthetic_windows(self.frame_spec, 32)
        return self._samples

    def calibration_pixels(self) -> np.ndarray:
        return self.pixel_values(self.sample_windows()).cpu().numpy()

    # -- what a model gives --------------------------------------------------------------------

    @property
    def frame_spec(self) -> FrameSpec:
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One item of the traceable module's input, without the batch dimension."""
        raise NotImplementedError

    def traceable(self) -> torch.nn.Module:
        """A module from normalised pixels (batch first, `input_shape` after) to a tuple of tensors."""
        raise NotImplementedError

    def pixel_values(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Decoded windows (uint8 RGB at frame_spec's size) -> the traceable module's input."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.choice.label})"

    def agrees(self, reference: tuple[torch.Tensor, ...], other: tuple[torch.Tensor, ...], choice: Choice) -> bool:
        """Whether `other` (in `choice`) answers as `reference` (torch fp32) does on the same windows."""
        raise NotImplementedError
