"""`vsearch bench --ray`: what Ray costs on one machine, and how decoding scales with its workers.

All runs index the same real 720p files with the same model, in one process:
  - locally (decode worker processes + the model in this process) and on a local Ray (decode
    tasks + a model actor), with 1 and then 2 decode workers: the difference is Ray's overhead;
  - decode alone, seconds per window at VideoMAE-base's input (16 x 224 x 224): the figure that
    says how many CPU cores of decoding one GPU needs.
The model is VideoMAE-base's input with a tiny network behind it (random weights), so the runs
are decode-bound, as a GPU makes them; VideoMAE-base itself on a CPU would hide every other cost.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vsearch.bench.indexing import BASE_CONFIG, BASE_PREPROCESSOR, decode_only, sample_videos, table, variants_720p
from vsearch.video.decode import Sampling


def make_decode_bound_checkpoint(out: Path) -> Path:
    """VideoMAE-base's input and labels (16 x 224 x 224, 400 classes) with one narrow layer."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    labels = {i: f"label {i}" for i in range(BASE_CONFIG["num_labels"])}
    config = VideoMAEConfig.from_dict({**BASE_CONFIG, "hidden_size": 48, "num_hidden_layers": 1, "num_attention_heads": 3,
                                       "intermediate_size": 96, "id2label": labels,
                                       "label2id": {v: k for k, v in labels.items()}})
    VideoMAEForVideoClassification(config).save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(BASE_PREPROCESSOR))
    return out


def _library(files: list[Path], copies: int) -> Path:
    """A folder of links to the files, `copies` each (distinct paths, so each is indexed)."""
    folder = Path(tempfile.mkdtemp(prefix="vsearch-bench-ray-videos-"))
    for n in range(copies):
        for f in files:
            (folder / f"{n}-{f.name}").symlink_to(f.resolve())
    return folder


def _index(library: Path, model: Path, sampling: Sampling, workers: int, on_ray: bool) -> tuple[int, float, float]:
    """(clips, seconds, seconds storing) of one index run into a throwaway index."""
    from vsearch.indexer.distributed import RayIndexer, RaySettings
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.model.encoder import load_encoder
    from vsearch.search.catalog import Catalog

    home = Path(tempfile.mkdtemp(prefix="vsearch-bench-ray-"))
    loader = functools.partial(load_encoder, str(model), device="cpu")
    settings = IndexSettings(batch_size=8, sampling=sampling, workers=workers)
    try:
        catalog = Catalog(home)
        started = time.perf_counter()
        if on_ray:
            report = RayIndexer(catalog, loader, settings, RaySettings(decode_tasks=workers)).run([library])
        else:
            report = Indexer(catalog, loader, settings).run([library])
        seconds = time.perf_counter() - started
        catalog.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return report.windows, seconds, report.timings.get("store", 0.0)


def writer_rate(videos: int = 1000, windows: int = 10, batch: int = 64, dim: int = 768) -> float:
    """Clips/s the driver stores, alone: synthetic model results through RayResults and BatchStore,
    as batches arrive from iter_batches (clips, labels, per-video aggregation, FAISS). It caps any cluster."""
    import numpy as np

    from vsearch.indexer.distributed import RayResults
    from vsearch.indexer.pipeline import BatchStore, IndexJob, IndexReport, Vectors
    from vsearch.search.catalog import ACTIONS, Catalog
    from vsearch.video.files import FoundFile

    home = Path(tempfile.mkdtemp(prefix="vsearch-bench-writer-"))
    rng = np.random.default_rng(0)
    labels = [f"label {i}" for i in range(400)]
    try:
        catalog = Catalog(home)
        catalog.bind_model("synthetic", "synthetic", dim, labels)
        jobs = [IndexJob(FoundFile(f"/videos/{i}.mp4", 1, 1.0), f"content-{i}") for i in range(videos)]
        vectors = Vectors()
        vectors.open(catalog, ACTIONS)
        writer = RayResults(BatchStore(catalog, vectors, jobs, IndexReport()), labels)
        keys = np.repeat(np.arange(videos), windows)
        idx = np.tile(np.arange(windows), videos)
        started = time.perf_counter()
        for first in range(0, len(keys), batch):
            n = len(keys[first : first + batch])
            embeddings = rng.standard_normal((n, dim)).astype(np.float32)
            writer.store({
                "key": keys[first : first + n], "idx": idx[first : first + n], "start": np.zeros(n), "end": np.ones(n),
                "windows": np.full(n, windows), "reason": np.full(n, "", dtype=object),
                "video_frames": np.full(n, 1000), "fps": np.full(n, 25.0), "width": np.full(n, 1280),
                "height": np.full(n, 720), "probs": rng.dirichlet(np.ones(len(labels)), n).astype(np.float32),
                "embedding": embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True),
            })
        seconds = time.perf_counter() - started
        catalog.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return len(keys) / seconds


