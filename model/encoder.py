"""The video model: a VideoMAEForVideoClassification checkpoint, its preprocessing, its device.

Everything the model needs is read from the checkpoint's own files: frames per clip, image
size and labels from config.json; resize, crop, rescale, mean and std from
preprocessor_config.json. torch and transformers are imported here and nowhere on the search
path, so keyword search stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.search.catalog import default_home
from vsearch.video.decode import FrameSpec

if TYPE_CHECKING:
    import torch

    from vsearch.model.openvino import CompiledVideoMAE

DEFAULT_MODEL = "MCG-NJU/videomae-base-finetuned-kinetics"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
RUNTIMES = ("auto", "torch", "openvino")
OFFLINE_HINT = ("If this machine is offline, download the model once elsewhere into the Hugging Face cache "
                "(and set HF_HUB_OFFLINE=1), or pass --model a local folder.")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "name" or "org/name"


class ModelError(Exception):
    """The model cannot be loaded or used; the message says why and what to do."""


@dataclass(frozen=True)
class Preprocessing:
    frame_spec: FrameSpec
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def read_model_json(model: str, filename: str) -> dict | None:
    """One JSON file of a model (a folder or a hub id in the cache), or None if it has none."""
    path = Path(model).expanduser()
    if path.is_dir():
        file = path / filename
        return json.loads(file.read_text()) if file.exists() else None
    from transformers.utils import cached_file

    found = cached_file(model, filename, local_files_only=cache_only(model),
                        _raise_exceptions_for_missing_entries=False)
    return json.loads(Path(found).read_text()) if found else None


def read_preprocessing(model: str, config: dict) -> Preprocessing:
    """Preprocessing from preprocessor_config.json, with VideoMAE's defaults where it is silent."""
    pp = read_model_json(model, "preprocessor_config.json") or {}
    image_size = int(config.get("image_size", 224))
    resize: tuple | None = None
    if pp.get("do_resize", True):
        size = pp.get("size", {"shortest_edge": image_size})
        if isinstance(size, int):
            size = {"shortest_edge": size}
        if "shortest_edge" in size:
            resize = ("shortest_edge", int(size["shortest_edge"]))
        else:
            resize = ("exact", (int(size["height"]), int(size["width"])))
    crop: tuple[int, int] | None = None
    if pp.get("do_center_crop", True):
        c = pp.get("crop_size", {"height": image_size, "width": image_size})
        crop = (int(c), int(c)) if isinstance(c, int) else (int(c["height"]), int(c["width"]))
    mean = tuple(pp.get("image_mean", (0.485, 0.456, 0.406))) if pp.get("do_normalize", True) else (0.0,) * 3
    std = tuple(pp.get("image_std", (0.229, 0.224, 0.225))) if pp.get("do_normalize", True) else (1.0,) * 3
    rescale = float(pp.get("rescale_factor", 1 / 255)) if pp.get("do_rescale", True) else 1.0
    spec = FrameSpec(num_frames=int(config.get("num_frames", 16)), resize=resize, crop=crop)
    return Preprocessing(spec, rescale, mean, std)


def cpu_supports_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ModelError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but torch sees no CUDA GPU")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("--device mps was asked for, but torch sees no Apple GPU")
    return device


def choose_precision(device: str, precision: str | None) -> str:
    """bf16 where the hardware has it (CUDA, or a CPU with AVX-512 BF16/AMX), else fp32.

    This is only the first guess on a CPU: `vsearch index` measures fp32, bf16 and int8 there
    (vsearch.model.calibrate) and keeps whichever is fastest.
    """
    if precision not in (None, "", "auto"):
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        if precision == "int8" and device != "cpu":
            raise ModelError("--precision int8 runs on the CPU only (dynamic int8 linear layers); use --device cpu")
        return precision
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


