"""The indexer: find files, decide what changed, decode ahead in workers, run the model in
batches, and store each batch in one transaction.

The model runs in this process while the decode workers fill the next batches, so decoding and
inference overlap. A kill loses at most the batch in flight: a video is marked 'ok' only in the
transaction that stores its last clip, and half-stored videos are redone by the next run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from vsearch.indexer.decode import FrameSpec, Sampling, VideoInfo, Window
from vsearch.indexer.files import FoundFile, find_videos, fingerprint
from vsearch.indexer.thumbs import copy_thumbs, delete_thumbs, write_thumb
from vsearch.indexer.workers import Chunk, DecodePool, DecodeSettings, Failed, Finished, default_workers
from vsearch.search.catalog import TOP_K, Catalog, ClipResult
from vsearch.search.vectors import VectorIndex, open_vectors


class Encoder(Protocol):
    """What the indexer needs of a model (VideoEncoder, or a fake in tests)."""

    name: str
    labels: list[str]
    dim: int

    @property
    def frame_spec(self) -> FrameSpec: ...

    @property
    def fingerprint(self) -> str: ...

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class IndexSettings:
    batch_size: int = 8
    sampling: Sampling = field(default_factory=Sampling)
    workers: int | None = None  # decode processes; default by device, see default_workers
    decode_threads: int = 1
    timeout: float = 120.0
    memory_limit: int = 8 << 30
    backend: str = "auto"
    retry_failed: bool = False
    save_every: float = 120.0  # seconds between FAISS checkpoints during a long run
    reader: str = "vsearch.indexer.decode:read_windows"  # see DecodeSettings.reader
    rebalance_every: float = 10.0  # seconds between checks whether the model waits for frames
    thumbnails: bool = True  # a JPEG per clip from its middle frame, made by the decode workers


@dataclass
class Progress:
    files_done: int
    files_total: int
    clips: int
    path: str


@dataclass
class IndexReport:
    found: int = 0
    unchanged: int = 0
    indexed: int = 0
    moved: int = 0
    copied: int = 0
    removed: int = 0
    clips: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    model: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Job:
    file: FoundFile
    fingerprint: str
    video_id: int | None = None
    info: VideoInfo | None = None
    clip_ids: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)


class Indexer:
    """Index folders into a catalog. `load_encoder` is called only if some file needs the model."""

    def __init__(
        self,
        catalog: Catalog,
        load_encoder: Callable[[], Encoder],
        settings: IndexSettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.catalog = catalog
        self.load_encoder = load_encoder
        self.settings = settings or IndexSettings()
        self.on_progress = on_progress or (lambda p: None)
        self.should_stop = should_stop or (lambda: False)
        self.encoder: Encoder | None = None

    def run(self, roots: Sequence[Path]) -> IndexReport:
        started = time.perf_counter()
        report = IndexReport()
        cat = self.catalog
        delete_thumbs(cat.home, cat.drop_incomplete())  # a killed run may have written some
        skipped: list[tuple[str, str]] = []
        files = list(find_videos(list(roots), skipped))
        report.found = len(files)
        # Opened before anything changes: opened later, a stale check could rebuild it from rows
        # this run already changed, and the changes would then be applied twice.
        vectors: VectorIndex | None = open_vectors(cat)[0] if cat.dim else None

        def vector_index() -> VectorIndex:
            nonlocal vectors
            if vectors is None:  # a new index: its dimension is known once the model is bound
                vectors = open_vectors(cat)[0]
            return vectors

        def drop(clip_ids: list[int]) -> None:
            """Clips that left the catalog leave FAISS and take their thumbnails along."""
            vector_index().remove(clip_ids)
            delete_thumbs(cat.home, clip_ids)

        jobs: list[_Job] = []
        failures: list[tuple[FoundFile, str, str]] = [(FoundFile(p, 0, 0.0), "", r) for p, r in skipped]
        with cat.transaction():
            for f in files:
                row = cat.video(f.path)
                same_stat = row is not None and row.size == f.size and row.mtime == f.mtime
                if same_stat and (row.status == "ok" or (row.status == "failed" and not self.settings.retry_failed)):
                    report.unchanged += 1
                    continue
                try:
                    fp = fingerprint(f.path, f.size)
                except OSError as exc:
                    failures.append((f, "", f"cannot read ({exc.strerror or exc})"))
                    continue
                if row is not None and row.fingerprint == fp and (
                    row.status == "ok" or (row.status == "failed" and not self.settings.retry_failed)
                ):
                    cat.touch_video(row.id, f.size, f.mtime)  # touched, not changed
                    report.unchanged += 1
                    continue
                twins = [t for t in cat.videos_with_fingerprint(fp) if t.path != f.path]
                moved_from = next((t for t in twins if not os.path.exists(t.path)), None)
                if twins and row is not None:  # this path's old version gives way to the moved or copied one
                    drop(cat.forget(f.path))
                if moved_from is not None:
                    cat.move_video(moved_from.id, f.path, f.size, f.mtime)
                    report.moved += 1
                elif twins:
                    ids, vecs = cat.copy_video(twins[0].id, f.path, f.size, f.mtime)
                    copy_thumbs(cat.home, cat.clip_vectors(twins[0].id)[0], ids)
                    vector_index().add(ids, vecs)
                    report.copied += 1
                else:
                    jobs.append(_Job(f, fp))
            seen = {f.path for f in files} | {p for p, _ in skipped}  # skipped files are not gone
            gone = [vid for path, vid in cat.paths_under(roots).items() if path not in seen]
            if gone:
                drop(cat.remove_videos(gone))
                report.removed = len(gone)
            for f, fp, reason in failures:
                if f.size or os.path.lexists(f.path):
                    gone = cat.fail_video(f.path, f.size, f.mtime, fp, reason)
                    if gone:
                        drop(gone)
                report.failed.append((f.path, reason))

        if jobs and not self.should_stop():
            self._index(jobs, vector_index, report)
        if vectors is not None:
            vectors.save(cat.home, cat.generation)
        report.model = cat.model
        report.timings["wall"] = time.perf_counter() - started
        return report

    def _index(self, jobs: list[_Job], vector_index: Callable[[], VectorIndex], report: IndexReport) -> None:
        s = self.settings
        cat = self.catalog
        t0 = time.perf_counter()
        encoder = self.encoder = self.load_encoder()
        cat.bind_model(encoder.name, encoder.fingerprint, encoder.dim, encoder.labels)
        vectors = vector_index()  # after bind_model: a new index learns its dimension there
        timings = report.timings
        timings["load_model"] = time.perf_counter() - t0
        for key in ("decode", "model", "store"):
            timings.setdefault(key, 0.0)
        decode = DecodeSettings(
            spec=encoder.frame_spec,
            sampling=s.sampling,
            workers=min(s.workers or default_workers(getattr(encoder, "device", "cpu")), len(jobs)),
            threads=s.decode_threads,
            timeout=s.timeout,
            memory_limit=s.memory_limit,
            backend=s.backend,
            reader=s.reader,
            thumbs=s.thumbnails,
            chunk=max(1, min(4, s.batch_size)),
            prefetch=max(2, 2 * s.batch_size // max(1, min(4, s.batch_size))),
        )
        labels = np.array(encoder.labels, dtype=object)
        buffer: list[tuple[int, Window, np.ndarray, bytes | None]] = []
        finished: list[int] = []
        failed: list[tuple[int, str]] = []
        done = 0
        last_save = time.perf_counter()

        def flush() -> None:
            nonlocal done, last_save
            results: list[tuple[int, ClipResult]] = []
            if buffer:
                t = time.perf_counter()
                probs, embs = encoder.encode(np.stack([frames for _, _, frames, _ in buffer]))
                timings["model"] += time.perf_counter() - t
                top = np.argsort(-probs, axis=1)[:, :TOP_K]
                for row, (key, w, _, _) in enumerate(buffer):
                    picked = [(str(labels[j]), float(probs[row, j])) for j in top[row]]
                    results.append((key, ClipResult(w.index, w.start, w.end, picked, embs[row])))
            t = time.perf_counter()
            newly_done: list[_Job] = []
            thumbs: list[tuple[int, bytes]] = []  # (clip id, JPEG), written once the ids exist
            gone: list[int] = []  # clips of earlier versions of re-indexed files, for FAISS
            with cat.transaction():
                for (key, clip), (_, _, _, jpeg) in zip(results, buffer):
                    job = jobs[key]
                    if job.video_id is None:
                        gone += cat.forget(job.file.path)
                        info = job.info
                        meta = {"duration": info.duration, "fps": info.fps, "width": info.width,
                                "height": info.height} if info else {}
                        job.video_id = cat.start_video(job.file.path, job.file.size, job.file.mtime,
                                                       job.fingerprint, meta)
                    job.clip_ids += cat.add_clips(job.video_id, [clip])
                    job.vectors.append(clip.embedding)
                    if jpeg is not None:
                        thumbs.append((job.clip_ids[-1], jpeg))
                for key in finished:
                    job = jobs[key]
                    if job.video_id is None:
                        failed.append((key, "no frames could be decoded"))
                        continue
                    cat.finish_video(job.video_id)
                    newly_done.append(job)
                for key, reason in failed:
                    job = jobs[key]
                    gone += cat.fail_video(job.file.path, job.file.size, job.file.mtime, job.fingerprint, reason)
                    job.video_id, job.clip_ids, job.vectors = None, [], []
            for clip_id, jpeg in thumbs:
                write_thumb(cat.home, clip_id, jpeg)
            vectors.remove(gone)
            delete_thumbs(cat.home, gone)  # after writing: a file that failed mid-way wrote some
            for job in newly_done:
                vectors.add(job.clip_ids, np.stack(job.vectors))
                report.indexed += 1
                report.clips += len(job.clip_ids)
                job.vectors = []
            for key, reason in failed:
                report.failed.append((jobs[key].file.path, reason))
            timings["store"] += time.perf_counter() - t
            touched = [job.file.path for job in newly_done] + [jobs[k].file.path for k, _ in failed]
            done += len(touched)
            if touched:
                self.on_progress(Progress(done, len(jobs), report.clips, touched[-1]))
            buffer.clear()
            finished.clear()
            failed.clear()
            if time.perf_counter() - last_save > s.save_every:
                vectors.save(cat.home, cat.generation)
                last_save = time.perf_counter()

        # The cores split themselves: when the model spends over a quarter of its time waiting for
        # frames (expensive files: 4K, long GOPs), another decode worker starts, up to one per core.
        max_workers = max(decode.workers, min(len(jobs), os.cpu_count() or 1))
        waited, window_start = 0.0, time.perf_counter()
        with DecodePool(decode) as pool:
            events = pool.run((i, job.file.path) for i, job in enumerate(jobs))
            while True:
                t = time.perf_counter()
                event = next(events, None)
                if event is None:
                    break
                waited += time.perf_counter() - t
                if time.perf_counter() - window_start > s.rebalance_every:
                    if waited / (time.perf_counter() - window_start) > 0.25 and pool.grow(max_workers):
                        timings["workers_added"] = timings.get("workers_added", 0) + 1
                    waited, window_start = 0.0, time.perf_counter()
                if isinstance(event, Chunk):
                    jobs[event.key].info = event.info
                    timings["decode"] += event.decode_seconds
                    jpegs = event.thumbs or [None] * len(event.windows)
                    buffer.extend(zip([event.key] * len(jpegs), event.windows, event.frames, jpegs))
                elif isinstance(event, Finished):
                    finished.append(event.key)
                elif isinstance(event, Failed):
                    buffer[:] = [b for b in buffer if b[0] != event.key]
                    failed.append((event.key, event.reason))
                if len(buffer) >= s.batch_size:
                    # Whole batches only: a long video's chunks may overfill the buffer a little.
                    rest = buffer[s.batch_size :]
                    del buffer[s.batch_size :]
                    keep_finished = [k for k in finished if any(b[0] == k for b in rest)]
                    finished[:] = [k for k in finished if k not in keep_finished]
                    flush()
                    buffer.extend(rest)
                    finished.extend(keep_finished)
                if self.should_stop():
                    report.interrupted = True
                    break
            flush()
            timings["workers"] = pool.target
        if report.interrupted:
            delete_thumbs(cat.home, cat.drop_incomplete())  # cut off mid-way: redone whole by the next run


def embed_file(
    encoder: Encoder, path: str, sampling: Sampling | None = None, timeout: float = 120.0
) -> tuple[list[Window], np.ndarray, np.ndarray]:
    """Decode one file (in a worker, like indexing) and run the model on all its windows.

    Returns (windows, probabilities, embeddings); raises DecodeError with the reason for a bad file.
    """
    from vsearch.indexer.decode import DecodeError

    settings = DecodeSettings(spec=encoder.frame_spec, sampling=sampling or Sampling(), timeout=timeout)
    windows: list[Window] = []
    probs, embs = [], []
    with DecodePool(settings) as pool:
        for event in pool.run([(0, path)]):
            if isinstance(event, Failed):
                raise DecodeError(event.reason)
            if isinstance(event, Chunk):
                p, e = encoder.encode(event.frames)
                windows += event.windows
                probs.append(p)
                embs.append(e)
    return windows, np.concatenate(probs), np.concatenate(embs)
