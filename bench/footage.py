"""`vsearch bench --phone`: phone footage (4K and 1080p60 10-bit HEVC, HLG) indexed against decoding it.

Every figure is a real-time factor where it can be: seconds of video per second of wall time (above
1: faster than the footage plays). Each round decodes every frame of a clip once with PyAV (threads
on), indexes it end to end, and decodes it again, so the ratio compares the two in the same minute
of a shared machine; the CPU seconds of each (this process and the decode workers) do not depend on
what else the machine runs. The clips are generated once (libx265 at a phone's bit rate, slow on
few cores) and kept in the work folder.
"""

from __future__ import annotations

import os
import pickle
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import numpy as np

from vsearch import data
from vsearch.bench.indexing import (
    Result,
    best_seconds,
    env_summary,
    load_config,
    make_base_checkpoint,
    short_clips,
    table,
    vsearch_index,
)
from vsearch.bench.live import cpu_name
from vsearch.bench.phone import phone_clip
from vsearch.video.decode import FrameSpec, Reader, Sampling, plan_windows, probe


@dataclass(frozen=True)
class Clip:
    """Footage as a phone records it (bit rates: Apple's published sizes per minute for HEVC)."""

    name: str
    width: int
    height: int
    fps: int
    seconds: float
    transfer: str = "sdr"
    bit_rate: int = 24_000_000

    def path(self, work: Path) -> Path:
        return work / "phone" / (f"hevc-{self.width}x{self.height}-{self.fps}fps-{self.transfer}-"
                                 f"{self.bit_rate // 1_000_000}M-{self.seconds:g}s.mp4")

    def make(self, work: Path, log: Callable[[str], None]) -> Path:
        path = self.path(work)
        if not path.exists():
            log(f"generating {self.name} ({self.seconds:g} s; minutes on few cores, kept in {path.parent})...")
            part = path.with_name("." + path.name)
            phone_clip(part, self.seconds, self.width, self.height, self.fps, self.transfer, self.bit_rate)
            part.replace(path)
        return path


def clips() -> list[Clip]:
    return [Clip("4K30 HEVC 10-bit", 3840, 2160, 30, 30.0),
            Clip("4K60 HEVC 10-bit", 3840, 2160, 60, 10.0, bit_rate=48_000_000),
            Clip("1080p60 HEVC 10-bit", 1920, 1080, 60, 10.0, bit_rate=12_000_000),
            Clip("4K30 HEVC 10-bit HLG (iPhone)", 3840, 2160, 30, 10.0, "hlg")]


@dataclass
class Timing:
    wall: float
    cpu: float  # this process and its finished children (the decode workers)


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(run: Callable[[], Any]) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = run()
    return Timing(time.perf_counter() - wall, cpu_seconds() - cpu), out


def decode_every_frame(path: Path, hardware: str | None = None) -> int:
    """What the ratio is measured against: PyAV decoding every frame once, frame threads on."""
    import av
    from av.codec.hwaccel import HWAccel

    accel = HWAccel(device_type=hardware, allow_software_fallback=False) if hardware else None
    with av.open(str(path), hwaccel=accel) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


@dataclass
class Round:
    decode: Timing  # the mean of the decodes before and after
    index: Timing
    result: Result

    @property
    def ratio(self) -> float:
        return self.index.wall / self.decode.wall

    @property
    def cpu_ratio(self) -> float:
        return self.index.cpu / self.decode.cpu


def rounds(path: Path, index: Callable[[], Result], count: int, hardware: str | None = None) -> list[Round]:
    done = []
    decode = partial(decode_every_frame, path, hardware)
    for _ in range(count):
        before, _ = timed(decode)
        spent, result = timed(index)
        after, _ = timed(decode)
        done.append(Round(Timing((before.wall + after.wall) / 2, (before.cpu + after.cpu) / 2), spent, result))
    return done


