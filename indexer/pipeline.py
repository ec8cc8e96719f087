"""The indexer: find files, decide what changed, decode ahead in workers, run the model in
batches, and store each batch in one transaction.

An index run has three parts, each usable on its own (a Ray driver plans and stores the same way):
  - `plan_changes` compares the files on disk with the catalog: unchanged, touched, moved, copied,
    removed, failed, and the files the model has to see; `ChangePlan.apply` writes what needs no model;
  - `Batch` collects decoded clips until the model has a batch;
  - `BatchStore` stores the model's answers, one transaction per batch, FAISS in step.
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

import numpy as np

from vsearch.core.words import counted
from vsearch.model.checkpoint import model_name
from vsearch.model.encoder import Encoder
from vsearch.model.scene import SceneEncoder
from vsearch.search.catalog import SCENES, TOP_K, Catalog, ClipResult
from vsearch.search.vectors import VectorIndex, open_vectors
from vsearch.video.decode import FrameSpec, Sampling, VideoInfo, Window, read_windows
from vsearch.video.files import DEFAULT_EXCLUDES, FoundFile, content_hash, find_videos
from vsearch.video.hwdecode import choose_decoder
from vsearch.video.thumbs import copy_thumbs, delete_thumbs, write_thumb
from vsearch.video.workers import (
    Ahead,
    Chunk,
    DecodePool,
    DecodeSettings,
    Event,
    Failed,
    Finished,
    ReadWindows,
    default_workers,
)


@dataclass(frozen=True)
class IndexSettings:
    batch_size: int | None = None  # None: the encoder's measured best (calibrate.tune), else 8
    sampling: Sampling = field(default_factory=Sampling)
    workers: int | None = None  # decode processes; default by device, see default_workers
    decode_threads: int = 0  # FFmpeg threads per decode worker; 0: one per core (4K HEVC needs them all)
    timeout: float = 120.0
    memory_limit: int = 8 << 30
    backend: str = "auto"
    retry_failed: bool = False
    save_every: float = 120.0  # seconds between FAISS checkpoints during a long run
    rebalance_every: float = 10.0  # seconds between checks whether the model waits for frames
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES  # folder and file names or paths (fnmatch) left out
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
    failed_before: int = 0  # files that failed in earlier runs and were not tried again
    interrupted: bool = False
    rescened: int = 0  # indexed videos given scene vectors without running the video model again
    changed: list[str] = field(default_factory=list)  # paths whose results are new: indexed, moved or copied
    notes: list[str] = field(default_factory=list)  # what a person should know about the run, last
    model: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def absorb(self, other: IndexReport) -> None:
        """Add another run's counts to these (a watch loop's runs, summed)."""
        for name in ("found", "unchanged", "indexed", "moved", "copied", "removed", "clips"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed += other.failed
        self.changed += other.changed
        self.rescened += other.rescened
        self.interrupted = self.interrupted or other.interrupted
        self.model = other.model or self.model

    def summary_lines(self) -> list[str]:
        """What a run did, in the words a front end shows after it (paths not escaped)."""
        t = self.timings
        parts = [f"{self.indexed} indexed ({counted(self.clips, 'clip')})", f"{self.unchanged} unchanged"]
        parts += [f"{n} {what}" for n, what in ((self.moved, "moved"), (self.copied, "copied"),
                                                 (self.removed, "removed")) if n]
        parts.append(f"{len(self.failed)} failed")
        if self.failed_before > 0:
            parts.append(f"{self.failed_before} failed before (--retry-failed to try again)")
        lines = [f"{counted(self.found, 'video')} found: " + ", ".join(parts) + f" in {t.get('wall', 0):.1f}s"]
        if "model" in t and self.clips:
            workers = counted(int(t.get("workers", 1)), "worker process", "worker processes")
            lines.append(f"time: decode {t['decode']:.1f}s (in {workers}), model {t['model']:.1f}s, "
                         f"store {t['store']:.1f}s")
        lines += [f"skipped {path}: {reason}" for path, reason in self.failed]
        if self.interrupted:
            lines.append("stopped early: everything above is saved; run the same command to finish")
        return lines + self.notes


# -- planning: what changed since the last run ---------------------------------------------


@dataclass(frozen=True)
class IndexJob:
    """A file the model has to see."""

    file: FoundFile
    content_hash: str


@dataclass(frozen=True)
class Move:
    """An indexed file that now lives at `file.path`: its row follows it, no model run."""

    video_id: int
    file: FoundFile
    replaces: bool  # the new path had an older row of its own, which gives way


@dataclass(frozen=True)
class Copy:
    """A copy of an indexed file: it reuses the source's results, no model run."""

    source_id: int
    file: FoundFile
    replaces: bool


