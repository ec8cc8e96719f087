"""Choose runtime, precision and batch size by measuring them on the machine at hand.

No fixed default is right everywhere: on a 2-core AVX2 CPU VideoMAE-base runs 3.1 s/window at
batch 1 and 4.0 s/window at batch 8, while AVX-512 BF16 CPUs gain from batching and bf16, and
CPUs whose bf16 is emulated lose badly with it. So every registered runtime is timed in the
precisions this device runs natively, the fastest that agrees with torch fp32 is kept, and the
choice is cached in the index home, keyed by CPU model and flags, runtime versions and the model,
so it is measured once per machine and model. The reference (torch fp32, one window at a time, as
the Hugging Face recipe runs) is always measured and wins ties: a measured choice is never slower
than the reference. On a GPU the same search runs over the GPU's precisions and larger batches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsearch.core.errors import RuntimeUnavailable
from vsearch.core.home import Home, read_measurements, store_measurement
from vsearch.model import runtimes
from vsearch.model.hardware import cpu_description
from vsearch.model.runtimes import Choice

if TYPE_CHECKING:
    from vsearch.model.runner import RuntimeModel

REFERENCE = Choice("torch", "fp32", 1)
BATCHES = (1, 2, 4, 8)
GPU_BATCHES = (1, 2, 4, 8, 16, 32)  # a GPU keeps gaining from bigger batches long after a CPU stops
MARGIN = 0.05  # a configuration must beat the one it replaces by this much: timings are noisy
MIN_WINDOWS = 8  # of the user's own windows, for a choice to stand once more are at hand


@dataclass(frozen=True)
class Calibration:
    """What was chosen, and how: "calibrated", "cached", "asked" or "default"."""

    choice: Choice
    how: str
    timings: dict[str, float] = field(default_factory=dict)  # "openvino bf16@4" -> seconds per window
    differed: tuple[str, ...] = ()  # configurations left out: their answers differed from fp32's
    took: float = 0.0  # seconds the measurement took (converting, quantizing, checking, timing)

    def describe(self) -> str:
        measured = ", ".join(f"{k} {v:.3g}" for k, v in self.timings.items())
        left = f"; left out, answers differ from fp32: {', '.join(self.differed)}" if self.differed else ""
        took = f" in {self.took:.0f} s" if self.took else ""
        return (f"{self.choice.described} ({self.how}{took}{': s/window ' + measured if measured else ''}{left})")


def pick(timings: Mapping[Choice, float], margin: float = MARGIN) -> Choice:
    """The fastest configuration per window; the reference unless another beats it by `margin`, and
    of configurations within `margin` of the fastest the smallest batch (same speed, less memory)."""
    best = min(timings, key=lambda k: timings[k])
    if REFERENCE in timings and timings[best] > timings[REFERENCE] * (1 - margin):
        return REFERENCE
    near = [k for k in timings if timings[k] <= timings[best] * (1 + margin)]
    return min(near, key=lambda k: (k.batch or 1, timings[k]))


def search(
    measure: Callable[[Choice], float],
    configs: Sequence[Choice],
    batches: Sequence[int] = BATCHES,
    margin: float = MARGIN,
) -> tuple[Choice, dict[Choice, float]]:
    """Time every configuration at the first batch size, then the fastest at every bigger batch until
    one is clearly slower than the best so far.

    A batch that gains less than `margin` does not stop the search: batch 2 may gain 3% where batch
    4 gains 12% (fewer, bigger products keep AMX busier), and `pick` still prefers the smaller of
    two batches within the margin. `measure(choice)` returns seconds per window. Returns the choice
    and all timings.
    """
    timings = {c.at(batches[0]): measure(c.at(batches[0])) for c in configs}
    best = pick(timings, margin)
    fastest = timings[best]
    for batch in batches[1:]:
        seconds = timings[best.at(batch)] = measure(best.at(batch))
        if seconds > fastest * (1 + margin):
            break  # bigger batches cost here (small CPUs: cache misses); bigger still will not pay
        fastest = min(fastest, seconds)
    return pick(timings, margin), timings


def in_streams(measure: Callable[[Choice], float], best: Choice, timings: dict[Choice, float], streams: int,
               batch_size: int | None = None, margin: float = MARGIN) -> Choice:
    """`best` run as `streams` requests side by side, each on its share of the cores, when that is
    no slower alone by more than `margin`.

    Alone the two run level (OpenVINO bf16, VideoMAE-base, AMX Xeon: 0.351 and 0.352 s/window), but
    indexing decodes on the same cores: beside a load of a third of one core, one request on both
    cores slowed to 0.441 s/window (a thread that waits stalls the other at every layer) and two
    requests to 0.394. Each stream needs a window of its own, so the batch is at least `streams`."""
    batch = batch_size or max(best.batch or 1, streams)
    if streams < 2 or batch < streams:
        return best
    candidate = best.at(batch).in_streams(streams)
    timings[candidate] = measure(candidate)
    return candidate if timings[candidate] <= timings[best] * (1 + margin) else best


def machine_key(encoder: RuntimeModel) -> str:
    """What a timing depends on: CPU, cores, threads, every runtime's version, device and the model."""
    import torch
    import transformers

    versions = " | ".join(f"{r.name} {r.version() or '-'}" for r in runtimes.RUNTIMES)
    return (f"{cpu_key()} | threads {torch.get_num_threads()} | {versions} | "
            f"transformers {transformers.__version__} | {encoder.device} | {encoder.model_id}")