def median_round(done: list[Round]) -> Round:
    return sorted(done, key=lambda r: r.ratio)[len(done) // 2]


# -- decoding less: what each option saves, and what it changes -------------------------------------

def window_frames(path: Path, spec: FrameSpec, options: dict[str, str] | None, skip: Any,
                  plan: bool) -> tuple[float, np.ndarray]:
    """(seconds, the model's frames of every window), decoding with FFmpeg decoder `options`
    (e.g. skip_loop_filter), `skip` as the decoder's skip_frame, or through vsearch's Reader
    (`plan`: what indexing does, frames nothing is decoded from left out)."""
    import av

    from vsearch.video.colour import frame_rgb
    from vsearch.video.decode import center_crop

    info = probe(path)
    wanted = [f for w in plan_windows(info, spec.num_frames, Sampling()) for f in w.frames]
    size = spec.scaled_size(info.width, info.height)
    started = time.perf_counter()
    if plan:
        reader = Reader(str(path), info, size, "pyav", 0)
        reader.plan(wanted)
        frames = reader.read(wanted)
        reader.close()
    else:
        times = [info.start + i / info.fps for i in wanted]
        got: list[np.ndarray] = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.options = dict(options or {})
            if skip:
                stream.codec_context.skip_frame = skip
            for frame in container.decode(stream):
                t = float(frame.time or 0.0)
                image = None
                while len(got) < len(times) and times[len(got)] <= t + 0.5 / info.fps:
                    image = frame_rgb(frame, size) if image is None else image
                    got.append(image)
                if len(got) == len(times):
                    break
        while len(got) < len(times):  # frames the decoder never gave (skipped at the very end)
            got.append(got[-1])
        frames = np.stack(got)
    seconds = time.perf_counter() - started
    return seconds, center_crop(frames.reshape(-1, spec.num_frames, *frames.shape[1:]), spec.crop)


def agreement(encoder: Any, reference: np.ndarray, frames: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement, lowest embedding cosine) of the model on these windows against the reference's."""
    p0, e0 = encoder.encode(reference)
    p1, e1 = encoder.encode(frames)
    return float(np.mean(p0.argmax(1) == p1.argmax(1))), float((e0 * e1).sum(1).min())


def decode_options(path: Path, models: dict[str, Any], log: Callable[[str], None]) -> list[list[str]]:
    """Each way of decoding less against every frame decoded: its time and pixel difference on the
    first model's frames, and each model's answers on its own frames."""
    variants: list[tuple[str, dict[str, str] | None, Any, bool]] = [
        ("every frame decoded (the reference)", None, None, False),
        ("frames nothing is decoded from left out (indexing's plan)", None, None, True),
        ("skip_loop_filter=all (no deblocking, no SAO)", {"skip_loop_filter": "all"}, None, False),
        ("skip_frame=nonref (every such frame, wanted ones too)", None, "NONREF", False),
        ("skip_frame=nonkey (keyframes only)", None, "NONKEY", False),
    ]
    rows = []
    reference: dict[str, np.ndarray] = {}
    for name, options, skip, plan in variants:
        log(f"  {name}...")
        row = [name]
        for i, (model, encoder) in enumerate(models.items()):
            seconds, frames = window_frames(path, encoder.frame_spec, options, skip, plan)
            reference.setdefault(model, frames)
            if i == 0:
                diff = np.abs(frames.astype(np.int16) - reference[model])
                row += [f"{seconds:.1f}", f"{diff.mean():.2f}", str(int(diff.max()))]
            top1, cosine = agreement(encoder, reference[model], frames)
            row += [f"{top1:.2f}", f"{cosine:.4f}"]
        rows.append(row)
    return rows


# -- the smaller costs: colour conversion, the pipe --------------------------------------------------

def colour_costs(paths: dict[str, Path]) -> list[list[str]]:
    """Milliseconds per frame of frame_rgb from 4K at the sizes indexing asks for, against FFmpeg's
    plain scale to RGB (the conversion before colour was handled)."""
    import av

    from vsearch.video.colour import frame_rgb

    rows = []
    for name, path in paths.items():
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
        for size, what in (((398, 224), "a model frame"), ((320, 180), "a thumbnail")):
            ours = 1000 * best_seconds(partial(frame_rgb, frame, size), 20)
            plain = 1000 * best_seconds(partial(frame.reformat, width=size[0], height=size[1], format="rgb24"), 20)
            rows.append([name, f"{size[0]}x{size[1]} ({what})", f"{ours:.1f}", f"{plain:.1f}"])
    return rows


def pipe_cost(spec: FrameSpec) -> tuple[float, float]:
    """(MB, ms) of one chunk of 4 windows of the model's frames crossing a pipe, as from a decode
    worker to the indexer (pickled, sent, received, unpickled); best of 5."""
    h, w = spec.crop or (224, 224)
    chunk = np.random.default_rng(0).integers(0, 256, (4, spec.num_frames, h, w, 3), dtype=np.uint8)
    size = len(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)) / 1e6
    sender, receiver = Pipe()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        thread = threading.Thread(target=sender.send, args=(chunk,))
        thread.start()
        receiver.recv()
        thread.join()
        best = min(best, time.perf_counter() - t)
    return size, best * 1000


def hardware_note(path: Path, spec: FrameSpec) -> tuple[list[str], str]:
    """(the hardware decoders to time here, a line on those that cannot be used)."""
    from av.codec.hwaccel import hwdevices_available

    from vsearch.video.decode import HARDWARE
    from vsearch.video.hwdecode import run_check

    checks = [run_check(name, str(path), spec) for name in HARDWARE if name in hwdevices_available()]
    usable = [c.name for c in checks if c.ok]
    refused = "; ".join(f"{c.name}: {c.reason}" for c in checks if not c.ok)
    return usable, (f"hardware decoders not usable here: {refused}" if refused else "")


# -- the report ----------------------------------------------------------------------------------------

