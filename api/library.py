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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vsearch.core.errors import BadArgument, BadInput, IndexMissing, ModelError, NotIndexed
from vsearch.core.home import Home
from vsearch.search.catalog import CLIPS, SCENES, Catalog

if TYPE_CHECKING:
    from vsearch.indexer.one_file import Classification
    from vsearch.indexer.pipeline import IndexReport, Progress, ScenePart
    from vsearch.model.encoder import VideoEncoder
    from vsearch.model.runner import RuntimeModel
    from vsearch.model.scene import SceneModel
    from vsearch.search.doctor import DoctorReport
    from vsearch.search.query import Hit, Overview, SearchResult, VideoLabels, VideoMoments, VideoPage
    from vsearch.tag.tagger import TagReport, TagResult, TagRule

Log = Callable[[str], None]
T = TypeVar("T")
DECODERS = ("auto", "pyav", "decord", "cuda", "qsv")  # cuda, qsv: hardware (video/hwdecode.py)
# What find-similar compares: what happens (the video model's vectors), what is seen, or both.
SIMILAR_BY = {"action": (CLIPS,), "scene": (SCENES,), "both": (CLIPS, SCENES)}


def _quiet(message: str) -> None:
    pass


def _existing(paths: Sequence[str | Path]) -> list[Path]:
    """The files and folders a person named, resolved; BadArgument for one that is not there."""
    roots = [Path(p).expanduser().resolve() for p in paths]
    for given, root in zip(paths, roots):
        if not root.exists():
            raise BadArgument(f"{given}: no such file or folder")
    return roots


def load_model(
    name: str | None = None,
    *,
    device: str = "auto",
    runtime: str = "auto",
    precision: str = "auto",
    home: str | Path | Home | None = None,
    measure: bool = False,
    batch_size: int | None = None,
    clip_source: Callable[[Any], Any] | None = None,
    log: Log = _quiet,
) -> VideoEncoder:
    """The video model (a hub id or a folder; default: VSEARCH_MODEL, else the Kinetics VideoMAE) in
    the runtime, precision and batch size measured fastest on this machine.

    With `measure`, what is not yet measured for this machine and model is measured now (a minute
    or two for VideoMAE-base; `vsearch index` does this) and cached in the home; without it, a
    cached measurement is used if there is one (classify, similar and live load a model for a few
    clips: measuring would cost more than it saves). `clip_source` gives the user's own clips to
    check and quantize on. Raises ModelError (RuntimeUnavailable) when it cannot be loaded or run.
    """
    from vsearch.model.encoder import load_encoder

    layout = Home.at(home)
    encoder = load_encoder(name, device=device, precision=precision, runtime=runtime, home=layout,
                           clip_source=clip_source)
    _at_its_fastest(encoder, layout, measure, batch_size, "model", log)
    return encoder


def _at_its_fastest(model: RuntimeModel, layout: Home, measure: bool, batch_size: int | None, what: str,
                    log: Log) -> None:
    """Put a loaded model in the runtime, precision and batch measured fastest here: measured now
    (once per machine and model, cached in the home) with `measure`, else as measured before, if ever."""
    from vsearch.model.calibrate import reuse, tune

    if not measure:
        found = reuse(model, layout)
        log(f"{what}: {model.describe()}" + (" (measured fastest here by vsearch index)" if found else ""))
        return
    calibration = tune(model, layout, batch_size, on_measure=lambda: _measuring(model, what, log))
    log(f"{what}: {model.name} on {model.device}, {calibration.describe()}")


def _measuring(model: RuntimeModel, what: str, log: Log) -> None:
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


def load_scene(
    name: str,
    *,
    device: str = "auto",
    runtime: str = "auto",
    precision: str = "auto",
    home: str | Path | Home | None = None,
    measure: bool = False,
    batch_size: int | None = None,
    clip_source: Callable[[Any], Any] | None = None,
    log: Log = _quiet,
) -> SceneModel:
    """The scene model (an image-text or video-text model: CLIP, SigLIP, SigLIP 2, X-CLIP), its vision
    tower in the runtime, precision and batch measured fastest here, as load_model does for the video
    model. Raises ModelError when it cannot be loaded."""
    from vsearch.model.scene import load_scene_model

    layout = Home.at(home)
    scene = load_scene_model(name, device=device, runtime=runtime, precision=precision, home=layout,
                             clip_source=clip_source)
    _at_its_fastest(scene, layout, measure, batch_size, "scene model", log)
    return scene


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
    window: float = 4.0  # seconds per clip window
    max_windows: int = 150
    timeout: float = 120.0  # seconds one decode step may take
    retry_failed: bool = False
    decoder: str = "auto"
    exclude: tuple[str, ...] = ()  # more patterns left out, beside the defaults
    thumbnails: bool = True
    # The scene model, for searching by any description: a hub id or a folder; None: the index's
    # own, else DEFAULT_SCENE_MODEL where it can be had (cached, or downloadable); "none": off.
    text_model: str | None = None