def cpu_key() -> str:
    """The CPU a timing was measured on: its model, the flags that decide its kernels, its cores."""
    name, flags = cpu_description()
    return f"{name} [{' '.join(flags)}] x{os.cpu_count()}"


def calibration_windows(encoder: RuntimeModel, batch: int) -> np.ndarray:
    """`batch` windows to time and check on: the user's own windows where the encoder has them
    (VideoEncoder.sample_windows; those that int8 was not quantized on), repeated to fill the batch
    when there are fewer (the time of a batch does not depend on which windows are in it)."""
    windows = encoder.sample_windows()
    held_out = windows[1::2] if len(windows) > 1 else windows
    return held_out[np.arange(batch) % len(held_out)]


def same_top_label(p32: np.ndarray, p: np.ndarray, tie: float = 0.01) -> np.ndarray:
    """Per window: `p`'s top label is fp32's, or one fp32 scores within `tie` (relative) of its own top.

    A window where fp32 itself cannot tell two labels apart has no top label to keep: a model with
    random weights gives all 400 Kinetics labels ~0.0025, and any rounding reorders them. For a
    trained model's confident windows this is exact top-1 agreement."""
    rows = np.arange(len(p32))
    return p32[rows, p.argmax(1)] >= (1 - tie) * p32.max(1)


def min_cosine(choice: Choice) -> float:
    """How close a configuration's embeddings must stay to fp32's: int8 is lossy by design (0.98);
    another runtime or precision must match torch fp32 (0.999)."""
    return 0.98 if choice.precision == "int8" else 0.999


def agreeing(encoder: RuntimeModel, configs: Sequence[Choice], windows: np.ndarray) -> list[Choice]:
    """The configurations that answer as torch fp32 does on these windows (the model's own `agrees`:
    VideoMAE's top labels and embeddings, a visual model's vectors); the reference itself always."""
    was = encoder.choice
    reference = Choice(REFERENCE.runtime, REFERENCE.precision)
    kept = [reference]
    try:
        encoder.use(reference)
        expected = encoder.outputs(windows)
        for config in configs:
            if config != reference:
                encoder.use(config)
                if encoder.agrees(expected, encoder.outputs(windows), config):
                    kept.append(config)
    finally:
        encoder.use(was)
    return [c for c in configs if c in kept]