def run_phone_benchmark(work: Path, quick: bool = False, log: Callable[[str], None] = print) -> str:
    from vsearch.model.calibrate import tune

    work.mkdir(parents=True, exist_ok=True)
    count = 1 if quick else 3
    footage = [(clip, clip.make(work, log)) for clip in clips()]
    tiny = data.path("motion-model")
    base_dir = make_base_checkpoint(work / "videomae-base-random")
    log("VideoMAE-base: the configuration `vsearch index` measures fastest here (cached in --work)...")
    base = load_config(base_dir, None, work, short_clips(work / "short", 8))
    base_choice = tune(base, work).choice
    small = load_config(tiny, "fp32", batch=8)
    sampling = Sampling()
    lines = [f"machine: {env_summary()}", f"CPU: {cpu_name()}", ""]
    rows, hours = [], []
    usable, refused = hardware_note(footage[0][1], base.frame_spec)
    for clip, path in footage:
        info = probe(path)
        name = f"{clip.name}, {path.stat().st_size * 8 / info.duration / 1e6:.1f} Mbit/s, {info.duration:g} s"
        log(f"{clip.name}: decode alone, index with the demo model, decode again ({count} rounds)...")
        done = rounds(path, partial(vsearch_index, [path], tiny, sampling, 8, "fp32"), count)
        mid = median_round(done)
        video = info.duration
        rows.append([name, "decode alone (PyAV, every frame, threads on)", f"{mid.decode.wall:.1f}",
                     f"{video / mid.decode.wall:.2f}", f"{mid.decode.cpu:.1f}", ""])
        rows.append([name, "index, demo model (8 x 32 px)", f"{mid.index.wall:.1f}",
                     f"{video / mid.index.wall:.2f}", f"{mid.index.cpu:.1f}",
                     f"{mid.ratio:.2f} (rounds {', '.join(f'{r.ratio:.2f}' for r in done)}); CPU {mid.cpu_ratio:.2f}"])
        log(f"{clip.name}: index with VideoMAE-base ({base_choice.described})...")
        spent, result = timed(partial(vsearch_index, [path], base_dir, sampling, base_choice.batch or 1,
                                      base_choice.label, streams=base_choice.streams))
        rows.append([name, f"index, VideoMAE-base ({base_choice.described}; model "
                           f"{result.stages.get('model', 0.0):.1f} s)", f"{spent.wall:.1f}",
                     f"{video / spent.wall:.2f}", f"{spent.cpu:.1f}", f"{spent.wall / mid.decode.wall:.2f}"])
        hours.append([clip.name, *(f"{r.wall / video:.2f} ({r.cpu / video / 8:.2f}, {r.cpu / video / 16:.2f})"
                                   for r in (mid.index, spent))])
        for hardware in usable:
            index = partial(vsearch_index, [path], tiny, sampling, 8, "fp32", decoder=hardware)
            hw = rounds(path, index, 1, hardware)[0]
            rows += [[name, f"decode alone ({hardware})", f"{hw.decode.wall:.1f}", f"{video / hw.decode.wall:.2f}",
                      f"{hw.decode.cpu:.1f}", ""],
                     [name, f"index, demo model, --decoder {hardware}", f"{hw.index.wall:.1f}",
                      f"{video / hw.index.wall:.2f}", f"{hw.index.cpu:.1f}", f"{hw.ratio:.2f}"]]
    lines += ["### Phone footage: real-time factors (seconds of video per second; above 1 is faster than it plays)",
              table(rows, ["clip", "run", "wall s", "real-time factor", "CPU s", "index / decode alone"]),
              "CPU s: this process and its decode workers. index / decode alone: the median of the rounds, "
              "each index run between two decodes of the same clip.",
              refused or "hardware decoders: none built into this PyAV", "",
              f"### Hours of indexing per hour of footage: measured on {os.cpu_count()} cores (estimated for 8 and 16: "
              "the CPU seconds measured here spread over every core)",
              table(hours, ["clip", "demo model: measured (8 cores, 16 cores: estimated)",
                            f"VideoMAE-base, {base_choice.described}: the same"]), ""]

    log("decoding less: options against every frame decoded (4K60)...")
    four_k60 = next(p for c, p in footage if c.fps == 60 and c.width == 3840)
    option_rows = decode_options(four_k60, {"VideoMAE-base": base, "demo model": small}, log)
    lines += ["### Decoding less, 4K60: the model's frames of every window against every frame decoded",
              table(option_rows, ["decoding", "s (16 x 224)", "mean |diff| of 255", "max |diff|", "base top-1",
                                  "base min cos", "demo top-1", "demo min cos"]),
              "time and difference on VideoMAE-base's frames; top-1: the model's top label agrees with the "
              "reference's (VideoMAE-base has random weights: its top-1 is fragile); min cos: the lowest cosine of a "
              "window's embedding to the reference's.", ""]

    log("colour conversion and the pipe...")
    hlg = next(p for c, p in footage if c.transfer == "hlg")
    lines += ["### Colour conversion per frame from 4K (best of 20, ms)",
              table(colour_costs({"4K SDR 10-bit": footage[0][1], "4K HLG 10-bit": hlg}),
                    ["source", "to", "frame_rgb ms", "FFmpeg's plain RGB ms (colours wrong for HDR)"]), ""]
    mb, ms = pipe_cost(base.frame_spec)
    lines.append(f"a chunk of 4 VideoMAE-base windows from a decode worker to the indexer: {mb:.1f} MB in {ms:.1f} ms "
                 "(pickle, pipe, unpickle)")
    return "\n".join(lines)
