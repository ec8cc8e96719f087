"""A VideoMAE checkpoint on disk or in the Hugging Face cache: finding it (offline too), loading it,
and reading what it needs from its own files.

Everything the model needs is read from the checkpoint: frames per window, image size and labels
from config.json; resize, crop, rescale, mean and std from preprocessor_config.json. Nothing is
hard-coded to 224 px, 16 frames or ImageNet statistics.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.video.decode import FrameSpec

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "MCG-NJU/videomae-base-finetuned-kinetics"
OFFLINE_HINT = ("If this machine is offline, download the model once elsewhere into the Hugging Face cache "
                "(and set HF_HUB_OFFLINE=1), or pass --model a local folder.")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "name" or "org/name"


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


def logits_and_pooled(model: Any, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VideoMAE's classifier, also returning the pooled features its head reads (our embedding)."""
    hidden = model.videomae(pixel_values).last_hidden_state
    pooled = model.fc_norm(hidden.mean(1)) if model.fc_norm is not None else hidden[:, 0]
    return model.classifier(pooled), pooled


def weights_fingerprint(name: str, config: Any) -> str:
    """The weights a model was loaded with: a hub model's commit, a folder's weight files' content hashes."""
    local = Path(name)
    if not local.is_dir():
        return getattr(config, "_commit_hash", None) or ""
    from vsearch.video.files import content_hash

    files = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))
    return ",".join(content_hash(str(f), f.stat().st_size) for f in files)


def synthetic_windows(spec: FrameSpec, count: int) -> np.ndarray:
    """Windows with smooth moving content at the model's input size: stand-ins for real windows where
    none are at hand (timing does not depend on content; quantization ranges and agreement checks
    do, and noise is not what the model sees)."""
    h, w = spec.crop or (224, 224)
    t = np.arange(spec.num_frames)[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w]
    windows = []
    for b in range(count):
        phase = (xx[None] * (1 + b) + 3 * t + yy[None] // 2) % 64 * 4
        window = np.stack([phase, (phase + 80 * (b % 3)) % 256, 255 - phase], axis=-1)
        windows.append(window.astype(np.uint8))
    return np.stack(windows)


class _Noise(logging.Filter):
    """Messages of transformers that say nothing to a person searching videos."""

    NOISE = ("`loss_type=",)  # a classifier's training loss, read when a runtime traces the model

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.NOISE)


@functools.cache
def quiet_transformers() -> None:
    """Our own progress is on stderr: transformers' bars would interleave with it, and some of its
    warnings are about training, which vsearch does not do with these models."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.get_logger("transformers").addFilter(_Noise())
    hf_logging.get_logger("transformers.modeling_utils").addFilter(_Noise())


def load_videomae(name: str, **options: Any) -> Any:
    """VideoMAEForVideoClassification from a hub id or folder: no remote code, safetensors first."""
    local = Path(name).expanduser()
    if not local.is_dir():
        _refuse_missing_folder(name)
    return load_pretrained(str(local) if local.is_dir() else name, "VideoMAEForVideoClassification",
                           "model", "a VideoMAE video classifier", cache_only(name) if not local.is_dir() else False,
                           attn_implementation="sdpa", **options)


def load_pretrained(name: str, class_name: str, what: str, kind: str, local_only: bool, **options: Any) -> Any:
    """A transformers class's checkpoint (no remote code), every failure one ModelError line: missing
    or offline, an unsafe pickle (torch.load(weights_only=True) refused one that would run code), or
    a checkpoint of another kind (`kind` says what it should have been)."""
    import transformers

    quiet_transformers()
    try:
        return getattr(transformers, class_name).from_pretrained(name, trust_remote_code=False,
                                                                 **({"local_files_only": True} if local_only else {}),
                                                                 **options)
    except OSError as exc:
        hint = "" if Path(name).is_dir() else " " + OFFLINE_HINT
        raise ModelError(f"cannot load {what} {name!r}: {first_line(exc)}{hint}") from None
    except pickle.UnpicklingError as exc:
        raise ModelError(f"refused to load the weights of {name!r}: unsafe pickle ({first_line(exc)})") from None
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f"{name!r} is not {kind}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


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


def cache_only(name: str, hint: str = OFFLINE_HINT) -> bool:
    """Whether a hub model must come from the local Hugging Face cache because the hub is out of
    reach (HF_HUB_OFFLINE, or no connection). Offline and not cached, it raises ModelError at
    once, ending with `hint`: the hub client would retry for about 40 s and then say less. Local
    folders: False."""
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
    raise ModelError(f"cannot load model {name!r}: it is not in the Hugging Face cache and {why}. {hint}")


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