def time_encode(encoder: RuntimeModel, choice: Choice, repeats: int = 2, hopeless: float = float("inf")) -> float:
    """Best seconds per window of `repeats` batches (the first also picks oneDNN's kernels); one batch
    when that one is already slower than `hopeless` seconds per window."""
    encoder.use(choice)
    batch = choice.batch or 1
    windows = calibration_windows(encoder, batch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        [out.cpu() for out in encoder.outputs(windows)]  # on a GPU, .cpu() waits for the work to finish
        best = min(best, (time.perf_counter() - started) / batch)
        if best > hopeless:
            break
    return best


class Timer:
    """`time_encode` for the search, repeating a measurement only while the ranking is unclear: a
    configuration whose first batch is 1.5x slower than the fastest so far cannot win (a second
    batch gains ~10%, kernels already picked), so it is not timed again."""

    def __init__(self, encoder: RuntimeModel):
        self.encoder, self.fastest = encoder, float("inf")

    def __call__(self, choice: Choice) -> float:
        seconds = time_encode(self.encoder, choice, hopeless=1.5 * self.fastest)
        self.fastest = min(self.fastest, seconds)
        return seconds


def candidates(encoder: RuntimeModel) -> list[Choice]:
    """Configurations worth timing: what was asked for, and under `auto` every available runtime in
    every precision this device runs natively (bf16 only where the hardware has it).

    Where the hardware runs bf16 natively, fp32 cannot win in a runtime that also runs bf16 (half
    the memory traffic, twice the products per cycle): only the reference, torch fp32, is timed in
    fp32 then, which saves the first run a conversion and a compilation."""
    found = []
    reference = Choice(REFERENCE.runtime, REFERENCE.precision)
    for runtime in runtimes.RUNTIMES:
        if encoder.runtime_asked not in ("auto", runtime.name) or not runtime.available():
            continue
        fast = runtime.fast_precisions(encoder.device)
        asked = [encoder.precision_asked] if encoder.precision_asked != "auto" else []
        for precision in asked or fast:
            choice = Choice(runtime.name, precision)
            outrun = not asked and precision == "fp32" and "bf16" in fast and choice != reference
            if precision in runtime.precisions(encoder.device) and not outrun:
                found.append(choice)
    # torch's int8 (the linear layers only, activations quantized anew on every call) never came
    # close where OpenVINO runs both int8 (every product, statically) and bf16: 1.04 s/window against
    # 0.59 and 0.95 on an AVX-512 BF16 EPYC, 1.07 against 0.33 and 0.45 on an AMX Xeon. Skipping
    # it saves the first run a quantization, a check and a timing. Without native bf16 it stays a
    # candidate: there it was level with OpenVINO fp32.
    dominant = {Choice("openvino", "int8"), Choice("openvino", "bf16")}
    if encoder.precision_asked == "auto" and dominant <= set(found):
        found = [c for c in found if c != Choice("torch", "int8")]
    return found


def reuse(encoder: RuntimeModel, home: Path | Home) -> Calibration | None:
    """Run in the configuration `vsearch index` measured fastest here, if it did (classify, live and
    similar load a model for a few windows: a calibration would cost more than it saves)."""
    configs = candidates(encoder)
    if len(configs) < 2:
        return None  # nothing to choose: what was asked for is what runs
    stored = read_measurements(Home.at(home).calibration).get(_key(encoder, configs, None))
    if stored is None:
        return None
    calibration = _cached(stored)
    # A few windows, one at a time: every core on one request, not the indexer's streams.
    encoder.use(calibration.choice.in_streams(1))
    return calibration


def tune(
    encoder: RuntimeModel,
    home: Path | Home,
    batch_size: int | None = None,
    measure: Callable[[Choice], float] | None = None,
    on_measure: Callable[[], None] | None = None,
) -> Calibration:
    """Set the encoder's runtime, precision and batch size to the fastest here; returns the choice.

    A `batch_size` or a runtime and precision given by the user are kept as given. `on_measure` is
    called before a measurement that takes a while (VideoMAE-base: a minute or two).
    """
    configs = candidates(encoder)
    if not configs:
        raise RuntimeUnavailable(f"--runtime {encoder.runtime_asked} cannot run --precision "
                                 f"{encoder.precision_asked} on {encoder.device} here")
    if batch_size and len(configs) == 1:
        calibration = Calibration(configs[0].at(batch_size), "asked")
    else:
        key = _key(encoder, configs, batch_size)
        cache = Home.at(home).calibration
        stored = read_measurements(cache).get(key)
        if stored is not None and not _too_few_windows(stored, encoder):
            calibration = _cached(stored)
        else:
            if on_measure:
                on_measure()
            started = time.perf_counter()
            kept = agreeing(encoder, configs, calibration_windows(encoder, 8)) if len(configs) > 1 else configs
            batches = (batch_size,) if batch_size else (BATCHES if encoder.device == "cpu" else GPU_BATCHES)
            timer = measure or Timer(encoder)
            choice, timings = search(timer, kept, batches)
            most = max(runtimes.get(choice.runtime).streams(encoder.device))
            choice = in_streams(timer, choice, timings, most, batch_size)
            calibration = Calibration(choice, "calibrated", {str(c): round(s, 4) for c, s in timings.items()},
                                      tuple(c.label for c in configs if c not in kept),
                                      round(time.perf_counter() - started, 1))
            _write_cache(cache, key, calibration, len(encoder.sample_windows()))
    encoder.use(calibration.choice)
    encoder.forget_others()
    return calibration


def _too_few_windows(stored: dict, encoder: RuntimeModel) -> bool:
    """A choice made on fewer than MIN_WINDOWS of the user's windows (the first folder indexed held only a
    few) is made again once more are at hand: agreement on two windows says little, and int8 was
    quantized on them."""
    made_on = int(stored.get("windows", stored.get("clips", MIN_WINDOWS)))
    return made_on < MIN_WINDOWS and len(encoder.sample_windows()) > made_on


def _cached(stored: dict) -> Calibration:
    choice = Choice.from_label(stored["config"], int(stored["batch_size"]), int(stored.get("streams", 1)))
    return Calibration(choice, "cached", stored["timings"],
                       tuple(stored.get("differed", ())), float(stored.get("took", 0.0)))


def _key(encoder: RuntimeModel, configs: Sequence[Choice], batch_size: int | None) -> str:
    # streams: a choice cached before they were measured is measured again
    return machine_key(encoder) + f" | {'/'.join(c.label for c in configs)} | batch {batch_size or 'auto'} | streams"


def _write_cache(path: Path, key: str, calibration: Calibration, windows: int) -> None:
    store_measurement(path, key, {"config": calibration.choice.label, "batch_size": calibration.choice.batch,
                                  "streams": calibration.choice.streams,
                                  "timings": calibration.timings, "differed": list(calibration.differed),
                                  "windows": windows, "took": calibration.took})


def at_its_fastest(model: RuntimeModel, home: Path | Home, measure: bool, batch_size: int | None, what: str,
                   log: Callable[[str], None]) -> None:
    """Put a loaded model in the runtime, precision and batch measured fastest here: measured now
    (once per machine and model, cached in the home) with `measure`, else as measured before, if ever."""
    if not measure:
        found = reuse(model, home)
        log(f"{what}: {model.describe()}" + (" (measured fastest here by vsearch index)" if found else ""))
        return
    calibration = tune(model, home, batch_size, on_measure=lambda: _measuring(model, what, log))
    log(f"{what}: {model.name} on {model.device}, {calibration.describe()}")


def _measuring(model: RuntimeModel, what: str, log: Callable[[str], None]) -> None:
    """What a person sees before the first run's measurement, and what could make it faster."""
    from vsearch.model.runtimes import RUNTIMES

    log(f"measuring the {what}'s fastest runtime, precision and batch size here (once per machine and model)...")
    missing = [r for r in RUNTIMES if model.runtime_asked in ("auto", r.name) and not r.available()]
    for r in missing:
        log(f"  (the {r.name} runtime is often faster here: {r.install_hint()})")
    if model.runtime_asked in ("auto", "openvino") and model.precision_asked in ("auto", "int8") and model.device == "cpu":
        from vsearch.model.runtimes.openvino import INT8_HINT, can_quantize

        if not missing and not can_quantize():
            log(f"  (OpenVINO int8 is often the fastest on CPUs: {INT8_HINT})")
