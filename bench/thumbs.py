"""What thumbnails made at index time cost: indexing work and disk per clip.

Measured in CPU seconds of this process (time.process_time), not wall time: on a shared machine
the wall clock of a whole index run varies by more than the few percent to be shown, while the
CPU time spent on a given piece of work does not depend on what else runs. The extra work is a
second reformat of each window's middle frame and a JPEG encode, in the decode worker; it is
compared with the CPU time of decoding the window and of running the model on it.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsearch.video.decode import Extras, FrameSpec, Sampling, read_windows

if TYPE_CHECKING:
    from vsearch.model.encoder import Encoder


def decode_cpu(videos: list[Path], spec: FrameSpec, sampling: Sampling, thumbs: bool) -> tuple[float, int]:
    """(CPU seconds, windows) to decode every window of `videos` in this process, one thread."""
    started, windows = time.process_time(), 0
    for v in videos:
        for _, part, _ in read_windows(str(v), spec, sampling, extras=Extras(thumbs=True) if thumbs else None):
            windows += len(part)
    return time.process_time() - started, windows


def model_cpu_per_window(encoder: Encoder, spec: FrameSpec, batch: int = 8) -> float:
    """CPU seconds (all torch threads) of the model per clip, median of 3 batches."""
    crop = spec.crop or (224, 224)
    clips = np.random.default_rng(0).integers(0, 256, (batch, spec.num_frames, *crop, 3), dtype=np.uint8)
    encoder.encode(clips)  # warm-up
    times = []
    for _ in range(3):
        t = time.process_time()
        encoder.encode(clips)
        times.append((time.process_time() - t) / batch)
    return statistics.median(times)


def thumbnail_disk(videos: list[Path], encoder: Encoder, sampling: Sampling) -> tuple[int, int, int]:
    """Index into a throwaway home: (clips, thumbnail bytes, bytes in file-system blocks)."""
    from vsearch.core.home import Home
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.search.catalog import Catalog

    home = Path(tempfile.mkdtemp(prefix="vsearch-thumbs-"))
    try:
        folder = home / "videos"
        folder.mkdir()
        for i, v in enumerate(videos):
            (folder / f"{i:03d}-{v.name}").symlink_to(v.resolve())
        catalog = Catalog(home)
        report = Indexer(catalog, lambda: encoder, IndexSettings(batch_size=8, sampling=sampling)).run([folder])
        catalog.close()
        files = [p for p in Home.at(home).thumbs.rglob("*.jpg")]
        size = sum(p.stat().st_size for p in files)
        blocks = sum(p.stat().st_blocks * 512 for p in files)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return report.windows, size, blocks


def thumbnail_report(videos: list[Path], models: dict[str, Path], sampling: Sampling, repeats: int = 5,
                     log: Callable[[str], None] = print) -> list[str]:
    """Markdown lines: the extra CPU work of thumbnails against decode + model, and disk per clip."""
    from vsearch.bench.indexing import table
    from vsearch.model.encoder import load_encoder

    rows = []
    clips = size = blocks = 0
    for name, model_dir in models.items():
        log(f"thumbnail cost with {name}...")
        encoder = load_encoder(str(model_dir))
        spec = encoder.frame_spec
        dec = {t: min(decode_cpu(videos, spec, sampling, t) for _ in range(repeats)) for t in (False, True)}
        windows = dec[False][1]
        plain, extra = dec[False][0] / windows, (dec[True][0] - dec[False][0]) / windows
        model = model_cpu_per_window(encoder, spec)
        rows.append([name, f"{plain * 1000:.0f}", f"{model * 1000:.0f}", f"{extra * 1000:.1f}",
                     f"{extra / (plain + model) * 100:.1f}%"])
        if not clips:
            clips, size, blocks = thumbnail_disk(videos, encoder, sampling)
    return ["### Thumbnails at index time (one JPEG per clip, from frames already decoded)",
            table(rows, ["model", "decode CPU ms/window", "model CPU ms/clip", "thumbnail CPU ms/window",
                         "share of indexing work"]),
            f"{len(videos)} videos, {windows} windows of 2 s; decode CPU best of {repeats}; the share is the "
            "thumbnail's CPU time over decode + model CPU time per clip. Disk: "
            f"{size / clips / 1024:.1f} KiB per clip ({blocks / clips / 1024:.1f} KiB in 4 KiB blocks).", ""]


if __name__ == "__main__":  # python -m vsearch.bench.thumbs WORK: the figures quoted in docs/commands.md
    import sys

    from vsearch.bench.indexing import make_base_checkpoint, sample_videos, variants_720p

    work = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out")
    work.mkdir(parents=True, exist_ok=True)
    hd = variants_720p(sample_videos()["720p"][0], work / "720p", (18, 23, 28, 33))
    models = {"VideoMAE-base (random weights)": make_base_checkpoint(work / "videomae-base-random")}
    if len(sys.argv) > 2:
        models = {"tiny VideoMAE (32 px, 8 frames)": Path(sys.argv[2]), **models}
    print("\n".join(thumbnail_report(hd, models, Sampling(window_seconds=2.0))))