class Index:
    """An index folder ("home"): index videos into it, and ask it questions.

    >>> idx = Index("/tmp/my-index")            # doctest: +SKIP
    >>> idx.index(["~/Videos"])                  # doctest: +SKIP
    >>> idx.search("eating spaghetti").hits      # doctest: +SKIP

    Reads open the catalog once per thread and see what a running index commits; an index run
    holds the writer lock, so a second one is refused with IndexBusy.
    """

    def __init__(self, home: str | Path | Home | None = None):
        self.home = Home.at(home)
        self._local = threading.local()
        self._scene: SceneModel | None = None  # the scene model for queries, once loaded
        self._scene_lock = threading.Lock()
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
        from vsearch.indexer.pipeline import Indexer, IndexReport, IndexSettings, first_clips, index_model
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
                scene = self._scene_part(catalog, o, roots, settings, pickles=bool(ray), log=log, notes=notes)
                if ray:
                    indexer: Indexer = self._ray_indexer(catalog, model, o, settings, ray, gpus_per_actor,
                                                         on_progress, stop, scene)
                else:
                    clips = functools.partial(first_clips, roots, sampling=settings.sampling, exclude=settings.exclude,
                                              timeout=o.timeout)
                    # cached: a watch loop runs the indexer again and again with the same model
                    load = functools.cache(lambda: load_model(
                        model, device=o.device, runtime=o.runtime, precision=o.precision, home=self.home,
                        measure=True, batch_size=o.batch_size, clip_source=clips, log=log))
                    indexer = Indexer(catalog, load, settings, on_progress=on_progress, should_stop=stop, scene=scene)
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
            dry_run: bool = False,
            on_result: Callable[[TagResult], None] | None = None, **fields: Any) -> TagReport:
        """Write each indexed video's tags and moments below `paths` (all without) into its XMP sidecar,
        which gallery apps read: merged into what is there, only vsearch's own entries replaced, the
        video never touched. `rule` (or its fields by name: min_score, min_windows, top, prefix,
        sidecar, markers) says which labels are tags. With `dry_run`, nothing is written."""
        from vsearch.tag.tagger import TagRule, indexed_videos, tag_videos

        try:
            rule = replace(rule or TagRule(), **fields)
        except TypeError as exc:
            raise BadArgument(f"unknown tag option: {exc}") from None
        given = [paths] if isinstance(paths, (str, Path)) else list(paths or [])
        roots = _existing(given) or None
        catalog = self._filled()
        return tag_videos(catalog, indexed_videos(catalog, roots), rule, dry_run, on_result)

    def _scene_part(self, catalog: Catalog, o: IndexOptions, roots: list[Path], settings: Any, pickles: bool,
                    log: Log, notes: list[str]) -> ScenePart | None:
        """The scene model this run gives windows vectors of, per `IndexOptions.text_model`; None for
        none. The default is used only where it can be had: offline and not in the cache, the run
        goes on without it and says so (a model asked for by name that cannot load is an error)."""
        from vsearch.indexer.pipeline import ScenePart, first_clips
        from vsearch.model.checkpoint import cache_only, model_name
        from vsearch.model.scene import DEFAULT_SCENE_MODEL, load_scene_model

        if o.text_model == "none":
            if not catalog.scene_off:
                with catalog.transaction():
                    gone = catalog.unbind_scene_model()
                if gone:
                    log(f"searching by description turned off for this index ({gone} scene vectors removed)")
            return None
        name = model_name(o.text_model or catalog.scene_model or DEFAULT_SCENE_MODEL)
        if o.text_model is None and (catalog.scene_model is None or catalog.scene_off):
            if catalog.scene_off:
                return None  # turned off on purpose: stays off until a model is named
            try:
                cache_only(name)
            except ModelError:
                notes.append(f"note: searching by description is off: {name} is not in the Hugging Face cache "
                                   "and cannot be downloaded now; index with --text-model NAME|FOLDER to turn it on, "
                                   "or --text-model none to not be told again")
                return None
        if pickles:  # Ray's model actors load it themselves: a picklable loader, no calibration
            return ScenePart(name, functools.partial(load_scene_model, name, device=o.device, runtime=o.runtime,
                                                     precision=o.precision, home=self.home))

        def clips(spec: Any) -> Any:
            return first_clips(roots, spec, settings.sampling, exclude=settings.exclude, timeout=o.timeout)

        return ScenePart(name, functools.cache(lambda: load_scene(
            name, device=o.device, runtime=o.runtime, precision=o.precision, home=self.home, measure=True,
            batch_size=o.batch_size, clip_source=clips, log=log)))

    def _ray_indexer(self, catalog: Catalog, model: str | None, o: IndexOptions, settings: Any, ray: bool | str,
                     gpus_per_actor: float, on_progress: Callable[[Progress], None] | None,
                     should_stop: Callable[[], bool], scene: ScenePart | None) -> Any:
        """The Ray indexer: its model actors load the model themselves, with the runtime and precision
        asked for (no calibration across a cluster's mixed nodes), so the loader must pickle."""
        from vsearch.indexer.distributed import RayIndexer, RaySettings
        from vsearch.model.encoder import load_encoder

        address = None if ray is True or ray == "local" else str(ray)
        load = functools.partial(load_encoder, model, device=o.device, precision=o.precision, runtime=o.runtime,
                                 home=self.home)
        return RayIndexer(catalog, load, settings,
                          RaySettings(address=address, gpus_per_actor=gpus_per_actor, decode_tasks=o.workers),
                          on_progress=on_progress, should_stop=should_stop, scene=scene)

    def doctor(self, repair: bool = False) -> DoctorReport:
        """Check the whole index (SQLite, FAISS, thumbnails, files on disk); with `repair`, fix what
        can be fixed. Holds the writer lock: IndexBusy while an index run writes."""
        from vsearch.search.doctor import doctor
        from vsearch.search.vectors import check_scene_vectors, check_vectors
        from vsearch.video.thumbs import check_thumbs

        self.close()  # doctor opens its own connection under the lock
        return doctor(self.home, repair=repair, checks=[check_vectors, check_scene_vectors, check_thumbs])

    # -- reading ------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20, under: str | None = None, min_score: float | None = None,
               min_duration: float | None = None, max_duration: float | None = None,
               scene_vectors: Any = None) -> SearchResult:
        """Moments that match `query`, best first, each saying why: its labels (by name, words or
        meaning), what its windows show (the index's scene model, for any description), or its file
        name. A query that is a label's very name is answered from the labels alone, without loading
        any model. A long-running caller passes the scene vector index it keeps (`scene_vectors`)."""
        from vsearch.search import query as q

        catalog = self._filled()
        floor = q.SEARCH_MIN_SCORE if min_score is None else min_score
        filters = q.Filters(under, min_duration, max_duration, floor)
        more: list[Hit] = []
        if not catalog.scene_model:
            scenes = False if catalog.scene_off else None
        else:
            scenes = bool(query.strip()) and not q.names_a_label(catalog, query)
        if scenes:
            more = self._scene_hits(catalog, query, filters, limit, scene_vectors)
        result = q.search(catalog, query, limit, filters, more=more)
        result.scenes = scenes
        return result

    def _scene_hits(self, catalog: Catalog, query: str, filters: Any, limit: int, vectors: Any) -> list[Hit]:
        from vsearch.search.scenes import SceneQuery, scene_hits
        from vsearch.search.vectors import open_vectors

        scene = self.scene_model()
        found = SceneQuery(scene.embed_text([query])[0], scene.score, scene.min_score)
        if vectors is None:
            vectors = open_vectors(catalog, space=SCENES)[0]
        return scene_hits(catalog, vectors, found, filters, limit)

    def scene_model(self) -> SceneModel:
        """The index's scene model, for queries: loaded once per Index (the web page keeps one)."""
        name = self.catalog().scene_model
        if name is None:
            raise BadInput("this index has no scene model: index it with --text-model to search by description")
        with self._scene_lock:
            if self._scene is None or self._scene.name != name:
                self._scene = load_scene(name, runtime="torch", precision="fp32", home=self.home)
            return self._scene

    def similar(self, file: str | Path, *, at: float | None = None, by: str | None = None, limit: int = 10,
                under: str | None = None, min_score: float = 0.0, min_duration: float | None = None,
                max_duration: float | None = None, device: str = "auto", runtime: str = "auto",
                precision: str = "auto", vectors: Mapping[str, Any] | None = None, log: Log = _quiet) -> list[Hit]:
        """Videos with moments like `file` (or like its window at `at` seconds), one hit per video.

        `by`: "action" compares what happens (the video model's embeddings), "scene" what is seen
        (the scene model's), "both" averages the two (default where the index has scene vectors: a
        clip like this one shows the same thing happening to the same kind of thing). An indexed file
        is compared by its stored vectors; any other file is cut into the index's own windows and
        run through the index's models (loaded only then). A long-running caller passes the vector
        indexes it keeps (`vectors`, by space)."""
        from vsearch.indexer.one_file import file_embedder
        from vsearch.search import query as q
        from vsearch.video.decode import Sampling

        exists = Path(file).exists()
        try:
            catalog = self._filled()
        except IndexMissing:
            if not exists:  # the more useful of the two things wrong
                raise BadArgument(f"{file}: no such file") from None
            raise
        row = catalog.video(q.locate(catalog, file))
        if (row is None or row.status != "ok") and not exists:  # an indexed file gone from disk still has its vectors
            raise BadArgument(f"{file}: no such file")
        way = by or ("both" if catalog.scene_model else "action")
        if way not in SIMILAR_BY:
            raise BadArgument(f"--by {way!r}: choose {', '.join(SIMILAR_BY)}")
        spaces = SIMILAR_BY[way]
        sampling = Sampling(*catalog.sampling) if catalog.sampling else None
        embed = file_embedder(lambda: load_model(catalog.model, device=device, runtime=runtime, precision=precision,
                                                 home=self.home, log=log), sampling,
                              self.scene_model if SCENES in spaces else None)
        return q.similar_to_file(catalog, file, at, limit, q.Filters(under, min_duration, max_duration, min_score),
                                 embed, vectors, spaces)

    def show(self, path: str | Path) -> VideoLabels:
        """One video's labels, moment by moment (NotIndexed if the index does not hold it)."""
        from vsearch.search import query as q

        return q.show(self.catalog(), q.resolve(path))

    def labels(self, query: str | None = None, limit: int = 50) -> list[dict]:
        """The labels videos carry with video counts; with `query`, the vocabulary ranked by meaning."""
        from vsearch.search import query as q

        catalog = self.catalog()
        if query:
            return q.vocabulary(catalog, query, limit)
        return [dict(r) for r in self._settled(catalog, ("labels", limit), lambda: q.vocabulary(catalog, None, limit))]

    def overview(self, *, limit: int = 24, labels: int = 12) -> Overview:
        """The library at a glance: videos, hours and failed files; the `limit` newest videos (with
        the cursor of the older ones, for `videos`); the `labels` labels most videos carry."""
        from vsearch.search import query as q

        catalog = self.catalog()
        size = self._settled(catalog, ("size",), lambda: q.library_size(catalog))
        cards = self._settled(catalog, ("label cards", labels), lambda: q.label_cards(catalog, labels))
        return q.Overview({**size, "failed": catalog.failed_count()}, q.recent_videos(catalog, None, limit),
                          [dict(c) for c in cards])

    def videos(self, *, before: int | None = None, limit: int = 24) -> VideoPage:
        """Searchable videos, most recently indexed first: `limit` of them older than the video id
        `before` (the cursor the previous page returned), however many the index holds."""
        from vsearch.search import query as q

        if limit < 1:
            raise BadArgument("limit must be at least 1")
        return q.recent_videos(self.catalog(), before, limit)

    def moments(self, video: int | str | Path) -> VideoMoments:
        """One video (a catalog id or a path) as moments: adjacent windows whose best label is the
        same merge into one; windows whose best label is below the search floor are left out.
        NotIndexed if the index does not hold it."""
        from vsearch.search import query as q

        catalog = self.catalog()
        if isinstance(video, int):
            return q.video_moments(catalog, video)
        row = catalog.video(q.locate(catalog, video))
        if row is None:
            raise NotIndexed(f"{video} is not in the index")
        return q.video_moments(catalog, row.id)

    def stats(self) -> dict:
        """What is in the index, and which files failed and why."""
        from vsearch.search import query as q

        return q.stats(self.catalog())

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