@dataclass(frozen=True)
class PlannedFailure:
    file: FoundFile
    content_hash: str  # "" when the file could not be read
    reason: str


@dataclass
class VectorChanges:
    """Clip ids that left the catalog and (ids, vectors) that joined it, for FAISS."""

    removed: list[int] = field(default_factory=list)
    added: list[tuple[list[int], np.ndarray]] = field(default_factory=list)
    copied: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (source clip ids, copies' ids)


@dataclass
class ChangePlan:
    """What an index run has to do, from the files on disk and the catalog; nothing written yet."""

    found: int = 0
    unchanged: int = 0  # same size and mtime, or touched
    touched: list[tuple[int, FoundFile]] = field(default_factory=list)  # same content, new size/mtime
    # in the order decided: a copy may read a row that a later step replaces
    reused: list[Move | Copy] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)  # videos whose files are gone (or now excluded)
    failed: list[PlannedFailure] = field(default_factory=list)
    to_index: list[IndexJob] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return sum(isinstance(step, Move) for step in self.reused)

    @property
    def copied(self) -> int:
        return sum(isinstance(step, Copy) for step in self.reused)

    def apply(self, catalog: Catalog) -> VectorChanges:
        """Write everything that needs no model. Call inside `catalog.transaction()`, the one
        `plan_changes` read in, so that nothing changes between the plan and its writes."""
        changes = VectorChanges()
        for video_id, f in self.touched:
            catalog.touch_video(video_id, f.size, f.mtime)
        for step in self.reused:
            if step.replaces:
                changes.removed += catalog.forget(step.file.path)
            if isinstance(step, Move):
                catalog.move_video(step.video_id, step.file.path, step.file.size, step.file.mtime)
            else:
                source_ids = catalog.clip_vectors(step.source_id)[0]
                changes.added.append(catalog.copy_video(step.source_id, step.file.path, step.file.size,
                                                        step.file.mtime))
                changes.copied.append((source_ids, changes.added[-1][0]))
        if self.removed:
            changes.removed += catalog.remove_videos(self.removed)
        for failure in self.failed:
            f = failure.file
            if f.size or os.path.lexists(f.path):  # a path that vanished leaves no record
                changes.removed += catalog.fail_video(f.path, f.size, f.mtime, failure.content_hash, failure.reason)
        return changes


def plan_changes(
    catalog: Catalog,
    roots: Sequence[Path],
    retry_failed: bool = False,
    exclude: Sequence[str] = DEFAULT_EXCLUDES,
) -> ChangePlan:
    """Compare the videos below `roots` with the catalog; reads files and the catalog, writes nothing.

    Size and mtime first; only a file whose stat changed is hashed. A new hash that an indexed
    video has is a move (its old path is gone) or a copy; any other is a job for the model.
    Indexed files no longer found below the roots (deleted, or in a folder now excluded) are
    removed; files that cannot be read are failures.
    """
    skipped: list[tuple[str, str]] = []
    files = list(find_videos(list(roots), skipped, exclude))
    plan = ChangePlan(found=len(files))
    plan.failed = [PlannedFailure(FoundFile(p, 0, 0.0), "", r) for p, r in skipped]
    settled = ("ok",) if retry_failed else ("ok", "failed")
    # Later files must see the rows as earlier steps of this plan leave them.
    moved_to: dict[int, str] = {}  # video id -> the path it moves to
    replaced: set[int] = set()  # video ids whose rows give way to a move or copy
    for f in files:
        row = catalog.video(f.path)
        if row is not None and row.size == f.size and row.mtime == f.mtime and row.status in settled:
            plan.unchanged += 1
            continue
        try:
            digest = content_hash(f.path, f.size)
        except OSError as exc:
            plan.failed.append(PlannedFailure(f, "", f"cannot read ({exc.strerror or exc})"))
            continue
        if row is not None and row.content_hash == digest and row.status in settled:
            plan.touched.append((row.id, f))
            plan.unchanged += 1
            continue
        twins = [t for t in catalog.videos_with_content(digest)
                 if t.id not in replaced and moved_to.get(t.id, t.path) != f.path]
        moved_from = next((t for t in twins if not os.path.exists(moved_to.get(t.id, t.path))), None)
        replaces = False
        if twins and row is not None:  # this path's old version gives way to the moved or copied one
            replaces = True
            replaced.add(row.id)
        if moved_from is not None:
            plan.reused.append(Move(moved_from.id, f, replaces))
            moved_to[moved_from.id] = f.path
        elif twins:
            plan.reused.append(Copy(twins[0].id, f, replaces))
        else:
            plan.to_index.append(IndexJob(f, digest))
    seen = {f.path for f in files} | {p for p, _ in skipped}  # skipped files are not gone
    plan.removed = [vid for path, vid in catalog.paths_under(roots).items()
                    if path not in seen and vid not in moved_to and vid not in replaced]
    return plan


