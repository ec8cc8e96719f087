"""Reading one video or the library: a video's labels window by window, the vocabulary, stats, the
library's newest videos (a cursor), one video's moments (the strip on its page), the label cards.
Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vsearch.core.errors import NotIndexed
from vsearch.search.catalog import Catalog
from vsearch.search.hits import SEARCH_MIN_SCORE, merge_moments
from vsearch.search.keyword import label_similarities, match_labels


@dataclass
class VideoLabels:
    path: str
    status: str
    error: str | None
    duration: float | None
    labels: list[tuple[str, float]]  # per video, best first
    windows: list[dict]  # per window: start, end, labels

    def to_json(self) -> dict:
        return {"path": self.path, "status": self.status, "error": self.error, "duration": self.duration,
                "labels": [{"label": n, "score": round(s, 4)} for n, s in self.labels], "windows": self.windows}


def show(catalog: Catalog, path: str, top: int = 3) -> VideoLabels:
    row = catalog.video(locate(catalog, path))
    if row is None:
        raise NotIndexed(f"{path} is not in the index")
    video_labels = catalog.db.execute(
        "SELECT l.name, vl.score FROM video_labels vl JOIN labels l ON l.id = vl.label_id "
        "WHERE vl.video_id = ? ORDER BY vl.score DESC LIMIT ?",
        [row.id, top * 2],
    ).fetchall()
    windows = []
    for cid, start, end in catalog.db.execute(
        "SELECT id, start, end FROM windows WHERE video_id = ? ORDER BY idx", [row.id]
    ).fetchall():
        labels = catalog.db.execute(
            "SELECT l.name, cl.score FROM window_labels cl JOIN labels l ON l.id = cl.label_id "
            "WHERE cl.window_id = ? ORDER BY cl.score DESC LIMIT ?",
            [cid, top],
        ).fetchall()
        windows.append({"start": start, "end": end, "labels": [{"label": n, "score": round(s, 4)} for n, s in labels]})
    return VideoLabels(row.path, row.status, row.error, row.duration, [(n, s) for n, s in video_labels], windows)


def stats(catalog: Catalog) -> dict:
    """What is in the index (Catalog.stats), and which files failed and why."""
    return {**catalog.stats(), "failures": [{"path": p, "reason": r} for p, r in catalog.failures()]}


def vocabulary(catalog: Catalog, text: str | None = None, limit: int = 50) -> list[dict]:
    """Labels that videos carry (the best label of at least one of their windows), with video counts.

    With text, the model's whole vocabulary ranked by meaning (when a sentence model is
    installed, else by FTS5 word match), each with how many videos carry it.
    """
    if text:
        ranked = label_similarities(catalog, text)
        if ranked is not None:
            ids, sims = ranked
            order = np.argsort(-sims)[:limit]
            names = dict(catalog.labels())
            counts = dict(catalog.db.execute(
                "SELECT vl.label_id, count(*) FROM video_labels vl JOIN videos v ON v.id = vl.video_id "
                "AND v.status = 'ok' WHERE vl.top_windows > 0 GROUP BY vl.label_id").fetchall())
            return [{"label": names[ids[i]], "videos": counts.get(ids[i], 0), "similarity": round(float(sims[i]), 4)}
                    for i in order]
    base = (
        "SELECT l.name, count(DISTINCT vl.video_id) AS n FROM labels l "
        "JOIN video_labels vl ON vl.label_id = l.id AND vl.top_windows > 0 "
        "JOIN videos v ON v.id = vl.video_id AND v.status = 'ok' "
    )
    if text:
        ids = [m.label_id for m in match_labels(catalog, text)]
        if not ids:
            return []
        rows = catalog.db.execute(
            base + f"WHERE l.id IN ({','.join('?' * len(ids))}) GROUP BY l.id ORDER BY n DESC, l.name LIMIT ?",
            [*ids, limit],
        ).fetchall()
    else:
        rows = catalog.db.execute(base + "GROUP BY l.id ORDER BY n DESC, l.name LIMIT ?", [limit]).fetchall()
    return [{"label": name, "videos": n} for name, n in rows]


def resolve(path: str | Path) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def locate(catalog: Catalog, path: str | Path) -> str:
    """The path under which the catalog knows a file: as given, or with its links resolved
    (`index` stores what it walked, a user may name the same file through another link)."""
    given = resolve(path)
    if catalog.video(given) is not None:
        return given
    real = os.path.realpath(given)
    return real if catalog.video(real) is not None else given


# -- browsing: the library at a glance, and one video's moments --------------------------------

# A label scored below this says nothing about a window: the strip leaves the window blank and a
# video's page does not list it (the same floor search applies, so what a page shows can be found).
MOMENT_FLOOR = SEARCH_MIN_SCORE


@dataclass(frozen=True)
class VideoCard:
    """One video as the library lists it: what it mostly shows, and a picture of that."""

    id: int
    path: str
    duration: float | None
    indexed_at: float  # seconds since the epoch
    label: str | None  # the label best in most of its windows; None when none clears the floor
    window_id: int | None  # the window whose thumbnail stands for the video
    window_start: float | None  # where that window starts, in seconds

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VideoPage:
    """A page of videos, newest first, and the cursor of the next (older) one."""

    videos: list[VideoCard]
    before: int | None  # pass as `before` for the next page; None: this is the last page

    def to_json(self) -> dict:
        return {"videos": [v.to_json() for v in self.videos], "before": self.before}


# Newest first from a cursor: walks the primary key (or the status index, which ends in it) down
# from `before`, reading only the page's rows.
RECENT = "SELECT id, path, duration, indexed_at FROM videos WHERE status = 'ok' AND id < ? ORDER BY id DESC LIMIT ?"
NEWEST = 2**63 - 1  # above every id: the first page


def recent_videos(catalog: Catalog, before: int | None = None, limit: int = 24) -> VideoPage:
    """Searchable videos, most recently indexed first, `limit` at a time from the cursor `before`.

    A video's id grows with every row the indexer writes (a changed file is written as a new row),
    so newest first is descending id: a seek down the primary key from the cursor, never an
    OFFSET over every video before the page, and no index the server would have to build."""
    rows = catalog.db.execute(RECENT, [before if before is not None else NEWEST, limit + 1]).fetchall()
    cards = [_card(catalog, *row) for row in rows[:limit]]
    return VideoPage(cards, cards[-1].id if len(rows) > limit else None)


def _card(catalog: Catalog, video_id: int, path: str, duration: float | None, indexed_at: float) -> VideoCard:
    """A video with its main label and the window that shows that label best (else its middle one)."""
    found = catalog.db.execute(
        "SELECT l.id, l.name FROM video_labels vl JOIN labels l ON l.id = vl.label_id "
        "WHERE vl.video_id = ? AND vl.score >= ? AND vl.top_windows > 0 ORDER BY vl.top_windows DESC, vl.score DESC LIMIT 1",
        [video_id, MOMENT_FLOOR],
    ).fetchone()
    if found is not None:
        picture = catalog.db.execute(
            "SELECT c.id, c.start FROM windows c CROSS JOIN window_labels cl ON cl.window_id = c.id AND cl.label_id = ? "
            "WHERE c.video_id = ? ORDER BY cl.score DESC, c.idx LIMIT 1", [found[0], video_id]).fetchone()
    else:
        picture = catalog.db.execute(
            "SELECT id, start FROM windows WHERE video_id = ? AND idx >= "
            "(SELECT max(idx) FROM windows WHERE video_id = ?) / 2 ORDER BY idx LIMIT 1", [video_id, video_id]).fetchone()
    window_id, window_start = picture if picture is not None else (None, None)
    return VideoCard(video_id, path, duration, indexed_at, found[1] if found else None, window_id, window_start)


@dataclass(frozen=True)
class Moment:
    """A stretch of a video's timeline: adjacent windows whose best label is the same."""

    start: float
    end: float
    label: str
    score: float  # the label's score in its best window
    window_id: int  # the moment's first window: its thumbnail is where the moment starts
    kind: str = "label"  # what found the stretch; "label": the model's own labels
    windows: int = 1  # how many windows it spans

    def to_json(self) -> dict:
        return {**asdict(self), "score": round(self.score, 4)}


