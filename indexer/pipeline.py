"""The indexer: find files, decide what changed, decode ahead in workers, run the model in
batches, and store each batch in one transaction.

An index run has three parts, each usable on its own (a Ray driver plans and stores the same way):
  - `plan_changes` compares the files on disk with the catalog: unchanged, touched, moved, copied,
    removed, failed, and the files the model has to see; `ChangePlan.apply` writes what needs no model;
  - `Batch` collects decoded windows until the model has a batch;
  - `BatchStore` stores the model's answers, one transaction per batch, FAISS in step.
The model runs in this process while the decode workers fill the next batches, so decoding and
inference overlap. A kill loses at most the batch in flight: a video is marked 'ok' only in the
transaction that stores its last window, and half-stored videos are redone by the next run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vsearch.core.errors import WorkerError
from vsearch.core.words import counted
from vsearch.evidence.base import FilePart, Part, WindowModel, WindowPart
from vsearch.model.checkpoint import model_name
from vsearch.model.encoder import Encoder
from vsearch.search.catalog import ACTIONS, TOP_K, Catalog, VectorSpace, WindowResult
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
    Done,
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
    thumbnails: bool = True  # a JPEG per window from its middle frame, made by the decode workers


@dataclass
class Progress:
    files_done: int
    files_total: int
    windows: int
    path: str


@dataclass
class IndexReport:
    found: int = 0
    unchanged: int = 0
    indexed: int = 0
    moved: int = 0
    copied: int = 0
    removed: int = 0
    windows: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_before: int = 0  # files that failed in earlier runs and were not tried again
    interrupted: bool = False
    # kind of evidence -> indexed videos given it without running the video model again (a kind, or
    # a model of it, chosen after they were indexed)
    filled: dict[str, int] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # paths whose results are new: indexed, moved or copied
    notes: list[str] = field(default_factory=list)  # what a person should know about the run, last
    model: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def clips(self) -> int:
        """Deprecated: the name `windows` had before."""
        import warnings

        warnings.warn("IndexReport.clips is now IndexReport.windows", DeprecationWarning, stacklevel=2)
        return self.windows

    def absorb(self, other: IndexReport) -> None:
        """Add another run's counts to these (a watch loop's runs, summed)."""
        for name in ("found", "unchanged", "indexed", "moved", "copied", "removed", "windows"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed += other.failed
        self.changed += other.changed
        for kind, n in other.filled.items():
            self.filled[kind] = self.filled.get(kind, 0) + n
        self.interrupted = self.interrupted or other.interrupted
        self.model = other.model or self.model

    def summary_lines(self) -> list[str]:
        """What a run did, in the words a front end shows after it (paths not escaped)."""
        t = self.timings
        parts = [f"{self.indexed} indexed ({counted(self.windows, 'window')})", f"{self.unchanged} unchanged"]
        parts += [f"{n} {what}" for n, what in ((self.moved, "moved"), (self.copied, "copied"),
                                                 (self.removed, "removed")) if n]
        parts.append(f"{len(self.failed)} failed")
        if self.failed_before > 0:
            parts.append(f"{self.failed_before} failed before (--retry-failed to try again)")
        lines = [f"{counted(self.found, 'video')} found: " + ", ".join(parts) + f" in {t.get('wall', 0):.1f}s"]
        if "model" in t and self.windows:
            workers = counted(int(t.get("workers", 1)), "worker process", "worker processes")
            lines.append(f"time: decode {t['decode']:.1f}s (in {workers}), model {t['model']:.1f}s, "
                         f"store {t['store']:.1f}s")
        lines += [f"filled in {kind} for {counted(n, 'indexed video')}" for kind, n in self.filled.items() if n]
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
    """Window ids that left the catalog and (ids, vectors) that joined it, for FAISS."""

    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)  # window ids, whose vectors are read back for each space
    copied: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (source window ids, copies' ids)


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
                source_ids = [cid for cid, _, _ in catalog.window_spans(step.source_id)]
                copies = catalog.copy_video(step.source_id, step.file.path, step.file.size, step.file.mtime)
                changes.added += copies
                changes.copied.append((source_ids, copies))
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


# -- batches: decoded windows -> the model -> one transaction --------------------------------


@dataclass(frozen=True)
class DecodedWindow:
    key: int  # the job's index in the plan's to_index
    info: VideoInfo
    window: Window
    frames: np.ndarray  # (T, H, W, 3) uint8
    thumb: bytes | None = None  # JPEG of the window's middle frame, made by the decode worker
    sides: dict[str, np.ndarray] = field(default_factory=dict)  # by kind of evidence: its frames of the window


@dataclass(frozen=True)
class EncodedWindow:
    """What the models said about one window of job `key`; `info` is stored with the video's first window."""

    key: int
    info: VideoInfo
    window: WindowResult
    thumb: bytes | None = None
    values: dict[str, np.ndarray] = field(default_factory=dict)  # by window kind: its vector of the window