# -- batches: decoded clips -> the model -> one transaction --------------------------------


@dataclass(frozen=True)
class DecodedClip:
    key: int  # the job's index in the plan's to_index
    info: VideoInfo
    window: Window
    frames: np.ndarray  # (T, H, W, 3) uint8
    thumb: bytes | None = None  # JPEG of the window's middle frame, made by the decode worker
    scene: np.ndarray | None = None  # the scene model's frames of the window, when there is one


@dataclass(frozen=True)
class EncodedClip:
    """What the models said about one clip of job `key`; `info` is stored with the video's first clip."""

    key: int
    info: VideoInfo
    clip: ClipResult
    thumb: bytes | None = None
    scene: np.ndarray | None = None  # the scene model's vector of the window


@dataclass
class Batch:
    """Decoded clips waiting for the model, and the videos whose fate arrived with them."""

    clips: list[DecodedClip] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def add(self, event: Event) -> None:
        if isinstance(event, Chunk):
            thumbs = event.thumbs or [None] * len(event.windows)
            scenes = list(event.scenes) if event.scenes is not None else [None] * len(event.windows)
            self.clips += [DecodedClip(event.key, event.info, w, f, j, sc)
                           for w, f, j, sc in zip(event.windows, event.frames, thumbs, scenes)]
        elif isinstance(event, Finished):
            self.finished.append(event.key)
        elif isinstance(event, Failed):
            self.clips = [c for c in self.clips if c.key != event.key]
            self.failed.append((event.key, event.reason))

    def take(self, size: int) -> Batch:
        """The first `size` clips as a batch of their own. A video finishes with the batch that
        holds its last clip, so one whose clips go on into the rest stays here."""
        head, self.clips = self.clips[:size], self.clips[size:]
        rest = {c.key for c in self.clips}
        taken = Batch(head, [k for k in self.finished if k not in rest], self.failed)
        self.finished = [k for k in self.finished if k in rest]
        self.failed = []
        return taken


def clip_results(labels: Sequence[str], windows: Sequence[Window], probs: np.ndarray,
                 embeddings: np.ndarray) -> list[ClipResult]:
    """The model's output for a batch of windows as the catalog stores it: top-k labels and the embedding."""
    top = np.argsort(-probs, axis=1)[:, :TOP_K]
    return [ClipResult(w.index, w.start, w.end, [(labels[j], float(probs[row, j])) for j in top[row]],
                       embeddings[row]) for row, w in enumerate(windows)]


@dataclass
class _Storing:
    """A video whose clips are being stored; searchable once its last clip is."""

    video_id: int
    clip_ids: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    scene_ids: list[int] = field(default_factory=list)
    scenes: list[np.ndarray] = field(default_factory=list)


