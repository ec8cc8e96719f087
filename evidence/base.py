"""A kind of evidence: one way a moment can be found (its labels, what it shows, what is said in it).

A kind is one module with one object, a `Kind`, listed in vsearch.evidence.KINDS (or added with
`register`). Everything else iterates the list: an index run asks each kind for its part of the
run, a search asks each for its hits and merges them into one list of moments, `doctor` runs each
kind's checks, the web page and the command line show what each kind says about a hit, and the
bench times each kind's model. A kind says

- what it needs from a video: frames of each window at its own size (a `WindowKind`, whose
  `WindowPart` the decode workers feed beside the video model), or the file itself, read in a
  guarded worker (a `FileKind`: speech, subtitles, whose work is a picklable function of a path);
- what it stores: in tables of its own (`tables`: named migrations, created by
  Catalog.ensure_part when the kind first runs on an index), in a vector space (`space`, kept in
  FAISS), and which model made it (meta `<prefix>_model`); a copy of a video copies its rows
  without being asked (their foreign keys say whose they are);
- what ran where: every run on a video is recorded (Catalog.record_run), so a video with nothing
  to say and a video not yet processed differ, and an index made before a kind existed (or with
  another model of it) is filled in for the videos that lack it, without running the others again;
- how it answers a search (`hits`, with `match` naming the kind and `why` saying it to a person),
  on a common 0..1 scale;
- its `doctor` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vsearch.search.catalog import Catalog, VectorSpace
from vsearch.search.doctor import Check
from vsearch.search.hits import Filters, Hit
from vsearch.search.vectors import VectorIndex, check_vectors
from vsearch.video.decode import FrameSpec

if TYPE_CHECKING:
    import sqlite_utils

    from vsearch.core.home import Home

Migrations = Sequence[tuple[str, Callable[["sqlite_utils.Database"], None]]]
Log = Callable[[str], None]


@dataclass
class Ask:
    """A search, as every kind of evidence sees it."""

    catalog: Catalog
    text: str
    filters: Filters
    limit: int
    # False when the query is a label's very name: the labels answer it, and no kind loads a model
    models: bool
    vectors: Callable[[VectorSpace], VectorIndex]  # a space's FAISS index, kept up to date by the library
    model: Callable[[Kind], Any]  # a kind's query model (Kind.query_model), loaded once per vsearch.Index
    used: dict[str, bool | None] = field(default_factory=dict)  # see SearchResult.used
    notes: list[str] = field(default_factory=list)  # what the person should know about the answer


@dataclass
class Setup:
    """What a kind needs to say what it adds to an index run (Kind.part)."""

    catalog: Catalog
    options: Any  # vsearch.IndexOptions: a kind reads the field its `option` names
    home: Home
    windows: Callable[[FrameSpec], np.ndarray]  # some of the user's own windows, for its calibration
    pickles: bool  # the run is on Ray: loaders must pickle (no calibration across a cluster)
    log: Log
    notes: list[str]  # what the run's report should end with


class Kind:
    """One kind of evidence. Subclasses set the class attributes and override what they do."""

    name: str = ""  # the key of its runs (evidence_runs.kind) and of its part of a search
    matches: tuple[str, ...] = ()  # the `match` values of its hits
    prefix: str | None = None  # its model's meta keys (`<prefix>_model`); None: the video model makes it
    option: str | None = None  # the vsearch.IndexOptions field that names its model ("none": off)
    space: VectorSpace | None = None  # its vectors, each space with a FAISS index of its own
    similar_by: str | None = None  # the word `similar --by` compares in its space with
    tables: Migrations = ()  # its own tables (the core schema's for the built-in kinds)
    unit: str = "window"  # what a run counts as found in a video (`stats`): window, line, ...

    def model_of(self, catalog: Catalog) -> str | None:
        """The model this index makes the kind with; None: the kind is not in this index."""
        return catalog.kind_model(self.prefix) if self.prefix else catalog.model

    def hits(self, ask: Ask) -> list[Hit]:
        """The moments this kind finds for a search, scores 0..1, each saying why (Hit.why)."""
        return []

    def absent(self, catalog: Catalog, ask: Ask) -> None:
        """Told to a search of an index that does not have this kind: record it in `ask.used` and
        say in `ask.notes` how to add it, unless it was turned off on purpose."""

    def query_model(self, catalog: Catalog) -> Any:
        """The model a search of this kind needs (a text tower), loaded once per vsearch.Index."""
        raise NotImplementedError

    def checks(self) -> list[Check]:
        """`vsearch doctor`'s checks of what this kind stored: by default, its FAISS index."""
        space = self.space
        if space is None:
            return []
        return [lambda catalog, repair: check_vectors(catalog, space, repair)]

    def clear(self, catalog: Catalog) -> None:
        """Delete everything this kind stored (its model changed, or it was turned off). Inside a
        transaction."""

    def part(self, setup: Setup) -> Part | None:
        """This kind's part of an index run, or None when it does not run on this index (turned off,
        or its model cannot be had: then it says so in setup.notes)."""
        return None

    def bind(self, catalog: Catalog, model: str, model_id: str, dim: int = 0) -> bool:
        """Tie the index to the model this kind is made with (inside the caller's transaction). Another
        model than the index had replaces it: what the kind stored is forgotten, to be made again.
        Returns whether it replaced one."""
        assert self.prefix is not None  # a kind with a model of its own records it under its prefix
        replaced = catalog.bind_kind_model(self.prefix, model, model_id, dim)
        if replaced:
            self.clear(catalog)
            catalog.forget_runs(self.name)
        return replaced

    def turn_off(self, catalog: Catalog) -> None:
        """Forget this kind for this index, and what it stored, until a model is named again."""
        with catalog.transaction():
            self.clear(catalog)
            catalog.forget_runs(self.name)
            if self.prefix:
                catalog.unbind_kind_model(self.prefix)

    def settle(self, catalog: Catalog, videos: list[int]) -> None:
        """After an index run, with the videos it gave this kind's evidence: work across the library
        that needs all of it (the copies of these videos, anywhere)."""

    def transcript(self, catalog: Catalog, video_id: int) -> list[Line]:
        """The timed lines of text this kind holds for a video (what is said, its subtitles)."""
        return []

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class Line:
    """A line of a video's transcript: what is said (or written) from `start` to `end` seconds."""

    start: float
    end: float
    text: str
    source: str  # the kind's match: "speech", "subtitle"
    language: str | None = None

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text, "source": self.source,
                "language": self.language}


