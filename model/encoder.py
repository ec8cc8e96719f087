"""The video model as the rest of vsearch uses it: batches of decoded windows in, label
probabilities and window embeddings out, on whichever runtime and precision were chosen.

`Encoder` is what the indexer, the live loop and the benchmarks need of a model; `VideoEncoder`
is the real one, a VideoMAE checkpoint (model.checkpoint) run by one of the registered runtimes
(model.runtimes). torch and transformers are imported here and nowhere on the search path, so
keyword search stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.core.home import Home
from vsearch.model.checkpoint import (
    cache_only,
    load_videomae,
    logits_and_pooled,
    model_name,
    read_preprocessing,
    weights_fingerprint,
)
from vsearch.model.runner import RuntimeModel
from vsearch.model.runtimes import Choice
from vsearch.video.decode import FrameSpec

if TYPE_CHECKING:
    import torch


class Encoder(Protocol):
    """What the indexer, the live loop and the benchmarks need of a model (VideoEncoder, or a fake
    in tests)."""

    name: str
    labels: list[str]
    dim: int
    device: str

    @property
    def frame_spec(self) -> FrameSpec: ...

    @property
    def model_id(self) -> str: ...

    @property
    def batch_size(self) -> int | None:
        """Windows per batch measured fastest here; None where nothing was measured."""
        ...

    @property
    def choice(self) -> Choice | None:
        """How it runs, which the index records with its vectors; None for a fake."""
        ...

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class VideoEncoder(RuntimeModel):
    """A VideoMAE classifier that turns batches of windows into label probabilities and embeddings."""

    def __init__(
        self, name: str, device: str | None = None, precision: str | None = None, module: Any = None,
        runtime: str | None = None, home: Path | Home | None = None,
        window_source: Callable[[FrameSpec], np.ndarray] | None = None, **load_options: object,
    ):
        """Load `name` (or wrap an already loaded `module`, as training does).

        `runtime` and `precision` "auto" start on torch in the precision this device runs natively;
        the calibration (model.calibrate) may move it. `home` keeps what a runtime converts
        (OpenVINO's IR). `window_source` gives real windows at the model's input size (the indexer:
        the user's first windows) for the calibration's checks and for int8 to quantize on."""

        self.name = name
        self.module = module if module is not None else load_videomae(name, **load_options)
        cfg = self.module.config
        self.labels: list[str] = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
        self.dim: int = int(cfg.hidden_size)
        self.preprocessing = read_preprocessing(name, cfg.to_dict())
        self._start_runtime(device, runtime, precision, home, window_source, (1, 1, 3, 1, 1))

    @property
    def frame_spec(self) -> FrameSpec:
        return self.preprocessing.frame_spec

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        spec = self.frame_spec
        h, w = spec.crop or (224, 224)
        return spec.num_frames, 3, h, w

    @property
    def model_id(self) -> str:
        """Identifies the vector space: a different model, or new weights in the same folder
        (a retrained model), must never share an index."""
        weights = weights_fingerprint(self.name, self.module.config)
        return f"{self.name}|labels={len(self.labels)}|dim={self.dim}|weights={weights}"

    def traceable(self) -> torch.nn.Module:
        """Pixel values in, (logits, pooled features) out: exactly `forward`, as a module a runtime
        can convert or quantize."""
        import torch

        module = self.module

        class Heads(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = module

            def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return logits_and_pooled(self.m, pixel_values)

        return Heads().eval()

    def pixel_values(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> normalised (B, T, 3, H, W) float on the model's device."""
        import torch

        x = torch.as_tensor(frames)
        if x.ndim == 4:
            x = x.unsqueeze(0)
        x = x.to(self.device, non_blocking=True).permute(0, 1, 4, 2, 3).float()
        crop = self.frame_spec.crop
        if crop is not None and tuple(x.shape[-2:]) != crop:
            raise ModelError(f"frames are {tuple(x.shape[-2:])}, the model wants {crop}")
        return x * self._scale - self._shift

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and pooled features of the torch fp32 model, with gradients if enabled (training)."""
        return logits_and_pooled(self.module, pixel_values)

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows -> (probabilities (B, labels), L2-normalised embeddings (B, dim)), float32."""
        import torch

        logits, pooled = self.outputs(frames)
        probs = torch.softmax(logits, dim=-1)
        emb = torch.nn.functional.normalize(pooled, dim=-1)
        return probs.cpu().numpy(), emb.cpu().numpy()

    def agrees(self, reference: tuple[torch.Tensor, ...], other: tuple[torch.Tensor, ...], choice: Choice) -> bool:
        """The same top labels (same_top_label) and nearly the same embeddings (min_cosine)."""
        import torch

        from vsearch.model.calibrate import min_cosine, same_top_label

        p32, p = (torch.softmax(o[0], dim=-1).cpu().numpy() for o in (reference, other))
        e32, e = (torch.nn.functional.normalize(o[1], dim=-1).cpu().numpy() for o in (reference, other))
        return bool(same_top_label(p32, p).all()) and float((e32 * e).sum(1).min()) >= min_cosine(choice)



def load_encoder(model: str | None, device: str | None = None, precision: str | None = None,
                 runtime: str | None = None, home: Path | Home | None = None,
                 window_source: Callable[[FrameSpec], np.ndarray] | None = None) -> VideoEncoder:
    """Load a model by hub id or folder; offline users point HF_HUB_OFFLINE=1 at a filled cache.
    The other arguments are VideoEncoder's."""
    name = model_name(model)
    cache_only(name)  # offline without the model: fail now, before seconds go into importing torch
    return VideoEncoder(name, device=device, precision=precision, runtime=runtime, home=home,
                        window_source=window_source)
