"""Choose batch size and precision by measuring them on the machine at hand.

No fixed default is right everywhere: on a 2-core AVX2 CPU VideoMAE-base runs 3.1 s/clip at
batch 1 and 4.0 s/clip at batch 8, while AVX-512 BF16 CPUs gain from batching and bf16, and
CPUs whose bf16 is emulated lose badly with it. So the encoder is timed on a few configurations,
the fastest is kept, and the choice is cached in the index home, keyed by CPU model and flags,
runtime versions and the model, so it is measured once per machine and model.
The reference (fp32, one clip at a time, as the Hugging Face recipe runs) is always measured
and wins ties: a measured choice is never slower than the reference.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vsearch.indexer.model import VideoEncoder

REFERENCE = ("fp32", 1)
BATCHES = (1, 2, 4, 8)
GPU_BATCH = 8  # a GPU is fast at any batch; decoding is its bottleneck, not batching
MARGIN = 0.05  # a configuration must beat the one it replaces by this much: timings are noisy
CACHE_FILE = "calibration.json"
# Flags that change which kernels torch and oneDNN can use.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
                  "amx_tile", "avx512_fp16")


@dataclass(frozen=True)
class Choice:
    precision: str
    batch_size: int
    how: str  # "calibrated", "cached", "asked" or "default"
    timings: dict[str, float] = field(default_factory=dict)  # "fp32@1" -> seconds per clip

    def describe(self) -> str:
        measured = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items())
        return f"{self.precision}, batch {self.batch_size} ({self.how}{': s/clip ' + measured if measured else ''})"


def pick(timings: Mapping[tuple[str, int], float], margin: float = MARGIN) -> tuple[str, int]:
    """The fastest configuration per clip; the reference unless another beats it by `margin`, and
    of configurations within `margin` of the fastest the smallest batch (same speed, less memory)."""
    best = min(timings, key=lambda k: timings[k])
    if REFERENCE in timings and timings[best] > timings[REFERENCE] * (1 - margin):
        return REFERENCE
    near = [k for k in timings if timings[k] <= timings[best] * (1 + margin)]
    return min(near, key=lambda k: (k[1], timings[k]))


def search(
    measure: Callable[[str, int], float],
    precisions: Sequence[str],
    batches: Sequence[int] = BATCHES,
    margin: float = MARGIN,
) -> tuple[tuple[str, int], dict[tuple[str, int], float]]:
    """Time every precision at the first batch size, then grow the batch of the fastest while it pays.

    `measure(precision, batch)` returns seconds per clip. Returns the choice and all timings.
    """
    timings = {(p, batches[0]): measure(p, batches[0]) for p in precisions}
    precision = pick(timings, margin)[0]
    previous = timings[(precision, batches[0])]
    for batch in batches[1:]:
        seconds = timings[(precision, batch)] = measure(precision, batch)
        if seconds > previous * (1 - margin):
            break  # bigger batches stopped paying; on small CPUs they cost (cache misses)
        previous = seconds
    return pick(timings, margin), timings


def cpu_description() -> tuple[str, list[str]]:
    """(CPU model name, the flags that matter for kernels) from /proc/cpuinfo, or the platform."""
    name, flags = platform.processor() or platform.machine(), list[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name in ("", platform.processor() or platform.machine()):
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            have = set(value.split())
            flags = [f for f in RELEVANT_FLAGS if f in have]
    return name, flags


def machine_key(encoder: VideoEncoder) -> str:
    """What a timing depends on: CPU, cores, runtime versions, device and the model."""
    import torch
    import transformers

    name, flags = cpu_description()
    return (f"{name} [{' '.join(flags)}] x{os.cpu_count()} | torch {torch.__version__} threads "
            f"{torch.get_num_threads()} | transformers {transformers.__version__} | {encoder.device} | "
            f"{encoder.model_id}")


def calibration_clips(encoder: VideoEncoder, batch: int) -> np.ndarray:
    """Clips with smooth moving content at the model's input size (timing does not depend on it,
    the int8 agreement check does: noise is not what the model sees)."""
    spec = encoder.frame_spec
    h, w = spec.crop or (224, 224)
    t = np.arange(spec.num_frames)[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w]
    clips = []
    for b in range(batch):
        phase = (xx[None] * (1 + b) + 3 * t + yy[None] // 2) % 64 * 4
        clip = np.stack([phase, (phase + 80 * (b % 3)) % 256, 255 - phase], axis=-1)
        clips.append(clip.astype(np.uint8))
    return np.stack(clips)


def int8_holds(encoder: VideoEncoder, clips: np.ndarray, min_cosine: float = 0.98) -> bool:
    """int8 gives fp32's top label and nearly its embeddings on these clips."""
    precision = encoder.precision
    try:
        encoder.set_precision("fp32")
        p32, e32 = encoder.encode(clips)
        encoder.set_precision("int8")
        p8, e8 = encoder.encode(clips)
    finally:
        encoder.set_precision(precision)
    return bool((p32.argmax(1) == p8.argmax(1)).all() and (e32 * e8).sum(1).min() >= min_cosine)


