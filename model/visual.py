"""Visual model: an image-text or video-text model that places windows and free text in one space.

The video model (vsearch.model.encoder) answers with its 400 action labels; this one answers any
description ("a red car at night"). Each window gets one vector: an image-text model (CLIP,
SigLIP, SigLIP 2) embeds a few frames of the window and averages them; a video-text model
(X-CLIP) embeds the window's frames as one clip. A query is embedded by the same model's text
tower, and `score` turns their cosine into a 0..1 relevance that a search can put a floor on.

Supported (transformers classes, no remote code), by the `model_type` of config.json:

- clip: CLIPModel (openai/clip-*, laion/CLIP-* in transformers format);
- siglip: SiglipModel, SigLIP and the fixed-resolution SigLIP 2 checkpoints
  (google/siglip2-base-patch16-224, ...), whose tokenizer is Gemma's. SigLIP 1's SiglipTokenizer
  needs the sentencepiece package, which vsearch does not install (without it: a ModelError);
- siglip2: Siglip2Model, the NaFlex SigLIP 2 checkpoints (google/siglip2-*-naflex). They take
  patch sequences at any aspect ratio; here they get a square centre crop of
  patch * isqrt(max_num_patches) px (256 px for 256 patches of 16), patchified exactly as their
  image processor does for a square image, because the decoder delivers one size per model;
- xclip: XCLIPModel (microsoft/xclip-*), its config's num_frames per window.

Frames per window: 3 for image models, spread over the window with both ends included (the
decoder's convention): a 2-6 s window of ordinary video rarely shows more than 3 distinct things,
each frame costs a full image embedding (3 frames of a ViT-B/16 cost about a third of one
VideoMAE-B window), and the average of first, middle and last still carries a sight that starts or
ends inside the window. X-CLIP: its config's num_frames (8 for the published checkpoints).

Scores. SigLIP models were trained to say, pair by pair, whether a caption belongs to an image:
sigmoid(scale * cos + bias), with their own learnt scale and bias, is that probability. CLIP-type
models (CLIP, X-CLIP) learnt only a scale, inside a softmax that picks an image's caption among a
whole batch of others: a cosine means something only next to other captions'. Their score is how
far the query's cosine stands above that of a caption that says nothing (the `baseline`: "",
"something", ...), in units of how far unrelated captions' cosines spread (the `spread`: the
standard deviation over random captions drawn from the model's own vocabulary):
sigmoid(SLOPE * (cos - baseline) / spread). Both are measured once at load on generated pictures:
content-free captions sit near the centre of the text cone, at about the same cosine with any
picture. The learnt scale is left out on purpose: as a sigmoid against one caption, CLIP's scale
of 100 puts every caption 0.1 of cosine above the baseline at 0.99995, a match and a near miss
alike, and a search could then neither rank them nor tell where a moment ends. 0.5 means the query
says no more about the window than nothing. `min_score` is the same test for every model: the score
a content-free caption gets (0.5 = VISUAL_MIN_SCORE for CLIP-type models, the model's own
probability for SigLIP ones); a window that scores below it does not show the query.

Moments. A description's moment in a video is the run of windows whose cosine is within
`moment_margin` (MOMENT_SPREADS spreads) of the video's best window for it, not every window above
the floor: a video that shows a red car for 4 s of 12 answers "a red car" with those 4 s.

Default model for users (unverified where marked; no weights can be fetched from this machine):

- google/siglip2-base-patch16-224 (recommended): Apache-2.0, 375 M parameters (86 M vision
  tower, the rest mostly the 256k-token Gemma text embedding), about 1.5 GB in fp32; ImageNet
  zero-shot 78.2%, COCO R@1 text->image 52.1 / image->text 68.9 (SigLIP 2 paper, as quoted on
  model pages). The -256 variant: 79.1% / 53.2 / 69.7 for 256 instead of 196 patches. Its score
  is the model's own probability, and it was trained on multilingual WebLI.
- openai/clip-vit-base-patch32: MIT, 151 M parameters, 605 MB; ImageNet zero-shot 63.2% (CLIP
  paper), COCO 5k R@1 text->image 30.7 / image->text 51.6 (a public reproduction of the paper's
  Table 13). 49 patches against 196: 0.4x the time of the B/16 below.
- laion/CLIP-ViT-B-32-laion2B-s34B-b79K: MIT, same size; ImageNet 66.6% (open_clip, from memory,
  unverified).

Measured while choosing the default (an "Intel(R) Xeon(R) Processor", 2 cores with AVX-512 BF16 and
AMX, shared with other jobs: load average 2.3-3, so these are upper bounds), torch 2.13 on 2
threads, random weights in each candidate's published vision configuration, embed_frames at batch 8
windows of 3 frames, best of 2 (`vsearch bench` measures the chosen runtime on the machine at hand):

    model (vision tower)              fp32 s/window   bf16 autocast s/window
    siglip2-base-patch16-224 (B/16)   1.12            0.58
    clip-vit-base-patch32 (B/32)      0.44            0.27
    VideoMAE-B 16 x 224, for scale    3.69            1.74   (VideoEncoder, torch, batch 2)

The vision tower runs like VideoMAE does: in the runtime and precision the calibration measured
fastest here and found to agree with torch fp32 (model.runner, model.calibrate); queries run
through the text tower in torch fp32 (a few words, once per query). torch and transformers are
imported on first use only: importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.core.home import Home
from vsearch.model.checkpoint import (
    OFFLINE_HINT,
    Preprocessing,
    cache_only,
    first_line,
    load_pretrained,
    model_name,
    read_model_json,
    read_preprocessing,
    synthetic_windows,
    weights_fingerprint,
)
from vsearch.model.runner import RuntimeModel
from vsearch.model.runtimes import Choice
from vsearch.video.decode import FrameSpec

if TYPE_CHECKING:
    import torch

# model_type -> (transformers class, window kind, text padding the model was trained with)
VISUAL_MODEL_TYPES: dict[str, tuple[str, str, str]] = {
    "clip": ("CLIPModel", "image", "longest"),
    "siglip": ("SiglipModel", "image", "max_length"),
    "siglip2": ("Siglip2Model", "image", "max_length"),
    "xclip": ("XCLIPModel", "video", "longest"),
}
# What a user gets without asking (see the module docstring): SigLIP 2 base, Apache-2.0.
DEFAULT_VISUAL_MODEL = "google/siglip2-base-patch16-224"
IMAGE_FRAMES = 3  # frames per window for image-text models: see the module docstring
# The floor of a CLIP-type model's score: the query describes the window better than a caption that
# says nothing (see `score`). VisualModel.min_score is this test for any model.
VISUAL_MIN_SCORE = 0.5
# Captions that say nothing about any picture: their cosine is the baseline of CLIP-type scores.
CONTENT_FREE = ("", "something", "anything", "a thing")
PROBE_WINDOWS = 4  # generated windows the baseline and the spread are measured on
SPREAD_CAPTIONS = 48  # random captions from the model's vocabulary whose cosines give the spread
# A CLIP-type score's steepness: 1.5 spreads above the baseline score 0.9, 3 spreads 0.99.
SLOPE = 1.5
MOMENT_SPREADS = 0.5  # windows this many spreads below a video's best for a query still belong to its moment


class VisualEncoder(Protocol):
    """What the indexer needs of a visual model (VisualModel, or a fake in tests)."""

    name: str
    dim: int

    @property
    def frame_spec(self) -> FrameSpec:
        """The frames of a window it wants: how many, and at what size."""
        ...

    @property
    def model_id(self) -> str: ...

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) uint8 -> (B, dim) L2-normalised window vectors."""
        ...