class WindowModel(Protocol):
    """A model that gives each window a vector from its own frames of it (an image-text model's vision
    tower, or anything as simple as mean brightness)."""

    name: str
    dim: int

    @property
    def frame_spec(self) -> FrameSpec: ...

    @property
    def model_id(self) -> str: ...

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(windows, frames, H, W, 3) uint8 -> (windows, dim) float32."""
        ...


class WindowKind(Kind):
    """Evidence computed per window, from frames the decode workers take beside the video model's."""

    @property
    def window_space(self) -> VectorSpace | None:
        """Its vector space where that holds one vector per window (kept in step as windows are
        stored); None where it has none, or vectors of its own grain (fingerprints of seconds)."""
        return self.space if self.space is not None and self.space.per_window else None

    def store(self, catalog: Catalog, window_ids: Sequence[int], values: np.ndarray) -> None:
        """Keep each window's values (a row of `values` per window id). Inside a transaction."""
        raise NotImplementedError


class FileKind(Kind):
    """Evidence read from the whole file (its audio, its subtitle streams, the files beside it), by a
    function of the path that runs in a guarded worker process."""

    def store(self, catalog: Catalog, video_id: int, found: Any) -> int:
        """Keep what the work found in one video, instead of what an earlier run found in it; returns how
        many items (0: nothing to say). Inside a transaction."""
        raise NotImplementedError

    def fingerprint(self, path: str) -> str | None:
        """What else the work reads beside the video (its sidecar files), as it is now: when it differs
        from the run's, the kind runs on the video again. None: only the video itself."""
        return None

    def tell(self, path: str, found: Any) -> list[str]:
        """What a person should know about what the work found in one video (a track it skipped)."""
        return []


@dataclass(frozen=True)
class WindowPart:
    """A window kind in an index run: the model it is made with, loaded only if some window needs it."""

    kind: WindowKind
    model: str  # its name, as the index records it
    load: Callable[[], WindowModel]


@dataclass(frozen=True)
class FilePart:
    """A file kind in an index run: `work(path, alive)` runs in a guarded worker (it must pickle),
    calls alive() as it makes progress (the time limit counts from the last call), and returns what
    `kind.store` keeps."""

    kind: FileKind
    model: str
    work: Callable[[str, Callable[[], None]], Any]  # (path, alive): alive() now and then while it works
    model_id: str = ""  # what identifies its weights (other weights under the same name: run again); "" = model


Part = WindowPart | FilePart