class VideoEncoder:
    """Turns batches of decoded clips into label probabilities and clip embeddings."""

    def __init__(
        self, model_name: str, device: str | None = None, precision: str | None = None, model: Any = None,
        runtime: str | None = None, cache_dir: Path | None = None,
        clip_source: Callable[[FrameSpec], np.ndarray] | None = None, **load_options: object,
    ):
        """Load `model_name` (or wrap an already loaded `model`, as training does).

        `runtime` auto starts on torch (the calibration may move it to OpenVINO); `cache_dir` keeps
        OpenVINO's converted models (default: the default index home); `clip_source` gives real
        clips at the model's input size (the indexer: the user's first clips) for the calibration's
        checks and for OpenVINO int8 to quantize on, else generated ones are used."""
        import torch

        self.name = model_name
        self.model = model if model is not None else load_videomae(model_name, **load_options)
        cfg = self.model.config
        self.labels: list[str] = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
        self.dim: int = int(cfg.hidden_size)
        self.preprocessing = read_preprocessing(model_name, cfg.to_dict())
        self.device = choose_device(device)
        self.precision_asked = precision or "auto"
        self.runtime_asked = runtime or "auto"
        if self.runtime_asked not in RUNTIMES:
            raise ModelError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        self.batch_size: int | None = None  # the batch that runs fastest here, once measured
        self.model.eval().to(self.device)
        self._int8 = None  # the quantized copy, made on first use
        self._ov: dict[str, CompiledVideoMAE] = {}  # OpenVINO compilations by precision, made on first use
        self._compiled: CompiledVideoMAE | None = None  # the one in use, when the runtime is OpenVINO
        self.cache_dir = Path(cache_dir) if cache_dir else default_home()
        self._clip_source = clip_source
        self._samples: np.ndarray | None = None
        self.runtime = "torch"
        self.set_precision(choose_precision(self.device, precision))
        p = self.preprocessing
        # Fold rescale and normalise into one multiply-add: x * scale - shift.
        std = torch.tensor(p.std, dtype=torch.float32)
        self._scale = (p.rescale / std).view(1, 1, 3, 1, 1).to(self.device)
        self._shift = (torch.tensor(p.mean, dtype=torch.float32) / std).view(1, 1, 3, 1, 1).to(self.device)
        if self.runtime_asked == "openvino":
            self.set_precision(self.precision, "openvino")

    def set_precision(self, precision: str, runtime: str = "torch") -> None:
        """Run in `precision` on `runtime` from now on (the calibration tries several on one loaded model)."""
        if runtime not in RUNTIMES[1:]:
            raise ModelError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        if runtime == "openvino":
            self._compiled = self._openvino(precision)
            self.runtime, self.precision = runtime, precision
            return
        self.runtime, self._compiled = "torch", None
        self.precision = choose_precision(self.device, precision)
        if self.device.startswith("cuda") and self.precision in ("bf16", "fp16"):
            self.model.to(_torch_dtype(self.precision))  # weights in half precision on the GPU
        if self.precision == "int8" and self._int8 is None:
            self._int8 = quantize_int8(self.model)

    def set_config(self, label: str) -> None:
        """set_precision from a label such as "bf16" or "openvino bf16" (see `config`)."""
        runtime, precision = parse_config(label)
        self.set_precision(precision, runtime)

    def _openvino(self, precision: str) -> CompiledVideoMAE:
        """The model compiled by OpenVINO in `precision`, converted on first use and cached on disk."""
        from vsearch.model.openvino import PRECISIONS as OV_PRECISIONS
        from vsearch.model.openvino import CompiledVideoMAE

        if self.device != "cpu":
            raise ModelError("--runtime openvino runs on the CPU here; use --device cpu")
        if precision not in OV_PRECISIONS:
            raise ModelError(f"--runtime openvino runs {' or '.join(OV_PRECISIONS)}, not {precision}")
        if precision not in self._ov:
            spec = self.frame_spec
            h, w = spec.crop or (224, 224)
            # quantized on every other sample clip; the calibration checks agreement on the rest
            clips = lambda: self.pixel_values(self.sample_clips()[::2]).numpy()  # noqa: E731
            self._ov[precision] = CompiledVideoMAE(self.model, self.model_id, (spec.num_frames, 3, h, w), precision,
                                                   self.cache_dir / "openvino", clips)
        return self._ov[precision]

    def sample_clips(self) -> np.ndarray:
        """Clips to check and quantize on: the clip source's (decoded once), or generated ones."""
        if self._samples is None:
            clips = self._clip_source(self.frame_spec) if self._clip_source else None
            self._samples = clips if clips is not None and len(clips) else synthetic_clips(self.frame_spec, 32)
        return self._samples

    @property
    def frame_spec(self) -> FrameSpec:
        return self.preprocessing.frame_spec

    @property
    def model_id(self) -> str:
        """Identifies the vector space: a different model, or new weights in the same folder
        (a retrained model), must never share an index."""
        weights = getattr(self.model.config, "_commit_hash", None) or ""
        local = Path(self.name)
        if local.is_dir():
            files = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))
            from vsearch.video.files import content_hash

            weights = ",".join(content_hash(str(f), f.stat().st_size) for f in files)
        return f"{self.name}|labels={len(self.labels)}|dim={self.dim}|weights={weights}"

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
        """Logits and pooled features (the input of the classifier head), with gradients if enabled."""
        return logits_and_pooled(self._int8 if self.precision == "int8" else self.model, pixel_values)

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clips -> (probabilities (B, labels), L2-normalised embeddings (B, dim)), float32."""
        import torch

        x = self.pixel_values(frames)
        if self._compiled is not None:
            logits, pooled = (torch.from_numpy(a) for a in self._compiled(x.numpy()))
        else:
            with torch.inference_mode(), self.autocast():
                logits, pooled = self.forward(x.to(self._input_dtype()))
        probs = torch.softmax(logits.float(), dim=-1)
        emb = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return probs.cpu().numpy(), emb.cpu().numpy()

    def autocast(self) -> AbstractContextManager[object]:
        import contextlib

        import torch

        if self.precision in ("fp32", "int8") or self.device.startswith("cuda"):
            return contextlib.nullcontext()  # CUDA weights are already in bf16/fp16; int8 is its own
        return torch.autocast("cpu", dtype=_torch_dtype(self.precision))

    def _input_dtype(self) -> torch.dtype:
        import torch

        if self.device.startswith("cuda") and self.precision in ("bf16", "fp16"):
            return _torch_dtype(self.precision)
        return torch.float32

    @property
    def config(self) -> str:
        """Runtime and precision as one label: "bf16" (torch) or "openvino bf16"; the index records it."""
        return self.precision if self.runtime == "torch" else f"{self.runtime} {self.precision}"

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.config})"


def synthetic_clips(spec: FrameSpec, count: int) -> np.ndarray:
    """Clips with smooth moving content at the model's input size: stand-ins for real clips where
    none are at hand (timing does not depend on content; quantization ranges and agreement checks
    do, and noise is not what the model sees)."""
    h, w = spec.crop or (224, 224)
    t = np.arange(spec.num_frames)[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w]
    clips = []
    for b in range(count):
        phase = (xx[None] * (1 + b) + 3 * t + yy[None] // 2) % 64 * 4
        clip = np.stack([phase, (phase + 80 * (b % 3)) % 256, 255 - phase], axis=-1)
        clips.append(clip.astype(np.uint8))
    return np.stack(clips)


def logits_and_pooled(model: Any, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VideoMAE's classifier, also returning the pooled features its head reads (our embedding)."""
    hidden = model.videomae(pixel_values).last_hidden_state
    pooled = model.fc_norm(hidden.mean(1)) if model.fc_norm is not None else hidden[:, 0]
    return model.classifier(pooled), pooled


