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
    from vsearch.model.encoder import VideoEncoder

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
    config: str  # runtime and precision, "bf16" (torch) or "openvino bf16": see VideoEncoder.config
    batch_size: int
    how: str  # "calibrated", "cached", "asked" or "default"
    timings: dict[str, float] = field(default_factory=dict)  # "fp32@1" -> seconds per clip
    differed: tuple[str, ...] = ()  # configurations left out: their answers differed from fp32's

    def describe(self) -> str:
        measured = ", ".join(f"{k} {v:.3g}" for k, v in self.timings.items())
        left = f"; left out, answers differ from fp32: {', '.join(self.differed)}" if self.differed else ""
        return f"{self.config}, batch {self.batch_size} ({self.how}{': s/clip ' + measured if measured else ''}{left})"


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
    configs: Sequence[str],
    batches: Sequence[int] = BATCHES,
    margin: float = MARGIN,
) -> tuple[tuple[str, int], dict[tuple[str, int], float]]:
    """Time every configuration at the first batch size, then grow the batch of the fastest while it pays.

    `measure(config, batch)` returns seconds per clip. Returns the choice and all timings.
    """
    timings = {(c, batches[0]): measure(c, batches[0]) for c in configs}
    config = pick(timings, margin)[0]
    previous = timings[(config, batches[0])]
    for batch in batches[1:]:
        seconds = timings[(config, batch)] = measure(config, batch)
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

    from vsearch.model import openvino

    name, flags = cpu_description()
    return (f"{name} [{' '.join(flags)}] x{os.cpu_count()} | torch {torch.__version__} threads "
            f"{torch.get_num_threads()} | transformers {transformers.__version__} | openvino "
            f"{openvino.version() or '-'} | {encoder.device} | {encoder.model_id}")


def calibration_clips(encoder: VideoEncoder, batch: int) -> np.ndarray:
    """`batch` clips to time and check on: the user's own clips where the encoder has them
    (VideoEncoder.sample_clips; those that OpenVINO int8 was not quantized on), repeated or cut to size."""
    clips = encoder.sample_clips()
    held_out = clips[1::2] if len(clips) > 1 else clips
    return held_out[np.arange(batch) % len(held_out)]


def same_top_label(p32: np.ndarray, p: np.ndarray, tie: float = 0.01) -> np.ndarray:
    """Per clip: `p`'s top label is fp32's, or one fp32 scores within `tie` (relative) of its own top.

    A clip where fp32 itself cannot tell two labels apart has no top label to keep: a model with
    random weights gives all 400 Kinetics labels ~0.0025, and any rounding reorders them. For a
    trained model's confident clips this is exact top-1 agreement."""
    rows = np.arange(len(p32))
    return p32[rows, p.argmax(1)] >= (1 - tie) * p32.max(1)


def agreeing(encoder: VideoEncoder, configs: Sequence[str], clips: np.ndarray) -> list[str]:
    """The configurations that give torch fp32's top labels (same_top_label) and nearly its
    embeddings (min_cosine) on these clips; the reference itself always."""
    was = encoder.config
    kept = [REFERENCE[0]]
    try:
        encoder.set_config(REFERENCE[0])
        p32, e32 = encoder.encode(clips)
        for config in configs:
            if config != REFERENCE[0]:
                encoder.set_config(config)
                p, e = encoder.encode(clips)
                if same_top_label(p32, p).all() and (e32 * e).sum(1).min() >= min_cosine(config):
                    kept.append(config)
    finally:
        encoder.set_config(was)
    return [c for c in configs if c in kept]


def min_cosine(config: str) -> float:
    """How close a configuration's embeddings must stay to fp32's: int8 is lossy by design (the
    issue's bar is 0.98); another runtime in fp32 or bf16 must match torch (0.999)."""
    return 0.98 if config.endswith("int8") else 0.999


def time_encode(encoder: VideoEncoder, config: str, batch: int, repeats: int = 2) -> float:
    """Best seconds per clip of `repeats` batches (the first also picks oneDNN's kernels)."""
    encoder.set_config(config)
    clips = calibration_clips(encoder, batch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode(clips)
        best = min(best, (time.perf_counter() - started) / batch)
    return best


def candidates(encoder: VideoEncoder) -> list[str]:
    """Configurations worth timing: what was asked for, and under `auto` every runtime and precision
    this CPU runs natively (bf16 only where the CPU has it: emulated, it is many times slower)."""
    from vsearch.model import openvino
    from vsearch.model.encoder import cpu_supports_bf16

    native = ["fp32", *(["bf16"] if cpu_supports_bf16() else [])]
    runtimes = {"torch": [*native, "int8"], "openvino": [*native, *(["int8"] if openvino.can_quantize() else [])]}
    if encoder.runtime_asked == "auto" and not openvino.available():
        del runtimes["openvino"]
    elif encoder.runtime_asked != "auto":
        runtimes = {encoder.runtime_asked: runtimes[encoder.runtime_asked]}
    return [p if r == "torch" else f"{r} {p}" for r, ps in runtimes.items() for p in ps
            if encoder.precision_asked in ("auto", p)]


def reuse(encoder: VideoEncoder, home: Path) -> Choice | None:
    """Run in the configuration `vsearch index` measured fastest here, if it did (classify, live and
    similar load a model for a few clips: a calibration would cost more than it saves)."""
    configs = candidates(encoder) if encoder.device == "cpu" else []
    if len(configs) < 2:
        return None  # nothing to choose: what was asked for is what runs
    stored = _read_cache(Path(home) / CACHE_FILE).get(_key(encoder, configs, None))
    if stored is None:
        return None
    choice = _cached(stored)
    encoder.set_config(choice.config)
    return choice


def _cached(stored: dict) -> Choice:
    return Choice(stored["config"], int(stored["batch_size"]), "cached", stored["timings"],
                  tuple(stored.get("differed", ())))


def _key(encoder: VideoEncoder, configs: Sequence[str], batch_size: int | None) -> str:
    return machine_key(encoder) + f" | {'/'.join(configs)} | batch {batch_size or 'auto'}"


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
    from vsearch.model.encoder import ModelError

    encoder.cache_dir = Path(home)  # OpenVINO's converted models live beside the index
    if encoder.device != "cpu":
        choice = Choice(encoder.config, batch_size or GPU_BATCH, "asked" if batch_size else "default")
        encoder.batch_size = choice.batch_size
        return choice
    configs = candidates(encoder)
    if not configs:
        raise ModelError(f"--runtime {encoder.runtime_asked} cannot run --precision {encoder.precision_asked}")
    if batch_size and len(configs) == 1:
        choice = Choice(configs[0], batch_size, "asked")
    else:
        key = _key(encoder, configs, batch_size)
        cache = Path(home) / CACHE_FILE
        stored = _read_cache(cache).get(key)
        if stored is not None:
            choice = _cached(stored)
        else:
            if on_measure:
                on_measure()
            kept = agreeing(encoder, configs, calibration_clips(encoder, 8)) if len(configs) > 1 else configs
            timed = measure or (lambda c, b: time_encode(encoder, c, b))
            (config, batch), timings = search(timed, kept, (batch_size,) if batch_size else BATCHES)
            choice = Choice(config, batch, "calibrated", {f"{c}@{b}": round(s, 4) for (c, b), s in timings.items()},
                            tuple(c for c in configs if c not in kept))
            _write_cache(cache, key, choice)
    encoder.set_config(choice.config)
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
    data[key] = {"config": choice.config, "batch_size": choice.batch_size, "timings": choice.timings,
                 "differed": list(choice.differed),
                 "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