@dataclass
class Vectors:
    """The FAISS indexes an index run keeps in step with the catalog: the clip embeddings', and the
    scene vectors' where the index has a scene model. Both are keyed by clip id."""

    clips: VectorIndex
    scenes: VectorIndex | None = None

    def remove(self, ids: list[int]) -> None:
        self.clips.remove(ids)
        if self.scenes is not None:
            self.scenes.remove(ids)

    def save(self, catalog: Catalog) -> None:
        self.clips.save(catalog.home, catalog.generation)
        if self.scenes is not None:
            self.scenes.save(catalog.home, catalog.generation, SCENES)


class BatchStore:
    """Stores the models' results for a plan's jobs: one transaction per batch, FAISS kept in step.

    A video is marked 'ok' only in the transaction that stores its last clip, and its vectors go
    into FAISS only then; a video that fails part-way leaves only the record of its failure.
    """

    def __init__(self, catalog: Catalog, vectors: Vectors | VectorIndex, jobs: Sequence[IndexJob], report: IndexReport,
                 save_every: float = 120.0):
        self.catalog = catalog
        self.vectors = vectors if isinstance(vectors, Vectors) else Vectors(vectors)
        self.jobs = jobs
        self.report = report
        self.save_every = save_every
        self.settled = 0  # jobs indexed or failed so far
        self._storing: dict[int, _Storing] = {}
        self._saved_at = time.perf_counter()

    def store(self, clips: Sequence[EncodedClip], finished: Sequence[int] = (),
              failed: Sequence[tuple[int, str]] = ()) -> list[str]:
        """Store one batch: its clips, the videos it finishes and the ones that failed.
        Returns the paths it settled (indexed or failed), in that order."""
        cat = self.catalog
        failed = list(failed)
        done: list[int] = []
        gone: list[int] = []  # clips of earlier versions of re-indexed files, for FAISS
        thumbs: list[tuple[int, bytes]] = []  # (clip id, JPEG), written once the ids exist
        with cat.transaction():
            for c in clips:
                video = self._storing.get(c.key)
                if video is None:
                    f = self.jobs[c.key].file
                    gone += cat.forget(f.path)
                    meta = {"duration": c.info.duration, "fps": c.info.fps, "width": c.info.width,
                            "height": c.info.height}
                    video_id = cat.start_video(f.path, f.size, f.mtime, self.jobs[c.key].content_hash, meta)
                    video = self._storing[c.key] = _Storing(video_id)
                ids = cat.add_clips(video.video_id, [c.clip])
                if ids:  # a window delivered twice (a retried Ray task) is stored once
                    video.clip_ids += ids
                    video.vectors.append(c.clip.embedding)
                    if c.thumb is not None:
                        thumbs.append((ids[-1], c.thumb))
                    if c.scene is not None:
                        cat.add_scene_vectors(ids, c.scene[None])
                        video.scene_ids += ids
                        video.scenes.append(c.scene)
            for key in finished:
                if key not in self._storing:
                    failed.append((key, "no frames could be decoded"))
                    continue
                cat.finish_video(self._storing[key].video_id)
                done.append(key)
            for key, reason in failed:
                job = self.jobs[key]
                gone += cat.fail_video(job.file.path, job.file.size, job.file.mtime, job.content_hash, reason)
                self._storing.pop(key, None)
        for clip_id, jpeg in thumbs:
            write_thumb(cat.home, clip_id, jpeg)
        self.vectors.remove(gone)
        delete_thumbs(cat.home, gone)  # after writing: a file that failed part-way wrote some
        for key in done:
            video = self._storing.pop(key)
            self.vectors.clips.add(video.clip_ids, np.stack(video.vectors))
            if video.scenes and self.vectors.scenes is not None:
                self.vectors.scenes.add(video.scene_ids, np.stack(video.scenes))
            self.report.indexed += 1
            self.report.clips += len(video.clip_ids)
            self.report.changed.append(self.jobs[key].file.path)
        self.report.failed += [(self.jobs[key].file.path, reason) for key, reason in failed]
        self.settled += len(done) + len(failed)
        if time.perf_counter() - self._saved_at > self.save_every:
            self.vectors.save(cat)
            self._saved_at = time.perf_counter()
        return [self.jobs[key].file.path for key in done] + [self.jobs[key].file.path for key, _ in failed]