def parse_config(label: str) -> tuple[str, str]:
    """"openvino bf16" -> ("openvino", "bf16"); a bare precision runs on torch."""
    runtime, _, precision = label.rpartition(" ")
    return runtime or "torch", precision


def quantize_int8(model: Any) -> Any:
    """A copy of `model` with int8 Linear layers (weights quantized once, activations per batch).

    Post-training dynamic quantization needs no calibration data. torch.ao's version is
    deprecated in favour of torchao, but it is in every torch wheel and runs without compiling;
    the linear layers hold nearly all of VideoMAE's FLOPs. Attention stays in fp32.
    """
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices about torch.ao and quantized tensors
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)


def load_videomae(name: str, **options: Any) -> Any:
    """VideoMAEForVideoClassification from a hub id or folder: no remote code, safetensors first."""
    from transformers import VideoMAEForVideoClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress is on stderr; theirs would interleave
    local = Path(name).expanduser()
    if not local.is_dir():
        _refuse_missing_folder(name)
        if cache_only(name):
            options = {**options, "local_files_only": True}
    try:
        return VideoMAEForVideoClassification.from_pretrained(
            str(local) if local.is_dir() else name,
            attn_implementation="sdpa",
            trust_remote_code=False,
            **options,
        )
    except OSError as exc:
        hint = "" if local.is_dir() else " " + OFFLINE_HINT
        raise ModelError(f"cannot load model {name!r}: {_first_line(exc)}{hint}") from None
    except pickle.UnpicklingError as exc:
        # torch.load(weights_only=True) refused a pickle that would run code or build objects
        raise ModelError(f"refused to load the weights of {name!r}: unsafe pickle ({_first_line(exc)})") from None
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(f"{name!r} is not a VideoMAE video classifier: {_first_line(exc)}") from None