def time_encode(encoder: VideoEncoder, precision: str, batch: int, repeats: int = 2) -> float:
    """Best seconds per clip of `repeats` batches (the first also picks oneDNN's kernels)."""
    encoder.set_precision(precision)
    clips = calibration_clips(encoder, batch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode(clips)
        best = min(best, (time.perf_counter() - started) / batch)
    return best


def candidates(encoder: VideoEncoder) -> list[str]:
    """Precisions worth timing: the one asked for, or on a CPU under `auto` all of them."""
    from vsearch.indexer.model import cpu_supports_bf16

    if encoder.precision_asked != "auto":
        return [encoder.precision_asked]
    return ["fp32", *(["bf16"] if cpu_supports_bf16() else []), "int8"]


def tune(
    encoder: VideoEncoder,
    home: Path,
    batch_size: int | None = None,
    measure: Callable[[str, int], float] | None = None,
    on_measure: Callable[[], None] | None = None,
) -> Choice:
    """Set the encoder's precision and batch size to the fastest here; returns what was chosen.

    A `batch_size` or a precision given by the user is kept as given. On a GPU nothing is timed.
    `on_measure` is called before a measurement that takes a while (VideoMAE-base: a minute or two).
    """
    if encoder.device != "cpu":
        choice = Choice(encoder.precision, batch_size or GPU_BATCH, "asked" if batch_size else "default")
        encoder.batch_size = choice.batch_size
        return choice
    precisions = candidates(encoder)
    if batch_size and len(precisions) == 1:
        choice = Choice(precisions[0], batch_size, "asked")
    else:
        key = machine_key(encoder) + f" | {'/'.join(precisions)} | batch {batch_size or 'auto'}"
        cache = Path(home) / CACHE_FILE
        stored = _read_cache(cache).get(key)
        if stored is not None:
            choice = Choice(stored["precision"], int(stored["batch_size"]), "cached", stored["timings"])
        else:
            if on_measure:
                on_measure()
            if len(precisions) > 1 and "int8" in precisions and not int8_holds(encoder, calibration_clips(encoder, 2)):
                precisions = [p for p in precisions if p != "int8"]
            timed = measure or (lambda p, b: time_encode(encoder, p, b))
            (precision, batch), timings = search(timed, precisions, (batch_size,) if batch_size else BATCHES)
            choice = Choice(precision, batch, "calibrated", {f"{p}@{b}": round(s, 4) for (p, b), s in timings.items()})
            _write_cache(cache, key, choice)
    encoder.set_precision(choice.precision)
    encoder.batch_size = choice.batch_size
    return choice


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: measure again
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, choice: Choice) -> None:
    data = _read_cache(path)
    data[key] = {"precision": choice.precision, "batch_size": choice.batch_size, "timings": choice.timings,
                 "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