def run_ray_benchmark(work: Path, quick: bool = False, log: Callable[[str], None] = print) -> str:
    """Local against Ray, 1 and 2 decode workers, and decode seconds per window, as Markdown."""
    from vsearch.indexer.distributed import quiet_ray_data

    quiet_ray_data()
    import ray

    from vsearch.model.encoder import read_preprocessing

    work.mkdir(parents=True, exist_ok=True)
    model = make_decode_bound_checkpoint(work / "videomae-input-decode-bound")
    real = sample_videos()["720p"][0]
    files = variants_720p(real, work / "720p", (18, 28) if quick else (18, 23, 28, 33))
    sampling = Sampling(window_seconds=1.0)
    library = _library(files, 2 if quick else 3)
    spec = read_preprocessing(str(model), BASE_CONFIG).frame_spec
    cores = os.cpu_count() or 1
    lines = [f"machine: {_cpu_name()}, {cores} cores (shared with other work: timings are noisy)", ""]
    try:
        log("decode alone...")
        dec = min((decode_only(files, spec, sampling, "auto") for _ in range(2)), key=lambda r: r.seconds)
        per_window = dec.seconds / dec.windows
        log("the driver's writes alone...")
        written = writer_rate(videos=300 if quick else 1000)
        log("starting a local Ray...")
        started = time.perf_counter()
        # Logical CPUs, not cores: two decode tasks and the model actor must fit at once on 2 cores.
        ray.init(num_cpus=max(3, cores + 1), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        ray_start = time.perf_counter() - started
        _index(library, model, sampling, 1, on_ray=True)  # warm-up: workers, imports, the model's first call
        rows = []
        for workers in (1, 2):
            for on_ray in (False, True):
                log(f"{'Ray' if on_ray else 'local'}, {workers} decode worker(s)...")
                clips, seconds, store = _index(library, model, sampling, workers, on_ray)
                rows.append([("Ray Data" if on_ray else "local"), str(workers), str(clips), f"{seconds:.1f}",
                             f"{clips / seconds:.2f}", f"{store:.2f}"])
        ray.shutdown()
    finally:
        shutil.rmtree(library, ignore_errors=True)
    speed = {(r[0], r[1]): float(r[4]) for r in rows}
    overhead = [f"{w} worker(s): Ray {speed[('Ray Data', w)] / speed[('local', w)]:.2f}x the local windows/s"
                for w in ("1", "2")]
    lines += [
        f"### Decode alone: {dec.windows} windows of real 720p (bigbuckbunny at several qualities), 16 frames "
        "to 224 px each",
        f"{per_window:.3f} s per window on one core ({1 / per_window:.1f} windows/s per core)", "",
        f"### Index runs: {rows[0][2]} windows, a decode-bound model (VideoMAE-base input, one narrow layer), "
        "batch 8, 1 s windows",
        table(rows, ["where", "decode workers", "windows", "seconds", "windows/s", "storing s (driver)"]),
        f"Ray's overhead: {'; '.join(overhead)}. Starting the local Ray took {ray_start:.1f} s (not in the runs; "
        "a warm-up run came first).", "",
        f"The driver's writes alone (synthetic 768-d results, batches of 64, 10 windows per video): "
        f"{written:.0f} windows/s, the ceiling of any cluster with one driver.",
    ]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"