def _torch_dtype(precision: str) -> torch.dtype:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def load_encoder(model: str | None, device: str | None = None, precision: str | None = None,
                 runtime: str | None = None, cache_dir: Path | None = None,
                 clip_source: Callable[[FrameSpec], np.ndarray] | None = None) -> VideoEncoder:
    """Load a model by hub id or folder; offline users point HF_HUB_OFFLINE=1 at a filled cache.
    The other arguments are VideoEncoder's."""
    name = model_name(model)
    cache_only(name)  # offline without the model: fail now, before seconds go into importing torch
    return VideoEncoder(name, device=device, precision=precision, runtime=runtime, cache_dir=cache_dir,
                        clip_source=clip_source)


def model_name(model: str | None) -> str:
    """The name an index records: a local folder as its absolute path (a relative one would drift).

    A name written as a path (`/x`, `./x`, `~/x`, `a/b/c`) must be a folder; `org/name` is a hub id."""
    name = model or os.environ.get("VSEARCH_MODEL") or DEFAULT_MODEL
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local.resolve())
    _refuse_missing_folder(name)
    return name


def _refuse_missing_folder(name: str) -> None:
    if not _looks_like_path(name):
        return
    what = "not a folder" if Path(name).expanduser().exists() else "no such folder"
    raise ModelError(f"cannot load model {name!r}: {what} (--model takes a model folder or a Hugging Face "
                     f"hub id such as {DEFAULT_MODEL})")


def _looks_like_path(name: str) -> bool:
    if os.path.isabs(name) or name in (".", "..") or name.startswith(("./", "../", "~", ".\\", "..\\")):
        return True
    if os.sep != "/" and os.sep in name:
        return True
    return "/" in name and not _HUB_ID.fullmatch(name)


def cache_only(name: str) -> bool:
    """Whether a hub model must come from the local Hugging Face cache because the hub is out of
    reach (HF_HUB_OFFLINE, or no connection). Offline and not cached, it raises ModelError at
    once: the hub client would retry for about 40 s and then say less. Local folders: False."""
    if Path(name).expanduser().is_dir():
        return False
    offline = any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if not offline and _reachable(endpoint):
        return False
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return True
    why = "HF_HUB_OFFLINE is set" if offline else f"{endpoint} cannot be reached"
    raise ModelError(f"cannot load model {name!r}: it is not in the Hugging Face cache and {why}. {OFFLINE_HINT}")


@functools.cache
def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """A TCP connection to the hub within `timeout` (name lookup included, which sockets cannot time out)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows; the hub client goes through it
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    if not url.hostname:
        return True  # not ours to judge; the hub client will say what is wrong with it
    address = (url.hostname, url.port or (80 if url.scheme == "http" else 443))
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])
