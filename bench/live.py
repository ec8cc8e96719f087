"""`vsearch bench --live`: latency, real-time factor, skipped windows and memory of the live loop.

A generated video is played at its own speed (`--realtime`), as a camera would deliver it, through
the same LiveRunner that `vsearch live` uses: the demo model on 64x48 motion clips at 16 fps, and
VideoMAE-base (random weights, same compute as the real one) on a 720p 30 fps test pattern, so
decoding and scaling are part of the cost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsearch import data
from vsearch.bench.indexing import env_summary, make_base_checkpoint, table
from vsearch.bench.synthetic import MOTIONS, long_video, motion_stream, write_video
from vsearch.live.loop import LiveRunner, LiveSettings, Result, parse_source

if TYPE_CHECKING:
    from vsearch.model.encoder import VideoEncoder


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def rss_mb() -> float:
    """Resident memory of this process now (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@dataclass
class LiveRow:
    model: str
    every: float
    seconds: float
    results: int
    dropped: int
    p50: float
    p95: float
    model_own: float  # the model's time for one window, measured alone before the run
    model_run: float  # ... and during the run, beside the reader thread's decoding
    overhead: float  # p50 of latency less the model's time, per result
    rtf: float  # the model's time per window / --every: under 1 it keeps up with one result per step
    rss_start: float
    rss_minute: float
    rss_end: float


def demo_video(path: Path, seconds: float) -> Path:
    """The six motions in turn, 4 s each, repeated to fill `seconds`."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    count = int(np.ceil(seconds / 4.0))
    motions = [MOTIONS[i % len(MOTIONS)] for i in range(count)]
    return write_video(path, motion_stream(motions, 4.0, rng))


def own_time(encoder: VideoEncoder, repeats: int = 3) -> float:
    """Median seconds of one window through the model alone (after a warm-up call)."""
    spec = encoder.frame_spec
    h, w = spec.crop or (224, 224)
    clip = np.random.default_rng(0).integers(0, 256, (1, spec.num_frames, h, w, 3), dtype=np.uint8)
    encoder.encode(clip)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        encoder.encode(clip)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def live_run(name: str, model_dir: Path, video: Path, seconds: float, every: float, window: float,
             log: Callable[[str], None]) -> LiveRow:
    """One model through the live loop, in the configuration `vsearch bench` (or `vsearch index`
    with this folder as its home) measured fastest here, as `vsearch live` would run it."""
    from vsearch.model.calibrate import reuse
    from vsearch.model.encoder import load_encoder

    encoder = load_encoder(str(model_dir), home=video.parent)
    reuse(encoder, video.parent)
    model_own = own_time(encoder)
    rss_start = rss_mb()
    rss_minute = rss_start
    runner = LiveRunner(parse_source(str(video)), encoder, LiveSettings(window=window, every=every, realtime=True))
    log(f"live: {name}, {seconds:g} s at the video's own speed ({encoder.describe()})")
    started = time.monotonic()
    items = runner.run()
    overheads = []  # per result: latency less the model's own time, i.e. what the loop adds
    for item in items:
        if isinstance(item, Result):
            overheads.append(item.latency - item.model_seconds)
            if rss_minute == rss_start and time.monotonic() - started >= 60:
                rss_minute = rss_mb()
            if item.end >= seconds:
                break
    items.close()
    s = runner.summary
    model_run = s.model_seconds / s.results if s.results else float("nan")
    return LiveRow(name, every, s.source_seconds, s.results, s.dropped, s.latency(50), s.latency(95), model_own,
                   model_run, float(np.median(overheads)) if overheads else float("nan"), model_run / every,
                   rss_start, rss_minute, rss_mb())


def run_live_benchmark(work: Path, quick: bool = False, soak: float = 0.0,
                       log: Callable[[str], None] = print) -> str:
    """The latency table for the demo model and VideoMAE-base; with `soak`, one long demo run."""
    work.mkdir(parents=True, exist_ok=True)
    seconds = 20.0 if quick else 90.0
    rows = []
    demo = data.path("motion-model")
    if soak:
        video = demo_video(work / f"live-demo-{int(soak)}s.mp4", soak + 4)
        rows.append(live_run("demo (soak)", demo, video, soak, every=1.0, window=2.0, log=log))
    else:
        video = demo_video(work / f"live-demo-{int(seconds)}s.mp4", seconds + 4)
        rows.append(live_run("demo", demo, video, seconds, every=1.0, window=2.0, log=log))
        base = make_base_checkpoint(work / "videomae-base-random")
        hd = work / f"live-720p-{int(seconds)}s.mp4"
        if not hd.exists():
            long_video(hd, seconds + 4)
        rows.append(live_run("VideoMAE-base", base, hd, seconds, every=1.0, window=2.0, log=log))
    header = ["model", "every", "video s", "results", "skipped", "latency p50", "p95", "model alone",
              "model in run", "latency - model p50", "real-time factor", "RSS start", "after 1 min", "end"]
    body = [[r.model, f"{r.every:g} s", f"{r.seconds:.0f}", str(r.results), str(r.dropped), f"{r.p50:.3f} s",
             f"{r.p95:.3f} s", f"{r.model_own:.3f} s", f"{r.model_run:.3f} s", f"{r.overhead:.3f} s",
             f"{r.rtf:.2f}", f"{r.rss_start:.0f} MB",
             f"{r.rss_minute:.0f} MB" if r.seconds >= 60 else "-", f"{r.rss_end:.0f} MB"] for r in rows]
    notes = ["latency: wall time from the arrival of a window's last frame to its result; latency - model: "
             "per result, latency less that window's model time (the loop's own cost), median.",
             "real-time factor: the model's time per window in the run / --every (under 1 it keeps up).",
             "skipped: windows the model had no time for; they are dropped, never queued."]
    if soak and rows[0].seconds >= 60:
        growth = (rows[0].rss_end - rows[0].rss_minute) / rows[0].rss_minute * 100
        notes.append(f"memory from the first minute to the end: {growth:+.1f}% (target: within 10%)")
    return "\n".join([f"{cpu_name()}; {env_summary()}", table(body, header), *notes])