class _Starving:
    """Whether the model spent over a quarter of the last `every` seconds waiting for frames."""

    def __init__(self, every: float):
        self.every = every
        self.waited = 0.0
        self.since = time.perf_counter()

    def check(self, waited: float) -> bool:
        self.waited += waited
        elapsed = time.perf_counter() - self.since
        if elapsed <= self.every:
            return False
        starving = self.waited / elapsed > 0.25
        self.waited, self.since = 0.0, time.perf_counter()
        return starving


# -- the run ---------------------------------------------------------------------------------


def index_model(catalog: Catalog, requested: str | None) -> str | None:
    """The model an index run loads: the one asked for, else the index's own (None: the default).

    A model other than the index's is refused here, before any time goes into loading it; the
    catalog checks the loaded model's identity again when it is bound."""
    if requested is None:
        return catalog.model
    name = model_name(requested)
    catalog.check_model(name)
    return name


@dataclass(frozen=True)
class ScenePart:
    """The scene model an index run gives every window a vector of: its name as the index records
    it (to tell whether the index already has it), and how to load it (only when needed)."""

    name: str
    load: Callable[[], SceneEncoder]


class Indexer:
    """Index folders into a catalog. `load_encoder` is called only if some file needs the model,
    `scene.load` only if some window needs a scene vector (new files, or all of them for a new
    scene model: those are embedded again without running the video model)."""

    def __init__(
        self,
        catalog: Catalog,
        load_encoder: Callable[[], Encoder],
        settings: IndexSettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        read: ReadWindows = read_windows,
        scene: ScenePart | None = None,
    ):
        self.catalog = catalog
        self.scene_part = scene
        self.scene: SceneEncoder | None = None
        self.load_encoder = load_encoder
        self.settings = settings or IndexSettings()
        self.on_progress = on_progress or (lambda p: None)
        self.should_stop = should_stop or (lambda: False)
        self.encoder: Encoder | None = None
        self.read = read  # the decoder the workers run (tests pass one that hangs or crashes)

    def run(self, roots: Sequence[Path]) -> IndexReport:
        started = time.perf_counter()
        report = IndexReport()
        cat = self.catalog
        delete_thumbs(cat.home, cat.drop_incomplete())  # a killed run may have written some
        # Opened before anything changes: opened later, a stale check could rebuild it from rows
        # this run already changed, and the changes would then be applied twice.
        vectors = self._open_vectors()
        with cat.transaction():
            plan = plan_changes(cat, roots, self.settings.retry_failed, self.settings.exclude)
            changes = plan.apply(cat)
        for source_ids, copy_ids in changes.copied:  # before the removals: a source may be among them
            copy_thumbs(cat.home, source_ids, copy_ids)
        delete_thumbs(cat.home, changes.removed)
        if vectors is not None:  # a new index has no vectors to change
            vectors.remove(changes.removed)
            for ids, vecs in changes.added:
                vectors.clips.add(ids, vecs)
                if vectors.scenes is not None:
                    vectors.scenes.add(*cat.vectors_of(SCENES, ids))
        report.found, report.unchanged, report.removed = plan.found, plan.unchanged, len(plan.removed)
        report.moved, report.copied = plan.moved, plan.copied
        report.failed = [(f.file.path, f.reason) for f in plan.failed]
        report.changed = [step.file.path for step in plan.reused]

        if not self.should_stop():
            vectors = self._bind_scene(vectors, bool(plan.to_index))
        if plan.to_index and not self.should_stop():
            vectors = self._index(plan.to_index, vectors, report)
        if self.scene is not None and vectors is not None and not self.should_stop():
            self._rescene(vectors, report)
        if vectors is not None:
            vectors.save(cat)
        report.model = cat.model
        report.failed_before = max(0, cat.failed_count() - len(report.failed))
        report.timings["wall"] = time.perf_counter() - started
        return report

    def _open_vectors(self) -> Vectors | None:
        cat = self.catalog
        if not cat.dim:
            return None
        return Vectors(open_vectors(cat)[0], open_vectors(cat, space=SCENES)[0] if cat.dim_of(SCENES) else None)

    def _bind_scene(self, vectors: Vectors | None, new_clips: bool) -> Vectors | None:
        """Load the scene model if some window needs its vector, and tie the index to it: another one
        than the index had replaces it, and its vectors are made again for every window."""
        cat, part = self.catalog, self.scene_part
        if part is None:
            return vectors
        if cat.scene_model == part.name and not new_clips and not cat.videos_without_scenes():
            return vectors
        scene = self.scene = part.load()
        with cat.transaction():
            replaced = cat.bind_scene_model(scene.name, scene.model_id, scene.dim)
        if vectors is not None and (replaced or vectors.scenes is None):
            vectors.scenes = open_vectors(cat, space=SCENES)[0]
        return vectors

    def _index(self, jobs: Sequence[IndexJob], vectors: Vectors | None, report: IndexReport) -> Vectors:
        s = self.settings
        timings = report.timings
        t0 = time.perf_counter()
        encoder = self.encoder = self.load_encoder()
        batch_size = s.batch_size or encoder.batch_size or 8
        vectors = self.bind(encoder, batch_size, vectors)
        store = BatchStore(self.catalog, vectors, jobs, report, s.save_every)
        scene = self.scene
        timings["load_model"] = time.perf_counter() - t0
        for key in ("decode", "model", "store"):
            timings.setdefault(key, 0.0)
        # A hardware decoder where one agrees with software (calibrated once per machine); the note says why not.
        backend, note = choose_decoder(s.backend, jobs[0].file.path, encoder.frame_spec, self.catalog.home)
        if note:
            report.notes.append(note)
        decode = DecodeSettings(
            spec=encoder.frame_spec,
            sampling=s.sampling,
            workers=min(s.workers or default_workers(encoder.device), len(jobs)),
            threads=s.decode_threads,
            timeout=s.timeout,
            memory_limit=s.memory_limit,
            backend=backend,
            read=self.read,
            thumbs=s.thumbnails,
            scene=scene.frame_spec if scene is not None else None,
            chunk=max(1, min(4, batch_size)),
            prefetch=max(2, 2 * batch_size // max(1, min(4, batch_size))),
        )
        # The cores split themselves: when the model spends over a quarter of its time waiting for
        # frames (expensive files: 4K, long GOPs), another decode worker starts, up to one per core.
        max_workers = max(decode.workers, min(len(jobs), os.cpu_count() or 1))
        with DecodePool(decode) as pool:
            events = Ahead(pool.run((i, job.file.path) for i, job in enumerate(jobs)), 2 * batch_size)
            try:
                self._run_batches(events, pool, max_workers, batch_size, encoder, store, report)
            finally:
                events.close()
            timings["workers"] = pool.target
        if report.interrupted:
            # videos cut off mid-way are redone whole by the next run
            delete_thumbs(self.catalog.home, self.catalog.drop_incomplete())
        return vectors

    def _run_batches(self, events: Ahead, pool: DecodePool, max_workers: int, batch_size: int, encoder: Encoder,
                     store: BatchStore, report: IndexReport) -> None:
        """Decoded clips in, batches through the models, one transaction each, until the files end or
        the caller asks to stop."""
        timings = report.timings
        starving = _Starving(self.settings.rebalance_every)
        pending = Batch()
        while True:
            t = time.perf_counter()
            event = next(events, None)
            waited = time.perf_counter() - t
            timings["wait"] = timings.get("wait", 0.0) + waited  # the model's thread idle, waiting for frames
            timings.setdefault("first_frames", waited)  # the decoders starting: paid once per run
            if event is None:
                break
            if starving.check(waited) and pool.grow(max_workers):
                timings["workers_added"] = timings.get("workers_added", 0) + 1
            if isinstance(event, Chunk):
                timings["decode"] += event.decode_seconds
            pending.add(event)
            # Whole batches only: a long video's chunks may overfill the batch a little.
            while len(pending.clips) >= batch_size:
                self._store(pending.take(batch_size), encoder, store, report)
            if self.should_stop():
                report.interrupted = True
                break
        self._store(pending, encoder, store, report)

    def _rescene(self, vectors: Vectors, report: IndexReport) -> None:
        """Scene vectors for indexed windows that have none (indexed before this scene model was
        chosen): decoded again, by the same guarded workers and with the index's own windows, and
        run through the scene model only; the video model's results stay as they are."""
        cat, scene, s = self.catalog, self.scene, self.settings
        assert scene is not None  # called only with a scene model
        videos = cat.videos_without_scenes()
        if not videos or cat.model is None:
            return
        t0 = time.perf_counter()
        window, most = cat.sampling or (s.sampling.window_seconds, s.sampling.max_windows)
        decode = DecodeSettings(spec=self._video_spec(), sampling=Sampling(window, most), timeout=s.timeout,
                                memory_limit=s.memory_limit, backend=s.backend, read=self.read, scene=scene.frame_spec,
                                workers=min(s.workers or default_workers("cpu"), len(videos)))
        batch_size = s.batch_size or 8
        waiting: list[tuple[int, np.ndarray]] = []  # (clip id, scene frames)
        spans = {v.id: {round(start, 3): cid for cid, start, _ in cat.clip_spans(v.id)} for v in videos}
        with DecodePool(decode) as pool:
            for event in pool.run((i, v.path) for i, v in enumerate(videos)):
                if isinstance(event, Chunk) and event.scenes is not None:
                    by_start = spans[videos[event.key].id]
                    # a window of the index's own plan, matched by where it starts
                    waiting += [(by_start[round(w.start, 3)], f) for w, f in zip(event.windows, event.scenes)
                                if round(w.start, 3) in by_start]
                elif isinstance(event, Finished):
                    report.rescened += 1
                elif isinstance(event, Failed):
                    report.failed.append((videos[event.key].path, f"scene vectors: {event.reason}"))
                while len(waiting) >= batch_size or (waiting and isinstance(event, Finished)):
                    self._store_scenes(waiting[:batch_size], vectors)
                    del waiting[:batch_size]
                if self.should_stop():
                    report.interrupted = True
                    break
        self._store_scenes(waiting, vectors)
        report.timings["rescene"] = time.perf_counter() - t0

    def _store_scenes(self, clips: list[tuple[int, np.ndarray]], vectors: Vectors) -> None:
        if not clips or self.scene is None or vectors.scenes is None:
            return
        ids = [cid for cid, _ in clips]
        embedded = self.scene.embed_frames(np.stack([f for _, f in clips]))
        with self.catalog.transaction():
            self.catalog.add_scene_vectors(ids, embedded)
        vectors.scenes.remove(ids)
        vectors.scenes.add(ids, embedded)

    def _video_spec(self) -> FrameSpec:
        """The video model's frames, as the index was decoded: from the loaded model, else from its
        files (a scene-only run does not load it)."""
        if self.encoder is not None:
            return self.encoder.frame_spec
        from vsearch.model.checkpoint import read_model_json, read_preprocessing

        name = self.catalog.model
        assert name is not None  # a scene-only run follows an index run, which recorded the model
        return read_preprocessing(name, read_model_json(name, "config.json") or {}).frame_spec

    def bind(self, encoder: Encoder, batch_size: int, vectors: Vectors | None) -> Vectors:
        """Tie the index to the model (refusing another one), and record how this run makes its
        vectors: the windows, the runtime and precision, the batch. Returns the vector indexes (a
        new index learns its dimension here)."""
        s, cat = self.settings, self.catalog
        cat.bind_model(encoder.name, encoder.model_id, encoder.dim, encoder.labels)
        cat.record_sampling(s.sampling.window_seconds, s.sampling.max_windows)
        if encoder.choice is not None:
            cat.record_precision(encoder.choice.label)
        cat.set_run_meta("batch_size", str(batch_size))
        if vectors is None:
            vectors = Vectors(open_vectors(cat)[0])
        if self.scene is not None and vectors.scenes is None:
            vectors.scenes = open_vectors(cat, space=SCENES)[0]
        return vectors

    def _store(self, batch: Batch, encoder: Encoder, store: BatchStore, report: IndexReport) -> None:
        """Run the model on one batch and store the results."""
        encoded: list[EncodedClip] = []
        if batch.clips:
            t = time.perf_counter()
            probs, embs = encoder.encode(np.stack([c.frames for c in batch.clips]))
            report.timings["model"] += time.perf_counter() - t
            scenes: list[np.ndarray | None] = [None] * len(batch.clips)
            frames = [c.scene for c in batch.clips if c.scene is not None]
            if self.scene is not None and len(frames) == len(batch.clips):
                t = time.perf_counter()
                scenes = list(self.scene.embed_frames(np.stack(frames)))
                report.timings["scene"] = report.timings.get("scene", 0.0) + time.perf_counter() - t
            results = clip_results(encoder.labels, [c.window for c in batch.clips], probs, embs)
            encoded = [EncodedClip(c.key, c.info, r, c.thumb, sc) for c, r, sc in zip(batch.clips, results, scenes)]
        t = time.perf_counter()
        settled = store.store(encoded, batch.finished, batch.failed)
        report.timings["store"] += time.perf_counter() - t
        if settled:
            self.on_progress(Progress(store.settled, len(store.jobs), report.clips, settled[-1]))


def first_clips(roots: Sequence[Path], spec: FrameSpec, sampling: Sampling, count: int = 32,
                exclude: Sequence[str] = DEFAULT_EXCLUDES, timeout: float = 60.0) -> np.ndarray:
    """Up to `count` of the user's own clips, for the calibration to quantize and check on: from
    files spread evenly over the whole listing (the first files of a library are often one event),
    as many from each as it takes, decoded by the guarded workers (a hostile file costs only
    itself). Empty (0, ...) when none decode."""
    h, w = spec.crop or (224, 224)
    files = [f.path for f in find_videos(list(roots), exclude=exclude)]
    picked = sorted({round(i) for i in np.linspace(0, len(files) - 1, min(count, len(files)))}) if files else []
    per_file = -(-count // max(1, len(picked)))
    clips: list[np.ndarray] = []
    taken: dict[int, int] = {}
    with DecodePool(DecodeSettings(spec=spec, sampling=sampling, timeout=timeout)) as pool:
        for event in pool.run((i, files[i]) for i in picked):
            if isinstance(event, Chunk) and event.frames.shape[2:4] == (h, w):
                room = max(0, min(per_file - taken.get(event.key, 0), count - len(clips)))
                clips += list(event.frames[:room])
                taken[event.key] = taken.get(event.key, 0) + room
            if len(clips) >= count:
                break
    return np.stack(clips) if clips else np.zeros((0, spec.num_frames, h, w, 3), np.uint8)


@dataclass
class FileVectors:
    """One file's windows and what the models made of each: label probabilities, clip embeddings,
    and scene vectors when a scene model was given."""

    windows: list[Window]
    probs: np.ndarray
    embeddings: np.ndarray
    scenes: np.ndarray | None = None


def embed_windows(encoder: Encoder, path: str, sampling: Sampling | None = None, timeout: float = 120.0,
                  scene: SceneEncoder | None = None) -> FileVectors:
    """Decode one file (in a worker, like indexing) and run the models on all its windows.

    Raises DecodeError with the reason for a bad file."""
    from vsearch.core.errors import DecodeError

    settings = DecodeSettings(spec=encoder.frame_spec, sampling=sampling or Sampling(), timeout=timeout,
                              scene=scene.frame_spec if scene is not None else None)
    windows: list[Window] = []
    probs, embs, scenes = [], [], []
    with DecodePool(settings) as pool:
        for event in pool.run([(0, path)]):
            if isinstance(event, Failed):
                raise DecodeError(f"{path}: {event.reason}")
            if isinstance(event, Chunk):
                p, e = encoder.encode(event.frames)
                windows += event.windows
                probs.append(p)
                embs.append(e)
                if scene is not None and event.scenes is not None:
                    scenes.append(scene.embed_frames(event.scenes))
    return FileVectors(windows, np.concatenate(probs), np.concatenate(embs),
                       np.concatenate(scenes) if scenes else None)


def embed_file(
    encoder: Encoder, path: str, sampling: Sampling | None = None, timeout: float = 120.0
) -> tuple[list[Window], np.ndarray, np.ndarray]:
    """(windows, probabilities, embeddings) of one file: embed_windows without a scene model."""
    found = embed_windows(encoder, path, sampling, timeout)
    return found.windows, found.probs, found.embeddings