@dataclass(frozen=True)
class VideoMoments:
    """What a video's page shows: the video, its labels worth listing and its moments in time order."""

    id: int
    path: str
    status: str
    error: str | None
    duration: float | None
    labels: list[tuple[str, float]]  # per video, best first, none below the floor
    moments: list[Moment]

    def to_json(self) -> dict:
        return {"id": self.id, "path": self.path, "status": self.status, "error": self.error,
                "duration": self.duration, "labels": [{"label": n, "score": round(s, 4)} for n, s in self.labels],
                "moments": [m.to_json() for m in self.moments]}


def video_moments(catalog: Catalog, video_id: int, floor: float = MOMENT_FLOOR, top: int = 6) -> VideoMoments:
    """One video's timeline as moments: each window counts for its best label only, windows whose
    best label is below `floor` are left blank, and adjacent windows of one label merge."""
    row = catalog.video_by_id(video_id)
    if row is None:
        raise NotIndexed(f"no video {video_id} in the index")
    labels = catalog.db.execute(
        "SELECT l.name, vl.score FROM video_labels vl JOIN labels l ON l.id = vl.label_id "
        "WHERE vl.video_id = ? AND vl.score >= ? ORDER BY vl.score DESC LIMIT ?", [video_id, floor, top]).fetchall()
    by_label: dict[str, list[tuple[int, float, float, float]]] = {}
    first_window: dict[float, int] = {}  # a window's start -> its window id
    for cid, idx, start, end, name, score in catalog.db.execute(
        # each window's labels best first (ties by name, so the strip never flickers between runs)
        "SELECT c.id, c.idx, c.start, c.end, l.name, cl.score FROM windows c JOIN window_labels cl ON cl.window_id = c.id "
        "JOIN labels l ON l.id = cl.label_id WHERE c.video_id = ? ORDER BY c.idx, cl.score DESC, l.name",
        [video_id],
    ):
        if start in first_window:
            continue  # not this window's best label
        first_window[start] = cid
        if score >= floor:
            by_label.setdefault(name, []).append((idx, start, end, score))
    # relative=0: every window whose best label this is belongs to a moment of it
    moments = [Moment(s, e, name, score, first_window[s], windows=sum(s <= w[1] < e for w in windows))
               for name, windows in by_label.items() for s, e, score in merge_moments(windows, relative=0.0)]
    moments.sort(key=lambda m: m.start)
    return VideoMoments(row.id, row.path, row.status, row.error, row.duration, [(n, s) for n, s in labels], moments)


def library_size(catalog: Catalog) -> dict:
    """How many videos can be searched, and how many hours they play."""
    videos, seconds = catalog.db.execute("SELECT count(*), sum(duration) FROM videos WHERE status = 'ok'").fetchone()
    return {"videos": videos, "hours": round((seconds or 0) / 3600, 3)}


def label_cards(catalog: Catalog, limit: int) -> list[dict]:
    """The labels videos carry (as `vocabulary` lists them), each with the window that shows it best."""
    return [{**row, "window_id": catalog.best_window(row["label"])} for row in vocabulary(catalog, None, limit)]


@dataclass(frozen=True)
class Overview:
    """The library at a glance: its health, its newest videos and the labels it holds."""

    health: dict  # videos, hours, failed (files that could not be indexed)
    videos: VideoPage
    labels: list[dict]  # label, videos, window_id

    def to_json(self) -> dict:
        return {"health": self.health, **self.videos.to_json(), "labels": self.labels}