@dataclass
class Batch:
    """Decoded windows waiting for the model, and the videos whose fate arrived with them."""

    windows: list[DecodedWindow] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def add(self, event: Event) -> None:
        if isinstance(event, Chunk):
            thumbs = event.thumbs or [None] * len(event.windows)
            self.windows += [DecodedWindow(event.key, event.info, w, f, j, {name: frames[i] for name, frames in
                                                                       event.sides.items()})
                           for i, (w, f, j) in enumerate(zip(event.windows, event.frames, thumbs))]
        elif isinstance(event, Finished):
            self.finished.append(event.key)
        elif isinstance(event, Failed):
            self.windows = [c for c in self.windows if c.key != event.key]
            self.failed.append((event.key, event.reason))

    def take(self, size: int) -> Batch:
        """The first `size` windows as a batch of their own. A video finishes with the batch that
        holds its last window, so one whose windows go on into the rest stays here."""
        head, self.windows = self.windows[:size], self.windows[size:]
        rest = {c.key for c in self.windows}
        taken = Batch(head, [k for k in self.finished if k not in rest], self.failed)
        self.finished = [k for k in self.finished if k in rest]
        self.failed = []
        return taken


def window_results(labels: Sequence[str], windows: Sequence[Window], probs: np.ndarray,
                 embeddings: np.ndarray) -> list[WindowResult]:
    """The model's output for a batch of windows as the catalog stores it: top-k labels and the embedding."""
    top = np.argsort(-probs, axis=1)[:, :TOP_K]
    return [WindowResult(w.index, w.start, w.end, [(labels[j], float(probs[row, j])) for j in top[row]],
                       embeddings[row]) for row, w in enumerate(windows)]


@dataclass
class _Storing:
    """A video whose windows are being stored; searchable once its last window is."""

    video_id: int
    window_ids: list[int] = field(default_factory=list)
    vectors: dict[str, list[tuple[int, np.ndarray]]] = field(default_factory=dict)  # by space: (id, vector)


@dataclass
class Vectors:
    """The FAISS indexes an index run keeps in step with the catalog, one per vector space: the window
    embeddings', and each window kind's that keeps vectors. All are keyed by window id."""

    spaces: dict[str, tuple[VectorSpace, VectorIndex]] = field(default_factory=dict)

    def open(self, catalog: Catalog, space: VectorSpace) -> None:
        self.spaces[space.name] = (space, open_vectors(catalog, space=space)[0])

    def remove(self, ids: list[int]) -> None:
        for _, index in self.spaces.values():
            index.remove(ids)

    def add(self, name: str, ids: list[int], vectors: np.ndarray) -> None:
        if name in self.spaces and ids:
            self.spaces[name][1].add(ids, vectors)

    def replace(self, name: str, ids: list[int], vectors: np.ndarray) -> None:
        """These windows' vectors in one space, instead of what it held for them."""
        if name in self.spaces:
            self.spaces[name][1].remove(ids)
            self.spaces[name][1].add(ids, vectors)

    def add_stored(self, catalog: Catalog, window_ids: list[int]) -> None:
        """Add these windows' vectors as the catalog holds them, in every space (copies of indexed files)."""
        for space, index in self.spaces.values():
            ids, vectors = catalog.vectors_of(space, window_ids)
            if ids:
                index.add(ids, vectors)

    def save(self, catalog: Catalog) -> None:
        for space, index in self.spaces.values():
            index.save(catalog.home, catalog.generation, space)


