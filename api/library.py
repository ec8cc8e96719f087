"""The library API: one call per user action, shared by every front end.

`Index` is an index folder and what can be done with it; `load_model` and `classify` work without
one. The CLI, the web page, the live command, the Ray driver and the benchmarks all come through
here, so an option given to one path reaches every path. Nothing here prints: messages a person
should see while a call runs go to the `log` callback, progress to `on_progress`; errors are
`VsearchError` subclasses (vsearch.core.errors).
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vsearch.core.errors import BadArgument, BadInput, IndexMissing, NotIndexed
from vsearch.core.home import Home
from vsearch.search.catalog import Catalog, VectorSpace, VideoRow

if TYPE_CHECKING:
    from vsearch.evidence.base import Kind, Line, Part
    from vsearch.indexer.one_file import Classification
    from vsearch.indexer.pipeline import IndexReport, Progress
    from vsearch.model.encoder import VideoEncoder
    from vsearch.model.visual import VisualModel
    from vsearch.search.browse import Overview, VideoLabels, VideoMoments, VideoPage
    from vsearch.search.copies import CopyPair, Duplicates
    from vsearch.search.doctor import DoctorReport
    from vsearch.search.hits import Hit, SearchResult
    from vsearch.search.vectors import KeptVectors, VectorIndex
    from vsearch.tag.tagger import TagReport, TagResult, TagRule

Log = Callable[[str], None]
T = TypeVar("T")
DECODERS = ("auto", "pyav", "decord", "cuda", "qsv")  # cuda, qsv: hardware (video/hwdecode.py)


def _quiet(message: str) -> None:
    pass


def _existing(paths: Sequence[str | Path]) -> list[Path]:
    """The files and folders a person named, resolved; BadArgument for one that is not there."""
    roots = [Path(p).expanduser().resolve() for p in paths]
    for given, root in zip(paths, roots):
        if not root.exists():
            raise BadArgument(f"{given}: no such file or folder")
    return roots


def _video_row(catalog: Catalog, video: int | str | Path) -> VideoRow:
    """An indexed video by its catalog id or its path; NotIndexed if the index does not hold it."""
    from vsearch.search.browse import locate

    row = catalog.video_by_id(video) if isinstance(video, int) else catalog.video(locate(catalog, video))
    if row is None:
        raise NotIndexed(f"{video} is not in the index")
    return row


def load_model(
    name: str | None = None,
    *,
    device: str = "auto",
    runtime: str = "auto",
    precision: str = "auto",
    home: str | Path | Home | None = None,
    measure: bool = False,
    batch_size: int | None = None,
    window_source: Callable[[Any], Any] | None = None,
    log: Log = _quiet,
) -> VideoEncoder:
    """The video model (a hub id or a folder; default: VSEARCH_MODEL, else the Kinetics VideoMAE) in
    the runtime, precision and batch size measured fastest on this machine.

    With `measure`, what is not yet measured for this machine and model is measured now (a minute
    or two for VideoMAE-base; `vsearch index` does this) and cached in the home; without it, a
    cached measurement is used if there is one (classify, similar and live load a model for a few
    windows: measuring would cost more than it saves). `window_source` gives the user's own windows to
    check and quantize on. Raises ModelError (RuntimeUnavailable) when it cannot be loaded or run.
    """
    from vsearch.model.calibrate import at_its_fastest
    from vsearch.model.encoder import load_encoder

    layout = Home.at(home)
    encoder = load_encoder(name, device=device, precision=precision, runtime=runtime, home=layout,
                           window_source=window_source)
    at_its_fastest(encoder, layout, measure, batch_size, "model", log)
    return encoder


# Older words for `similar --by`, still understood: what a window shows was called its scene.
BY_ALIASES = {"scene": "visuals"}


def load_visual(
    name: str,
    *,
    device: str = "auto",
    runtime: str = "auto",
    precision: str = "auto",
    home: str | Path | Home | None = None,
    measure: bool = False,
    batch_size: int | None = None,
    window_source: Callable[[Any], Any] | None = None,
    log: Log = _quiet,
) -> VisualModel:
    """The visual model (an image-text or video-text model: CLIP, SigLIP, SigLIP 2, X-CLIP), its vision
    tower in the runtime, precision and batch measured fastest here, as load_model does for the video
    model. Raises ModelError when it cannot be loaded."""
    from vsearch.model.calibrate import at_its_fastest
    from vsearch.model.visual import load_visual_model

    layout = Home.at(home)
    model = load_visual_model(name, device=device, runtime=runtime, precision=precision, home=layout,
                               window_source=window_source)
    at_its_fastest(model, layout, measure, batch_size, "visual model", log)
    return model


def load_scene(name: str, **options: Any) -> VisualModel:
    """Deprecated: load_visual, by the name it had while what a window shows was called its scene."""
    warnings.warn("vsearch.load_scene is deprecated: use vsearch.load_visual", DeprecationWarning, stacklevel=2)
    return load_visual(name, **options)


def classify(file: str | Path, *, model: str | None = None, top: int = 5, device: str = "auto",
             runtime: str = "auto", precision: str = "auto", home: str | Path | Home | None = None,
             log: Log = _quiet) -> Classification:
    """The `top` labels of one video, no index needed (the model's probabilities averaged over its
    windows). Raises BadInput for a missing file, DecodeError for one that is not a video."""
    from vsearch.indexer.one_file import classify as run

    path = Path(file)
    if not path.exists():
        raise BadArgument(f"{file}: no such file")
    encoder = load_model(model, device=device, runtime=runtime, precision=precision, home=home, log=log)
    return run(encoder, path, top)


@dataclass(frozen=True)
class IndexOptions:
    """How `Index.index` decodes and runs the model; every field has a CLI option of the same name."""

    model: str | None = None  # default: the index's own model, else the default model
    device: str = "auto"
    runtime: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None  # default: measured fastest here
    workers: int | None = None  # decode processes (with ray: decode tasks at most)
    window: float = 4.0  # seconds per window
    max_windows: int = 150
    timeout: float = 120.0  # seconds one decode step may take
    retry_failed: bool = False
    decoder: str = "auto"
    exclude: tuple[str, ...] = ()  # more patterns left out, beside the defaults
    thumbnails: bool = True
    # The visual model, for searching by any description: a hub id or a folder; None: the index's
    # own, else DEFAULT_VISUAL_MODEL where it can be had (cached, or downloadable); "none": off.
    text_model: str | None = None
    # The speech model, for searching what is said: a faster-whisper name or a CTranslate2 folder;
    # None: the index's own, else DEFAULT_SPEECH_MODEL where it can be had; "none": off.
    speech_model: str | None = None


class Index:
    """An index folder ("home"): index videos into it, and ask it questions.

    >>> idx = Index("/tmp/my-index")            # doctest: +SKIP
    >>> idx.index(["~/Videos"])                  # doctest: +SKIP
    >>> idx.search("eating spaghetti").hits      # doctest: +SKIP

    Safe to share between threads (the web page serves every request from one): each thread reads
    through its own connection and sees what a running index commits; the models a query loads are
    loaded once, under a lock. An index run holds the index's writer lock, so a second one, from
    this process or another, is refused with IndexBusy. It can be called from anywhere Python
    runs (a script, standard input, a notebook, a web server's thread): its worker processes never
    re-import the caller's main module.
    """

    def __init__(self, home: str | Path | Home | None = None):
        self.home = Home.at(home)
        self._local = threading.local()
        self._models: dict[str, tuple[str, Any]] = {}  # kind -> (model name, its query model), once loaded
        self._models_lock = threading.Lock()
        self._vectors: dict[str, KeptVectors] = {}  # vector space -> its FAISS index, kept in step
        self._vectors_lock = threading.Lock()
        self._settled_answers: dict[tuple, tuple[int, Any]] = {}  # see _settled
        self._settled_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Index({str(self.home.root)!r})"

    def catalog(self) -> Catalog:
        """This thread's read connection to the catalog; IndexMissing where there is no index."""
        catalog = getattr(self._local, "catalog", None)
        if catalog is None:
            catalog = self._local.catalog = Catalog(self.home, create=False)
        return catalog

    def close(self) -> None:
        catalog = getattr(self._local, "catalog", None)
        if catalog is not None:
            catalog.close()
            self._local.catalog = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | Path],
        options: IndexOptions | None = None,
        *,
        ray: bool | str = False,
        gpus_per_actor: float = 1.0,
        tag: TagRule | None = None,
        watch: bool = False,
        rescan: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_report: Callable[[IndexReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        log: Log = _quiet,
        **fields: Any,
    ) -> IndexReport:
        """Index the videos below `paths`: only what changed since the last run is decoded and
        run through the model; moved and copied files keep their results; files that cannot be
        read are recorded with their reason and the run goes on.

        How to decode and run the model comes as `options`, or as its fields by name
        (`idx.index(paths, model="data/motion-model", window=2)`).
        `tag`: also write the XMP sidecars of the videos this run indexed, moved or copied (see `tag`).
        `ray`: False runs here; True starts a local Ray, "auto" joins this machine's cluster,
        "ray://host:port" that one. `watch` keeps running until `should_stop()`, indexing files
        as they settle and forgetting deleted ones; each batch of changes goes to `on_report`,
        and the sum of them is returned. `should_stop` is asked between batches: a stop keeps
        everything stored so far, and the next run goes on from there.
        """
        from vsearch.indexer.pipeline import Indexer, IndexReport, IndexSettings, first_windows, index_model
        from vsearch.video.decode import Sampling
        from vsearch.video.files import DEFAULT_EXCLUDES

        try:
            o = replace(options or IndexOptions(), **fields)
        except TypeError as exc:
            raise BadArgument(f"unknown index option: {exc}") from None
        roots = _existing(paths)
        if not roots:
            raise BadArgument("no folders or files to index")
        if o.decoder not in DECODERS:
            raise BadArgument(f"unknown decoder {o.decoder!r}; choose {', '.join(DECODERS[:-1])} or {DECODERS[-1]}")
        if ray and watch:
            raise BadArgument("--watch keeps one machine's index current; it does not run on Ray (drop one of them)")
        settings = IndexSettings(
            batch_size=o.batch_size, sampling=Sampling(window_seconds=o.window, max_windows=o.max_windows),
            workers=o.workers, timeout=o.timeout, retry_failed=o.retry_failed, backend=o.decoder,
            exclude=DEFAULT_EXCLUDES + tuple(o.exclude), thumbnails=o.thumbnails)
        stop = should_stop or (lambda: False)
        notes: list[str] = []  # what the run's report should end with
        with self.home.writer_lock():
            catalog = Catalog(self.home, create=True)
            try:
                model = index_model(catalog, o.model)
                parts = self._parts(catalog, o, roots, settings, pickles=bool(ray), log=log, notes=notes)
                if ray:
                    indexer: Indexer = self._ray_indexer(catalog, model, o, settings, ray, gpus_per_actor,
                                                         on_progress, stop, parts)
                else:
                    windows = functools.partial(first_windows, roots, sampling=settings.sampling, exclude=settings.exclude,
                                              timeout=o.timeout)
                    # cached: a watch loop runs the indexer again and again with the same model
                    load = functools.cache(lambda: load_model(
                        model, device=o.device, runtime=o.runtime, precision=o.precision, home=self.home,
                        measure=True, batch_size=o.batch_size, window_source=windows, log=log))
                    indexer = Indexer(catalog, load, settings, on_progress=on_progress, should_stop=stop, parts=parts)
                if not watch:
                    report = indexer.run(roots)
                    self._tag_changed(catalog, report, tag, log)
                    report.notes += notes if report.indexed else []
                    return report
                from vsearch.indexer.watch import WatchSettings
                from vsearch.indexer.watch import watch as watch_loop

                total = IndexReport()

                def add(report: IndexReport) -> None:
                    total.absorb(report)
                    self._tag_changed(catalog, report, tag, log)
                    if on_report is not None:
                        on_report(report)

                for note in notes:
                    log(note)
                watch_loop(indexer, roots, WatchSettings(rescan=rescan), should_stop=stop, on_report=add)
                return total
            finally:
                catalog.close()

    def _tag_changed(self, catalog: Catalog, report: IndexReport, rule: TagRule | None, log: Log) -> None:
        """Sidecars for what an index run changed; a sidecar that fails is told, the index stays."""
        if rule is None or not report.changed:
            return
        from vsearch.tag.tagger import indexed_videos, tag_videos

        tagged = tag_videos(catalog, indexed_videos(catalog, [Path(p) for p in report.changed]), rule)
        for line in tagged.summary_lines():
            log(f"tags: {line}")

    def tag(self, paths: str | Path | Sequence[str | Path] | None = None, rule: TagRule | None = None, *,
            dry_run: bool = False, subtitles: str | None = None,
            on_result: Callable[[TagResult], None] | None = None, **fields: Any) -> TagReport:
        """Write each indexed video's tags and moments below `paths` (all without) into its XMP sidecar,
        which gallery apps read: merged into what is there, only vsearch's own entries replaced, the
        video never touched. `rule` (or its fields by name: min_score, min_windows, top, prefix,
        sidecar, markers) says which labels are tags. With `dry_run`, nothing is written.

        With `subtitles` ("srt" or "vtt"), write what is said in each video instead, as a subtitle
        file beside it (clip.srt), for video players: only beside videos with no subtitles of their
        own, and never over a file vsearch did not write (tag.subtitles)."""
        from vsearch.tag.tagger import TagRule, indexed_videos, tag_videos

        try:
            rule = replace(rule or TagRule(), **fields)
        except TypeError as exc:
            raise BadArgument(f"unknown tag option: {exc}") from None
        given = [paths] if isinstance(paths, (str, Path)) else list(paths or [])
        roots = _existing(given) or None
        catalog = self._filled()
        if subtitles is not None:
            from vsearch.tag.subtitles import write_transcripts

            return write_transcripts(catalog, indexed_videos(catalog, roots), subtitles, dry_run, on_result)
        return tag_videos(catalog, indexed_videos(catalog, roots), rule, dry_run, on_result)

    def _parts(self, catalog: Catalog, o: IndexOptions, roots: list[Path], settings: Any, pickles: bool,
               log: Log, notes: list[str]) -> list[Part]:
        """What each kind of evidence adds to this run, per its option (see vsearch.evidence)."""
        from vsearch.evidence import kinds
        from vsearch.evidence.base import Setup
        from vsearch.indexer.pipeline import first_windows

        def windows(spec: Any) -> Any:
            return first_windows(roots, spec, settings.sampling, exclude=settings.exclude, timeout=o.timeout)

        setup = Setup(catalog, o, self.home, windows, pickles, log, notes)
        return [part for kind in kinds() if (part := kind.part(setup)) is not None]

    def _ray_indexer(self, catalog: Catalog, model: str | None, o: IndexOptions, settings: Any, ray: bool | str,
                     gpus_per_actor: float, on_progress: Callable[[Progress], None] | None,
                     should_stop: Callable[[], bool], parts: list[Part]) -> Any:
        """The Ray indexer: its model actors load the models themselves, with the runtime and precision
        asked for (no calibration across a cluster's mixed nodes), so the loaders must pickle."""
        from vsearch.indexer.distributed import RayIndexer, RaySettings
        from vsearch.model.encoder import load_encoder

        address = None if ray is True or ray == "local" else str(ray)
        load = functools.partial(load_encoder, model, device=o.device, precision=o.precision, runtime=o.runtime,
                                 home=self.home)
        return RayIndexer(catalog, load, settings,
                          RaySettings(address=address, gpus_per_actor=gpus_per_actor, decode_tasks=o.workers),
                          on_progress=on_progress, should_stop=should_stop, parts=parts)

    def doctor(self, repair: bool = False) -> DoctorReport:
        """Check the whole index (SQLite, FAISS, thumbnails, files on disk, each kind of evidence's own
        checks); with `repair`, fix what can be fixed. Holds the writer lock: IndexBusy while an index
        run writes."""
        from vsearch.evidence import kinds
        from vsearch.search.doctor import doctor
        from vsearch.video.thumbs import check_thumbs

        self.close()  # doctor opens its own connection under the lock
        return doctor(self.home, repair=repair, checks=[*(c for k in kinds() for c in k.checks()), check_thumbs])

    # -- reading ------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20, under: str | None = None, min_score: float | None = None,
               min_duration: float | None = None, max_duration: float | None = None,
               language: str | None = None, collapse_copies: bool = False) -> SearchResult:
        """Moments that match `query`, best first, one hit per moment: every kind of evidence the
        index holds is asked (its labels by name, words or meaning; what its windows show, by the
        index's visual model; what is said and its subtitles, by their words and meaning) and a moment
        several kinds found is one hit that says each of them (`also`); file names match too. A query
        that is a label's very name is answered without loading any model. `language`: only videos
        in which it is spoken ("en"). `collapse_copies`: the same moment of copies of one video is one
        hit, the copies listed in its details (see `duplicates`)."""
        from vsearch.evidence import kinds
        from vsearch.evidence.base import Ask
        from vsearch.search.hits import SEARCH_MIN_SCORE, Filters, SearchResult, existing, merge_hits
        from vsearch.search.keyword import file_name_hits, names_a_label

        if not query.strip():
            raise BadInput("the query is empty")
        catalog = self._filled()
        floor = SEARCH_MIN_SCORE if min_score is None else min_score
        filters = Filters(under, min_duration, max_duration, floor, language)
        ask = Ask(catalog, query, filters, limit, not names_a_label(catalog, query), self.vectors, self._query_model)
        hits: list[Hit] = []
        for kind in kinds():
            if kind.model_of(catalog) is None:
                kind.absent(catalog, ask)
            else:
                hits += kind.hits(ask)
        hits += file_name_hits(catalog, query, filters, limit)
        merged = merge_hits(hits)
        if collapse_copies:
            merged = self._folded(catalog, merged)
        return SearchResult(existing(merged, limit), ask.used, ask.notes)

    def _folded(self, catalog: Catalog, hits: list[Hit]) -> list[Hit]:
        from vsearch.evidence.copies import stored_pairs
        from vsearch.search.copies import fold_copies

        return fold_copies(hits, stored_pairs(catalog, sorted({h.video_id for h in hits})))

    def copies(self, video: int | str | Path) -> list[CopyPair]:
        """The videos that share content with one video (a catalog id or a path), each pair with the
        span in both (see `duplicates`). NotIndexed if the index does not hold it."""
        from vsearch.evidence.copies import stored_pairs

        catalog = self.catalog()
        return stored_pairs(catalog, [_video_row(catalog, video).id])

    def duplicates(self, paths: str | Path | Sequence[str | Path] | None = None, *, refresh: bool = False
                   ) -> Duplicates:
        """Videos below `paths` (all without) that share content with another indexed video: every pair,
        with the span it shares in each and how ("same", "contains": a contains b, "part"), and the
        pairs as groups (an original, the largest file, with its copies; the most bytes to free first).
        Exact copies are found by their bytes; near copies by the per-second fingerprints index runs
        make and match. `refresh` matches every video again (it holds the writer lock). Nothing is
        ever deleted: what to keep is the person's decision."""
        from vsearch.evidence.copies import KIND, stored_pairs
        from vsearch.search.copies import Duplicates, groups

        given = [paths] if isinstance(paths, (str, Path)) else list(paths or [])
        roots = _existing(given) or None
        catalog = self._filled()
        if refresh:
            with self.home.writer_lock():
                writer = Catalog(self.home, create=False)
                try:
                    KIND.settle(writer, [v.id for v in writer.finished_videos()])
                finally:
                    writer.close()
        mine = {v.id for v in catalog.finished_videos(roots)} if roots else None
        pairs = stored_pairs(catalog, sorted(mine) if mine is not None else None)
        sizes = dict(catalog.db.execute("SELECT id, size FROM videos WHERE status = 'ok'").fetchall())
        missing = len(catalog.videos_missing(KIND.name, KIND.model_of(catalog) or "")) if catalog.has_part(KIND.name) \
            else catalog.stats()["videos"]
        notes = [f"{missing} videos have no fingerprints yet (indexed before vsearch looked for copies): "
                 "`vsearch index` fills them in, and then finds their near copies"] if missing else []
        return Duplicates(pairs, groups(pairs, sizes), notes)

    def vectors(self, space: VectorSpace) -> VectorIndex:
        """A vector space's FAISS index in step with the catalog, kept for this Index's life: loaded
        once, then brought up to date as videos are indexed or leave (never rebuilt per video)."""
        from vsearch.search.vectors import KeptVectors

        with self._vectors_lock:
            kept = self._vectors.setdefault(space.name, KeptVectors(space))
            return kept.current(self.catalog())

    def _query_model(self, kind: Kind) -> Any:
        """A kind's model for queries (a text tower), loaded once per Index and shared by its threads."""
        name = kind.model_of(self.catalog())
        with self._models_lock:
            loaded = self._models.get(kind.name)
            if loaded is None or loaded[0] != name:
                loaded = self._models[kind.name] = (str(name), kind.query_model(self.catalog()))
            return loaded[1]

    def similar(self, file: str | Path, *, at: float | None = None, by: str | None = None, limit: int = 10,
                under: str | None = None, min_score: float = 0.0, min_duration: float | None = None,
                max_duration: float | None = None, device: str = "auto", runtime: str = "auto",
                precision: str = "auto", collapse_copies: bool = False, log: Log = _quiet) -> list[Hit]:
        """Videos with moments like `file` (or like its window at `at` seconds), one hit per video.

        `by` names what is compared: "action" what happens (the video model's vectors), "visuals" what
        is seen (the visual model's; "scene", its older name, is the same), or "both", averaged (the
        default where the index has visual vectors: a window like this one shows the same thing
        happening to the same kind of thing). An indexed file is compared by its stored vectors; any
        other file is cut into the index's own windows and run through the index's models (loaded
        only then). `collapse_copies`: copies of the file itself are left out, and copies of one
        video are one hit (see `duplicates`)."""
        from vsearch.evidence import kinds
        from vsearch.indexer.one_file import file_embedder
        from vsearch.search.browse import locate
        from vsearch.search.hits import Filters
        from vsearch.search.similar import similar_to_file
        from vsearch.video.decode import Sampling

        exists = Path(file).exists()
        try:
            catalog = self._filled()
        except IndexMissing:
            if not exists:  # the more useful of the two things wrong
                raise BadArgument(f"{file}: no such file") from None
            raise
        row = catalog.video(locate(catalog, file))
        if (row is None or row.status != "ok") and not exists:  # an indexed file gone from disk still has its vectors
            raise BadArgument(f"{file}: no such file")
        ways = {k.similar_by: k for k in kinds() if k.similar_by and k.space is not None}
        present = [k for k in ways.values() if k.model_of(catalog) is not None]
        way = BY_ALIASES.get(by, by) if by else ("both" if len(present) > 1 else "action")
        if way != "both" and way not in ways:
            raise BadArgument(f"--by {way!r}: choose {', '.join([*ways, 'both'])}")
        chosen = present if way == "both" else [ways[way]]
        for kind in chosen:
            if kind.model_of(catalog) is None:
                raise BadInput(f"this index has no {kind.name} vectors (it was made without that model): index again "
                               f"with --{(kind.option or '').replace('_', '-')}, or compare by what happens (--by action)")
        sampling = Sampling(*catalog.sampling) if catalog.sampling else None
        others = {k.space.name: functools.partial(self._query_model, k) for k in chosen
                  if k.space is not None and k.similar_by != "action"}
        embed = file_embedder(lambda: load_model(catalog.model, device=device, runtime=runtime, precision=precision,
                                                 home=self.home, log=log), sampling, others)
        hits = similar_to_file(catalog, file, [k.space for k in chosen if k.space is not None], self.vectors, at,
                               limit + (10 if collapse_copies else 0), Filters(under, min_duration, max_duration, min_score),
                               embed)
        if not collapse_copies:
            return hits
        from vsearch.evidence.copies import stored_pairs
        from vsearch.search.copies import fold_copies

        own = row.id if row is not None and row.status == "ok" else None
        pairs = stored_pairs(catalog, sorted({h.video_id for h in hits} | ({own} if own else set())))
        of_itself = {v for p in pairs if p.kind != "part" and own in (p.a.video_id, p.b.video_id)
                     for v in (p.a.video_id, p.b.video_id)}
        return fold_copies([h for h in hits if h.video_id not in of_itself], pairs)[:limit]

    def show(self, path: str | Path) -> VideoLabels:
        """One video's labels, moment by moment (NotIndexed if the index does not hold it)."""
        from vsearch.search import browse as q

        return q.show(self.catalog(), q.resolve(path))

    def labels(self, query: str | None = None, limit: int = 50) -> list[dict]:
        """The labels videos carry with video counts; with `query`, the vocabulary ranked by meaning."""
        from vsearch.search import browse as q

        catalog = self.catalog()
        if query:
            return q.vocabulary(catalog, query, limit)
        return [dict(r) for r in self._settled(catalog, ("labels", limit), lambda: q.vocabulary(catalog, None, limit))]

    def overview(self, *, limit: int = 24, labels: int = 12) -> Overview:
        """The library at a glance: videos, hours and failed files; the `limit` newest videos (with
        the cursor of the older ones, for `videos`); the `labels` labels most videos carry."""
        from vsearch.search import browse as q

        catalog = self.catalog()
        size = self._settled(catalog, ("size",), lambda: q.library_size(catalog))
        cards = self._settled(catalog, ("label cards", labels), lambda: q.label_cards(catalog, labels))
        return q.Overview({**size, "failed": catalog.failed_count()}, q.recent_videos(catalog, None, limit),
                          [dict(c) for c in cards])

    def videos(self, *, before: int | None = None, limit: int = 24) -> VideoPage:
        """Searchable videos, most recently indexed first: `limit` of them older than the video id
        `before` (the cursor the previous page returned), however many the index holds."""
        from vsearch.search import browse as q

        if limit < 1:
            raise BadArgument("limit must be at least 1")
        return q.recent_videos(self.catalog(), before, limit)

    def transcript(self, video: int | str | Path) -> list[Line]:
        """What is said in a video and its subtitles, line by line in time order, each line saying
        where it comes from (`source`: speech, subtitle) and its language. NotIndexed if the index
        does not hold the video."""
        from vsearch.evidence import kinds

        catalog = self.catalog()
        row = _video_row(catalog, video)
        return sorted((line for kind in kinds() for line in kind.transcript(catalog, row.id)),
                      key=lambda line: (line.start, line.source))

    def moments(self, video: int | str | Path) -> VideoMoments:
        """One video (a catalog id or a path) as moments: adjacent windows whose best label is the
        same merge into one; windows whose best label is below the search floor are left out.
        NotIndexed if the index does not hold it."""
        from vsearch.search import browse as q

        catalog = self.catalog()
        if isinstance(video, int):
            return q.video_moments(catalog, video)
        return q.video_moments(catalog, _video_row(catalog, video).id)

    def stats(self) -> dict:
        """What is in the index, and which files failed and why; per kind of evidence, the model it
        was made with, how many videos it ran on and how many of its `unit` it found (`evidence`)."""
        from vsearch.evidence import kinds
        from vsearch.search import browse as q

        catalog = self.catalog()
        runs = catalog.runs_summary()
        evidence = {k.name: {"model": k.model_of(catalog), **runs.get(k.name, {"videos": 0, "found": 0, "failed": 0}),
                             "unit": k.unit} for k in kinds() if k.model_of(catalog) is not None or k.name in runs}
        return {**q.stats(catalog), "evidence": evidence}

    def clip(self, path: str | Path, start: float, end: float, out: str | Path | None = None) -> Path:
        """Cut [start, end) seconds of a video into an MP4 that plays anywhere (H.264 + AAC).
        `out` defaults to a name made of the file's and the times, in the current folder."""
        from vsearch.video.media import clip_name, export_clip

        source = Path(path)
        if not source.is_file():
            raise BadArgument(f"{path}: no such file")
        if end <= start:
            raise BadArgument(f"the end ({end:g} s) must come after the start ({start:g} s)")
        return export_clip(str(source.resolve()), start, end, Path(out or clip_name(str(source), start, end)))

    def _settled(self, catalog: Catalog, key: tuple, compute: Callable[[], T]) -> T:
        """An answer that changes only when a video becomes searchable or leaves (each bumps the
        catalog's generation), kept until then. Counting the labels of 100,000 videos reads
        millions of rows: a home page must not do that on every view, only after the index changed."""
        generation = catalog.generation
        with self._settled_lock:
            kept = self._settled_answers.get(key)
        if kept is not None and kept[0] == generation:
            return kept[1]
        answer = compute()
        with self._settled_lock:
            self._settled_answers[key] = (generation, answer)
        return answer

    def _filled(self) -> Catalog:
        catalog = self.catalog()
        if catalog.is_empty():
            raise IndexMissing("the index is empty; run `vsearch index FOLDER` first")
        return catalog