class VisualModel(RuntimeModel):
    """Window vectors from frames, query vectors from text, and relevance from their cosine."""

    def __init__(self, name: str, module: Any, tokenizer: Any, device: str | None = None, runtime: str | None = None,
                 precision: str | None = None, home: Path | Home | None = None,
                 window_source: Callable[[FrameSpec], np.ndarray] | None = None):

        self.name = name
        self.module = module
        self.tokenizer = tokenizer
        cfg = module.config
        self.model_type: str = cfg.model_type
        _, self.kind, self._padding = VISUAL_MODEL_TYPES[self.model_type]
        # CLIP and X-CLIP project both towers to projection_dim; SigLIP's heads keep the vision width
        self.dim = int(getattr(cfg, "projection_dim", None) or cfg.vision_config.hidden_size)
        self.frames_per_window = int(cfg.vision_config.num_frames) if self.kind == "video" else IMAGE_FRAMES
        self.preprocessing = visual_preprocessing(name, cfg, self.frames_per_window)
        self._max_patches = max_patches(name, cfg) if self.model_type == "siglip2" else 0
        self._start_runtime(device, runtime, precision, home, window_source, (1, 3, 1, 1))
        self.baseline_cosine, self.spread = self._calibrate()
        bias = getattr(module, "logit_bias", None)
        if bias is not None:  # SigLIP: its own probability
            self.logit_scale = float(module.logit_scale.detach().float().exp())
            self.logit_bias = float(bias.detach().float())
        else:  # CLIP-type: a content-free caption at even odds, one spread above it at sigmoid(SLOPE)
            self.logit_scale = SLOPE / self.spread
            self.logit_bias = -self.logit_scale * self.baseline_cosine
        self.moment_margin = MOMENT_SPREADS * self.spread

    @property
    def frame_spec(self) -> FrameSpec:
        return self.preprocessing.frame_spec

    @property
    def model_id(self) -> str:
        """Identifies the vector space (as VideoEncoder.model_id): other weights, another pooling, another index."""
        weights = weights_fingerprint(self.name, self.module.config)
        # "scene=": the word of an older vsearch, kept: the id is stored in the catalog and keys the
        # calibration and OpenVINO caches, so another id would embed every window again.
        return f"{self.name}|scene={self.model_type}|frames={self.frames_per_window}|dim={self.dim}|weights={weights}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        h, w = self.frame_spec.crop or (224, 224)
        return (self.frames_per_window, 3, h, w) if self.kind == "video" else (3, h, w)

    def traceable(self) -> torch.nn.Module:
        """The vision tower with its projection: normalised pixels in, (vectors,) out; a frame's vector
        for image models, a window's for video models."""
        import torch

        visual = self

        class Vision(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = visual.module

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
                if visual.kind == "video":
                    return (_pooled(self.m.get_video_features(pixel_values=x)),)
                return (_pooled(self.m.get_image_features(**visual._image_inputs(x))),)

        return Vision().eval()

    def pixel_values(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 RGB at frame_spec's size -> normalised pixels: (B*T, 3, H, W) for image
        models, (B, T, 3, H, W) for video models."""
        import torch

        x = torch.as_tensor(np.asarray(frames))
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ModelError(f"frames must be (windows, frames, height, width, 3), not {tuple(x.shape)}")
        b, t, h, w = x.shape[:4]
        want = self.frame_spec.crop
        if want is not None and (h, w) != want:
            raise ModelError(f"frames are {(h, w)}, the visual model wants {want}")
        if self.kind == "video" and t != self.frames_per_window:
            raise ModelError(f"{t} frames per window, the visual model wants {self.frames_per_window}")
        x = x.to(self.device).reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float() * self._scale - self._shift
        return x.view(b, t, 3, h, w) if self.kind == "video" else x

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) uint8 RGB at frame_spec's size -> (B, dim) L2-normalised float32 window vectors.

        Image models: each frame embedded and normalised, the T averaged and renormalised (the
        mean direction of the window). Video models: get_video_features over the T frames."""
        import torch

        frames = np.asarray(frames)
        (vectors,) = self.outputs(frames)
        if self.kind == "image":
            b, t = frames.shape[:2]
            vectors = torch.nn.functional.normalize(vectors, dim=-1).view(b, t, -1).mean(1)
        return torch.nn.functional.normalize(vectors, dim=-1).cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) L2-normalised float32 query vectors, one batch for all texts."""
        import torch

        with torch.inference_mode():
            out = self.module.get_text_features(**self._text_inputs(list(texts)))
        return torch.nn.functional.normalize(_pooled(out).float(), dim=-1).cpu().numpy()

    def agrees(self, reference: tuple[torch.Tensor, ...], other: tuple[torch.Tensor, ...], choice: Choice) -> bool:
        """Nearly the same vectors, frame by frame (min_cosine)."""
        import torch

        from vsearch.model.calibrate import min_cosine

        a, b = (torch.nn.functional.normalize(o[0], dim=-1) for o in (reference, other))
        return float((a * b).sum(-1).min()) >= min_cosine(choice)

    def score(self, cosine: np.ndarray) -> np.ndarray:
        """Cosine of window and query vectors -> 0..1 relevance, sigmoid(scale * cos + bias): SigLIP's
        own probability that the caption belongs to the window; for CLIP-type models, how far the
        query stands above a content-free caption, in spreads (see the module docstring)."""
        logits = self.logit_scale * np.asarray(cosine, dtype=np.float64) + self.logit_bias
        return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)  # sigmoid without overflow

    @property
    def min_score(self) -> float:
        """The floor for this model's scores: what a caption that says nothing scores."""
        return float(self.score(np.array([self.baseline_cosine]))[0])

    def describe(self) -> str:
        return (f"{self.name} ({self.model_type}, {self.frames_per_window} frames per window) on {self.device} "
                f"({self.choice.label})")

    def _image_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """get_image_features' arguments for normalised (N, 3, H, W) pixels."""
        if self.model_type != "siglip2":
            return {"pixel_values": x}
        return naflex_patches(x, int(self.module.config.vision_config.patch_size), self._max_patches)

    def _text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        cfg = self.module.config.text_config
        if type(self.tokenizer).__name__.startswith("Gemma"):
            # SigLIP 2 learnt lower-cased text (transformers' Siglip2Tokenizer lower-cases); the
            # fixed-resolution checkpoints name the plain Gemma tokenizer, which does not.
            texts = [t.lower() for t in texts]
        tokens = self.tokenizer(texts, padding=self._padding, truncation=True, max_length=int(cfg.max_position_embeddings),
                                return_tensors="pt")
        inputs = {"input_ids": tokens["input_ids"].to(self.device)}
        # SigLIP's text tower was trained on max_length-padded ids without a mask (big_vision, open_clip
        # alike) and pools the last position, so the padding is part of what it reads. CLIP's causal
        # tower pools at the end-of-text token, which the mask keeps clear of padding.
        if self._padding == "longest" and "attention_mask" in tokens:
            inputs["attention_mask"] = tokens["attention_mask"].to(self.device)
        return inputs

    def _calibrate(self) -> tuple[float, float]:
        """(baseline, spread): the mean cosine of content-free captions with generated windows (any
        pictures serve: such captions sit at about the same cosine with all of them), and the
        standard deviation of random captions' cosines with the same windows."""
        windows = self.embed_frames(synthetic_windows(replace(self.frame_spec, num_frames=self.frames_per_window),
                                                    PROBE_WINDOWS))
        baseline = float((windows @ self.embed_text(CONTENT_FREE).T).mean())
        spread = float((windows @ self.embed_text(self._random_captions()).T).std())
        return baseline, max(spread, 1e-3)

    def _random_captions(self) -> list[str]:
        """Captions of 2-6 tokens drawn from the model's own vocabulary, the same ones every time."""
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        ids = [i for i in sorted(set(self.tokenizer.get_vocab().values())) if i not in special]
        rng = np.random.default_rng(0)
        return [self.tokenizer.decode([int(i) for i in rng.choice(ids, int(rng.integers(2, 7)))]).strip() or "a"
                for _ in range(SPREAD_CAPTIONS)]


def naflex_patches(x: torch.Tensor, patch: int, max_patches: int) -> dict[str, torch.Tensor]:
    """Square (N, 3, H, W) pixels as Siglip2ImageProcessor lays them out: (N, max_patches, p*p*3)
    patches row by row, each patch's pixels row-major with channels last, zero-padded to
    max_patches, with its mask and (rows, cols) grid."""
    import torch

    n, c, h, w = x.shape
    rows, cols = h // patch, w // patch
    patches = x.reshape(n, c, rows, patch, cols, patch).permute(0, 2, 4, 3, 5, 1).reshape(n, rows * cols, -1)
    padded = torch.zeros(n, max_patches, patches.shape[-1], dtype=x.dtype, device=x.device)
    padded[:, : rows * cols] = patches
    mask = torch.zeros(n, max_patches, dtype=torch.int32, device=x.device)
    mask[:, : rows * cols] = 1
    shapes = torch.tensor([[rows, cols]] * n, dtype=torch.long, device=x.device)
    return {"pixel_values": padded, "pixel_attention_mask": mask, "spatial_shapes": shapes}


def visual_preprocessing(name: str, config: Any, frames: int) -> Preprocessing:
    """The decoder's frame size and the pixel normalisation, from the checkpoint's preprocessor_config.json."""
    if read_model_json(name, "preprocessor_config.json") is None:
        raise ModelError(f"{name!r} has no preprocessor_config.json: its image size and normalisation are unknown")
    vision = config.vision_config
    if config.model_type != "siglip2":
        return read_preprocessing(name, {"image_size": int(vision.image_size), "num_frames": frames})
    # NaFlex: the largest square grid within max_num_patches, which the processor gives a square image
    side = int(vision.patch_size) * math.isqrt(max_patches(name, config))
    base = read_preprocessing(name, {"image_size": side, "num_frames": frames})
    spec = FrameSpec(num_frames=frames, resize=("shortest_edge", side), crop=(side, side))
    return replace(base, frame_spec=spec)


def max_patches(name: str, config: Any) -> int:
    """A NaFlex checkpoint's patch budget: its processor's max_num_patches (what it was evaluated with)."""
    pp = read_model_json(name, "preprocessor_config.json") or {}
    return int(pp.get("max_num_patches", config.vision_config.num_patches))


def load_visual_model(name: str, device: str | None = None, runtime: str | None = None, precision: str | None = None,
                      home: Path | Home | None = None,
                      window_source: Callable[[FrameSpec], np.ndarray] | None = None) -> VisualModel:
    """A CLIP, SigLIP, SigLIP 2 or X-CLIP checkpoint (hub id in the cache, or a folder) as a VisualModel.

    Anything that cannot serve raises ModelError with one line: a missing folder, another kind of
    model, missing files, offline without the model in the cache."""
    if not name:
        raise ModelError("no visual model named: pass a hub id such as google/siglip2-base-patch16-224 or a folder")
    name = model_name(name)  # a folder as its absolute path; a path-like name that is no folder fails here
    local_only = cache_only(name)  # offline and not cached: fails now, before torch is imported
    model_type = _model_type(name)
    class_name = VISUAL_MODEL_TYPES[model_type][0]
    module = load_pretrained(name, class_name, "visual model", f"a {class_name} checkpoint", local_only)
    return VisualModel(name, module, _load_tokenizer(name, local_only), device=device, runtime=runtime,
                       precision=precision, home=home, window_source=window_source)


def _model_type(name: str) -> str:
    try:
        config = read_model_json(name, "config.json")
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load visual model {name!r}: {first_line(exc)} {OFFLINE_HINT}") from None
    if config is None:
        raise ModelError(f"cannot load visual model {name!r}: it has no config.json")
    model_type = str(config.get("model_type", "unknown"))
    if model_type not in VISUAL_MODEL_TYPES:
        raise ModelError(f"{name!r} is a {model_type} model, not an image-text or video-text model; "
                         f"visual models are {', '.join(VISUAL_MODEL_TYPES)} (CLIP, SigLIP, SigLIP 2, X-CLIP)")
    return model_type


def _load_tokenizer(name: str, local_only: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False, local_files_only=local_only)
    except ImportError as exc:  # SigLIP 1's SentencePiece tokenizer without the sentencepiece package
        raise ModelError(f"the tokenizer of {name!r} needs a package: {first_line(exc)}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"cannot load the tokenizer of {name!r}: {first_line(exc)}") from None


def _pooled(out: Any) -> torch.Tensor:
    """The projected vector of a get_*_features call: transformers 5 returns an output object
    whose pooler_output holds it, 4.x the tensor itself."""
    return out if not hasattr(out, "pooler_output") else out.pooler_output