class BatchStore:
    """Stores the models' results for a plan's jobs: one transaction per batch, FAISS kept in step.

    A video is marked 'ok' only in the transaction that stores its last window, and its vectors go
    into FAISS only then; a video that fails part-way leaves only the record of its failure. Each
    window kind's values are stored with the windows, and its run on the video recorded when it ends.
    """

    def __init__(self, catalog: Catalog, vectors: Vectors, jobs: Sequence[IndexJob], report: IndexReport,
                 save_every: float = 120.0, parts: Sequence[WindowPart] = ()):
        self.catalog = catalog
        self.vectors = vectors
        self.jobs = jobs
        self.report = report
        self.save_every = save_every
        self.parts = {p.kind.name: p for p in parts}
        self.settled = 0  # jobs indexed or failed so far
        self._storing: dict[int, _Storing] = {}
        self._saved_at = time.perf_counter()

    def store(self, windows: Sequence[EncodedWindow], finished: Sequence[int] = (),
              failed: Sequence[tuple[int, str]] = ()) -> list[str]:
        """Store one batch: its windows, the videos it finishes and the ones that failed.
        Returns the paths it settled (indexed or failed), in that order."""
        cat = self.catalog
        failed = list(failed)
        done: list[int] = []
        gone: list[int] = []  # windows of earlier versions of re-indexed files, for FAISS
        thumbs: list[tuple[int, bytes]] = []  # (window id, JPEG), written once the ids exist
        with cat.transaction():
            for c in windows:
                video = self._storing.get(c.key)
                if video is None:
                    f = self.jobs[c.key].file
                    gone += cat.forget(f.path)
                    meta = {"duration": c.info.duration, "fps": c.info.fps, "width": c.info.width,
                            "height": c.info.height}
                    video_id = cat.start_video(f.path, f.size, f.mtime, self.jobs[c.key].content_hash, meta)
                    video = self._storing[c.key] = _Storing(video_id)
                ids = cat.add_windows(video.video_id, [c.window])
                if not ids:  # a window delivered twice (a retried Ray task) is stored once
                    continue
                video.window_ids += ids
                video.vectors.setdefault(ACTIONS.name, []).append((ids[0], c.window.embedding))
                if c.thumb is not None:
                    thumbs.append((ids[-1], c.thumb))
                for name, value in c.values.items():
                    kind = self.parts[name].kind
                    kind.store(cat, ids, value[None])
                    if kind.window_space is not None:
                        video.vectors.setdefault(kind.window_space.name, []).append((ids[0], value))
            for key in finished:
                if key not in self._storing:
                    failed.append((key, "no frames could be decoded"))
                    continue
                video = self._storing[key]
                cat.finish_video(video.video_id)
                cat.record_run(video.video_id, "labels", cat.model or "", len(video.window_ids))
                for part in self.parts.values():
                    cat.record_run(video.video_id, part.kind.name, part.model, len(video.window_ids))
                done.append(key)
            for key, reason in failed:
                job = self.jobs[key]
                gone += cat.fail_video(job.file.path, job.file.size, job.file.mtime, job.content_hash, reason)
                self._storing.pop(key, None)
        for window_id, jpeg in thumbs:
            write_thumb(cat.home, window_id, jpeg)
        self.vectors.remove(gone)
        delete_thumbs(cat.home, gone)  # after writing: a file that failed part-way wrote some
        for key in done:
            video = self._storing.pop(key)
            for name, rows in video.vectors.items():
                self.vectors.add(name, [i for i, _ in rows], np.stack([v for _, v in rows]))
            self.report.indexed += 1
            self.report.windows += len(video.window_ids)
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


class Indexer:
    """Index folders into a catalog. `load_encoder` is called only if some file needs the video model,
    and each part's model only if some video needs its kind of evidence: new files, and videos indexed
    before the kind (or this model of it) was chosen, which get it without running the video model
    again."""

    def __init__(
        self,
        catalog: Catalog,
        load_encoder: Callable[[], Encoder],
        settings: IndexSettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        read: ReadWindows = read_windows,
        parts: Sequence[Part] = (),
    ):
        self.catalog = catalog
        self.window_parts = [p for p in parts if isinstance(p, WindowPart)]
        self.file_parts = [p for p in parts if isinstance(p, FilePart)]
        self.models: dict[str, WindowModel] = {}  # window kind -> its model, once some window needed it
        self.load_encoder = load_encoder
        self.settings = settings or IndexSettings()
        self.on_progress = on_progress or (lambda p: None)
        self.should_stop = should_stop or (lambda: False)
        self.encoder: Encoder | None = None
        self.read = read  # the decoder the workers run (tests pass one that hangs or crashes)

    def run(self, roots: Sequence[Path]) -> IndexReport:
        started, started_at = time.perf_counter(), time.time()
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
        vectors.remove(changes.removed)
        vectors.add_stored(cat, changes.added)
        report.found, report.unchanged, report.removed = plan.found, plan.unchanged, len(plan.removed)
        report.moved, report.copied = plan.moved, plan.copied
        report.failed = [(f.file.path, f.reason) for f in plan.failed]
        report.changed = [step.file.path for step in plan.reused]

        if not self.should_stop():
            self._bind_parts(vectors, bool(plan.to_index))
        if plan.to_index and not self.should_stop():
            self._index(plan.to_index, vectors, report)
        if cat.model is not None and not self.should_stop():
            self._fill_windows(vectors, report)
        if cat.model is not None and not self.should_stop():
            self._fill_files(report)
        for kind in [p.kind for p in self.window_parts] + [p.kind for p in self.file_parts]:
            ran = cat.runs_since(kind.name, started_at)  # what a kind does with a run's new evidence
            if ran and not self.should_stop():
                t = time.perf_counter()
                kind.settle(cat, ran)
                report.timings[f"settle {kind.name}"] = time.perf_counter() - t
        vectors.save(cat)
        report.model = cat.model
        report.failed_before = max(0, cat.failed_count() - len(report.failed))
        report.timings["wall"] = time.perf_counter() - started
        return report

    def _open_vectors(self) -> Vectors:
        """The FAISS indexes of the spaces this index has vectors in (none for a new index)."""
        cat, vectors = self.catalog, Vectors()
        for space in self._window_spaces(self.window_parts):
            if cat.dim and cat.dim_of(space):
                vectors.open(cat, space)
        return vectors

    @staticmethod
    def _window_spaces(parts: Sequence[WindowPart]) -> list[VectorSpace]:
        """The vector spaces an index run keeps in step as it stores windows: the window vectors, and each
        window kind's of one vector per window (a kind with vectors of its own grain, fingerprints of
        seconds, has its index made from SQLite when it is needed)."""
        return [ACTIONS, *(space for p in parts if (space := p.kind.window_space) is not None)]

    def _bind_parts(self, vectors: Vectors, new_windows: bool) -> None:
        """Load each window kind's model if some window needs it, and tie the index to it: another one
        than the index had replaces it, and its evidence is made again for every window."""
        cat = self.catalog
        for part in self.window_parts:
            kind = part.kind
            if not new_windows and kind.model_of(cat) == part.model and not cat.videos_missing(kind.name, part.model):
                continue
            model = self.models[kind.name] = part.load()
            cat.ensure_part(kind.name, kind.tables)
            with cat.transaction():
                replaced = kind.bind(cat, part.model, model.model_id, model.dim)
            space = kind.window_space
            if space is not None and cat.dim and (replaced or space.name not in vectors.spaces):
                vectors.open(cat, space)

    def _index(self, jobs: Sequence[IndexJob], vectors: Vectors, report: IndexReport) -> None:
        s = self.settings
        timings = report.timings
        t0 = time.perf_counter()
        encoder = self.encoder = self.load_encoder()
        batch_size = s.batch_size or encoder.batch_size or 8
        self.bind(encoder, batch_size, vectors)
        store = BatchStore(self.catalog, vectors, jobs, report, s.save_every, self.window_parts)
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
            sides=tuple((name, model.frame_spec) for name, model in self.models.items()),
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
            except WorkerError:
                vectors.save(self.catalog)  # what was stored before the workers failed stays searchable
                raise
            finally:
                events.close()
            timings["workers"] = pool.target
        if report.interrupted:
            # videos cut off mid-way are redone whole by the next run
            delete_thumbs(self.catalog.home, self.catalog.drop_incomplete())

    def _run_batches(self, events: Ahead, pool: DecodePool, max_workers: int, batch_size: int, encoder: Encoder,
                     store: BatchStore, report: IndexReport) -> None:
        """Decoded windows in, batches through the models, one transaction each, until the files end or
        the caller asks to stop."""
        timings = report.timings
        starving = _Starving(self.settings.rebalance_every)
        pending = Batch()
        while True:
            t = time.perf_counter()
            try:
                event = next(events, None)
            except WorkerError:
                self._store(pending, encoder, store, report)  # the videos decoded whole before it
                raise
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
            while len(pending.windows) >= batch_size:
                self._store(pending.take(batch_size), encoder, store, report)
            if self.should_stop():
                report.interrupted = True
                break
        self._store(pending, encoder, store, report)

    def _fill_windows(self, vectors: Vectors, report: IndexReport) -> None:
        """Each window kind's evidence for indexed windows that lack it (indexed before the kind, or
        this model of it, was chosen): decoded again by the same guarded workers with the index's own
        windows, and run through that kind's model only; the video model's results stay as they are."""
        cat, s = self.catalog, self.settings
        for part in self.window_parts:
            model = self.models.get(part.kind.name)
            if model is None:  # no window needed it: nothing to fill in
                continue
            videos = cat.videos_missing(part.kind.name, part.model)
            if not videos or self.should_stop():
                continue
            t0 = time.perf_counter()
            window, most = cat.sampling or (s.sampling.window_seconds, s.sampling.max_windows)
            decode = DecodeSettings(spec=self._video_spec(), sampling=Sampling(window, most), timeout=s.timeout,
                                    memory_limit=s.memory_limit, backend=s.backend, read=self.read,
                                    sides=((part.kind.name, model.frame_spec),),
                                    workers=min(s.workers or default_workers("cpu"), len(videos)))
            spans = {v.id: {round(start, 3): cid for cid, start, _ in cat.window_spans(v.id)} for v in videos}
            waiting: list[tuple[int, np.ndarray]] = []  # (window id, frames)
            done = 0
            with DecodePool(decode) as pool:
                for event in pool.run((i, v.path) for i, v in enumerate(videos)):
                    if isinstance(event, Chunk) and part.kind.name in event.sides:
                        by_start = spans[videos[event.key].id]
                        # a window of the index's own plan, matched by where it starts
                        waiting += [(by_start[round(w.start, 3)], f) for w, f in
                                    zip(event.windows, event.sides[part.kind.name]) if round(w.start, 3) in by_start]
                    elif isinstance(event, Finished):
                        self._store_windows(part, model, waiting, vectors)
                        waiting = []
                        video = videos[event.key]
                        with cat.transaction():
                            cat.record_run(video.id, part.kind.name, part.model, len(spans[video.id]))
                        done += 1
                    elif isinstance(event, Failed):
                        report.failed.append((videos[event.key].path, f"{part.kind.name}: {event.reason}"))
                    if len(waiting) >= (s.batch_size or 8):
                        self._store_windows(part, model, waiting, vectors)
                        waiting = []
                    if self.should_stop():
                        report.interrupted = True
                        break
            report.filled[part.kind.name] = report.filled.get(part.kind.name, 0) + done
            report.timings[f"fill {part.kind.name}"] = time.perf_counter() - t0

    def _store_windows(self, part: WindowPart, model: WindowModel, windows: list[tuple[int, np.ndarray]],
                       vectors: Vectors) -> None:
        if not windows:
            return
        ids = [cid for cid, _ in windows]
        values = model.embed_frames(np.stack([f for _, f in windows]))
        with self.catalog.transaction():
            part.kind.store(self.catalog, ids, values)
        if part.kind.window_space is not None:
            vectors.replace(part.kind.window_space.name, ids, values)

    def _fill_files(self, report: IndexReport) -> None:
        """Each file kind's evidence (what is said, the subtitles) for every indexed video that lacks it
        with this model, its work run per file in guarded workers: a bad audio stream that hangs or
        crashes costs that file's evidence, recorded with the reason, and the video stays indexed."""
        cat, s = self.catalog, self.settings
        fresh = set(report.changed)
        for part in self.file_parts:
            kind = part.kind
            cat.ensure_part(kind.name, kind.tables)
            with cat.transaction():
                kind.bind(cat, part.model, part.model_id or part.model)
                for video_id, path, detail in cat.run_details(kind.name):  # what it read beside a video changed
                    if detail != kind.fingerprint(path):
                        cat.forget_run(video_id, kind.name)
            videos = cat.videos_missing(kind.name, part.model)
            if not videos or self.should_stop():
                continue
            t0 = time.perf_counter()
            settings = DecodeSettings(work=part.work, timeout=s.timeout, memory_limit=s.memory_limit,
                                      workers=min(s.workers or default_workers("cpu"), len(videos)))
            done = 0
            with DecodePool(settings) as pool:
                for event in pool.run((i, v.path) for i, v in enumerate(videos)):
                    video = videos[event.key]
                    with cat.transaction():
                        if isinstance(event, Done):
                            found = kind.store(cat, video.id, event.result)
                            cat.record_run(video.id, kind.name, part.model, found, detail=kind.fingerprint(video.path))
                            report.notes += kind.tell(video.path, event.result)
                        elif isinstance(event, Failed):
                            cat.record_run(video.id, kind.name, part.model, 0, event.reason, kind.fingerprint(video.path))
                            report.notes.append(f"{kind.name} of {video.path}: {event.reason}")
                    done += video.path not in fresh
                    self.on_progress(Progress(event.key + 1, len(videos), report.windows, video.path))
                    if self.should_stop():
                        report.interrupted = True
                        break
            if kind.space is not None and cat.dim_of(kind.space):
                open_vectors(cat, space=kind.space)  # its FAISS index, made once and saved for searches
            if done:
                report.filled[kind.name] = report.filled.get(kind.name, 0) + done
            report.timings[kind.name] = time.perf_counter() - t0

    def _video_spec(self) -> FrameSpec:
        """The video model's frames, as the index was decoded: from the loaded model, else as the index
        recorded them, else from the model's files (a run that only fills in another kind does not
        load the video model)."""
        if self.encoder is not None:
            return self.encoder.frame_spec
        recorded = self.catalog.get_meta("frame_spec")
        if recorded:
            num_frames, resize, crop = json.loads(recorded)
            return FrameSpec(num_frames, (resize[0], resize[1] if isinstance(resize[1], int) else tuple(resize[1]))
                             if resize else None, tuple(crop) if crop else None)
        from vsearch.model.checkpoint import read_model_json, read_preprocessing

        name = self.catalog.model
        assert name is not None  # a fill-in follows an index run, which recorded the model
        return read_preprocessing(name, read_model_json(name, "config.json") or {}).frame_spec

    def bind(self, encoder: Encoder, batch_size: int, vectors: Vectors) -> None:
        """Tie the index to the model (refusing another one), and record how this run makes its
        vectors: the windows, the runtime and precision, the batch. Opens the vector indexes a new
        index learns the dimensions of here."""
        s, cat = self.settings, self.catalog
        cat.bind_model(encoder.name, encoder.model_id, encoder.dim, encoder.labels)
        cat.record_sampling(s.sampling.window_seconds, s.sampling.max_windows)
        spec = encoder.frame_spec
        cat.set_run_meta("frame_spec", json.dumps([spec.num_frames, spec.resize, spec.crop]))
        if encoder.choice is not None:
            cat.record_precision(encoder.choice.label)
        cat.set_run_meta("batch_size", str(batch_size))
        for space in self._window_spaces([p for p in self.window_parts if p.kind.name in self.models]):
            if space.name not in vectors.spaces:
                vectors.open(cat, space)

    def _store(self, batch: Batch, encoder: Encoder, store: BatchStore, report: IndexReport) -> None:
        """Run the models on one batch and store the results."""
        encoded: list[EncodedWindow] = []
        if batch.windows:
            t = time.perf_counter()
            probs, embs = encoder.encode(np.stack([c.frames for c in batch.windows]))
            report.timings["model"] += time.perf_counter() - t
            values: dict[str, np.ndarray] = {}
            for part in self.window_parts:
                name = part.kind.name
                t = time.perf_counter()
                values[name] = self.models[name].embed_frames(np.stack([c.sides[name] for c in batch.windows]))
                report.timings[name] = report.timings.get(name, 0.0) + time.perf_counter() - t
            results = window_results(encoder.labels, [c.window for c in batch.windows], probs, embs)
            encoded = [EncodedWindow(c.key, c.info, r, c.thumb, {name: v[i] for name, v in values.items()})
                       for i, (c, r) in enumerate(zip(batch.windows, results))]
        t = time.perf_counter()
        settled = store.store(encoded, batch.finished, batch.failed)
        report.timings["store"] += time.perf_counter() - t
        if settled:
            self.on_progress(Progress(store.settled, len(store.jobs), report.windows, settled[-1]))


def first_windows(roots: Sequence[Path], spec: FrameSpec, sampling: Sampling, count: int = 32,
                exclude: Sequence[str] = DEFAULT_EXCLUDES, timeout: float = 60.0) -> np.ndarray:
    """Up to `count` of the user's own windows, for the calibration to quantize and check on: from
    files spread evenly over the whole listing (the first files of a library are often one event),
    as many from each as it takes, decoded by the guarded workers (a hostile file costs only
    itself). Empty (0, ...) when none decode."""
    h, w = spec.crop or (224, 224)
    files = [f.path for f in find_videos(list(roots), exclude=exclude)]
    picked = sorted({round(i) for i in np.linspace(0, len(files) - 1, min(count, len(files)))}) if files else []
    per_file = -(-count // max(1, len(picked)))
    windows: list[np.ndarray] = []
    taken: dict[int, int] = {}
    with DecodePool(DecodeSettings(spec=spec, sampling=sampling, timeout=timeout)) as pool:
        for event in pool.run((i, files[i]) for i in picked):
            if isinstance(event, Chunk) and event.frames.shape[2:4] == (h, w):
                room = max(0, min(per_file - taken.get(event.key, 0), count - len(windows)))
                windows += list(event.frames[:room])
                taken[event.key] = taken.get(event.key, 0) + room
            if len(windows) >= count:
                break
    return np.stack(windows) if windows else np.zeros((0, spec.num_frames, h, w, 3), np.uint8)
