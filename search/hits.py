"""What every search answers with: hits (a video and a moment, and why it matched), the filters
every kind of evidence applies, and the one merge of moments across kinds.

A moment found by several kinds of evidence (its label, what it shows, what is said in it) is one
hit that says all of them: hits of one video merge when most of the shorter one lies inside the
other; the best-scoring one leads (its span is the hit's), the others come along in `also`, and the
score is the chance that at least one of them is right (1 - the product of their misses), so a
moment two kinds agree on ranks above one that only one kind found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from vsearch.search.catalog import Catalog

FILE_NAME_SCORE = 0.9  # a file named after the query is a strong hint, but below a sure label
SEARCH_MIN_SCORE = 0.05  # default floor of every front end: a label at 5% confidence is noise
SAME_MOMENT = 0.5  # two hits of one video are one moment when this much of the shorter is inside the other


@dataclass
class Filters:
    under: str | None = None  # only videos below this folder
    min_duration: float | None = None
    max_duration: float | None = None
    min_score: float = 0.0
    language: str | None = None  # only videos in which this language is spoken ("en", "de")

    def sql(self, alias: str = "v") -> tuple[str, list]:
        clauses, args = [f"{alias}.status = 'ok'"], []
        if self.under:
            given = os.path.abspath(os.path.expanduser(self.under))
            # the folder as named, or with its links resolved: `index` may have walked either
            a, b = (p.rstrip(os.sep) + os.sep for p in (given, os.path.realpath(given)))
            clauses.append(f"(substr({alias}.path, 1, ?) = ? OR substr({alias}.path, 1, ?) = ?)")
            args += [len(a), a, len(b), b]
        if self.min_duration is not None:
            clauses.append(f"{alias}.duration >= ?")
            args.append(self.min_duration)
        if self.max_duration is not None:
            clauses.append(f"{alias}.duration <= ?")
            args.append(self.max_duration)
        if self.language:
            clauses.append(f"{alias}.language = ?")
            args.append(self.language.strip().lower())
        return " AND ".join(clauses), args


@dataclass
class Hit:
    path: str
    start: float
    end: float
    score: float
    label: str | None = None
    match: str = "label"  # the kind of evidence that found it: label | text | file name | similar | visuals | ...
    label_score: float | None = None  # the model's confidence in `label` for the window
    query_similarity: float | None = None  # how well the query matches `label` (1 = exact)
    video_id: int = field(default=0, repr=False)
    why: str = ""  # what a person is told about it: the label, 'shows "a red car"', 'says "..."'
    # What the kind adds for a program: the quoted words of a speech hit ("said"), a language ...
    details: dict = field(default_factory=dict)
    also: list[Hit] = field(default_factory=list)  # other kinds' evidence for the same moment

    @property
    def reasons(self) -> list[str]:
        """What each kind of evidence that found the moment says about it, the best first, each once."""
        return list(dict.fromkeys(w for w in [self.why, *(a.why for a in self.also)] if w))

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("video_id", "details", "also")}
        data = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}
        data.update(self.details)
        if self.also:
            data["also"] = [h.to_json() for h in self.also]
        return data


@dataclass
class SearchResult:
    hits: list[Hit]
    # kind of matching -> True: used; False: not needed (the query names a label); None: not
    # available here ("meaning": labels by meaning, "visuals": by what windows show, ...)
    used: dict[str, bool | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a person should know about the answer

    @property
    def semantic(self) -> bool | None:
        return self.used.get("meaning")

    @property
    def visuals(self) -> bool | None:
        return self.used.get("visuals")

    @property
    def scenes(self) -> bool | None:
        """Deprecated: the name `visuals` had before."""
        return self.visuals


def merge_moments(
    windows: Iterable[tuple[int, float, float, float]], relative: float = 0.5, floor: float | None = None
) -> list[tuple[float, float, float]]:
    """Runs of consecutive windows that show something become one moment, scored by its best window.

    A window shows it when its score is at least `floor`, by default `relative` times the video's
    peak: a label merely in a window's top-k, far below its peak, splits moments.
    """
    windows = sorted(windows)
    if not windows:
        return []
    if floor is None:
        floor = relative * max(c[3] for c in windows)
    moments: list[tuple[float, float, float]] = []
    last_idx = None
    for idx, start, end, score in windows:
        if score < floor:
            continue
        if last_idx is not None and idx == last_idx + 1:
            s, _, best = moments[-1]
            moments[-1] = (s, end, max(best, score))
        else:
            moments.append((start, end, score))
        last_idx = idx
    return moments


def same_moment(a: Hit, b: Hit) -> bool:
    """Two hits of one video whose spans mostly overlap: what is said during a window that shows it is
    that window's moment. A file name names the whole video, not a moment: it merges with nothing."""
    if a.video_id != b.video_id or "file name" in (a.match, b.match):
        return False
    inter = min(a.end, b.end) - max(a.start, b.start)
    shorter = min(a.end - a.start, b.end - b.start)
    return inter > 0 and inter >= SAME_MOMENT * shorter


def merge_hits(hits: Sequence[Hit]) -> list[Hit]:
    """One hit per moment, best first: hits of one video whose spans mostly overlap merge into the best
    of them, the others in its `also`, its score raised by each other kind that agrees."""
    merged: list[Hit] = []
    for h in sorted(hits, key=lambda h: (-h.score, h.path, h.start)):
        lead = next((m for m in merged if same_moment(m, h)), None)
        if lead is None:
            merged.append(Hit(**{**h.__dict__, "also": list(h.also)}))
        else:
            lead.also.append(h)
    for m in merged:
        if m.also:
            m.score = agreement([m, *m.also])
    merged.sort(key=lambda h: (-h.score, h.path, h.start))
    return merged


def agreement(hits: Sequence[Hit]) -> float:
    """The score of a moment several kinds found: 1 - the product of each kind's best miss. Two
    labels of one kind do not add up; a label and what the moment shows do."""
    best: dict[str, float] = {}
    for h in hits:
        best[h.match] = max(best.get(h.match, 0.0), h.score)
    miss = 1.0
    for score in best.values():
        miss *= 1.0 - min(max(score, 0.0), 1.0)
    return 1.0 - miss


def best_per_video(catalog: Catalog, scores: dict[int, float], filters: Filters) -> dict[int, tuple[int, float, str]]:
    """Window id -> score as video id -> (its best window, that score, the video's path), for the videos the
    filters keep: the one chunked look-up behind every "best window of each video" answer."""
    where, args = filters.sql()
    best: dict[int, tuple[int, float, str]] = {}
    ids = list(scores)
    for first in range(0, len(ids), 500):
        part = ids[first : first + 500]
        rows = catalog.db.execute(
            # CROSS JOIN pins the order: the found windows by key, then their videos by key.
            f"SELECT c.id, c.video_id, v.path FROM windows c CROSS JOIN videos v ON v.id = c.video_id "
            f"WHERE c.id IN ({','.join('?' * len(part))}) AND {where}", [*part, *args]).fetchall()
        for cid, vid, path in rows:
            if vid not in best or scores[cid] > best[vid][1]:
                best[vid] = (cid, scores[cid], path)
    return best


def existing(hits: list[Hit], limit: int) -> list[Hit]:
    """Drop hits whose file was deleted since indexing (a stat per shown hit is cheap)."""
    out, checked = [], {}
    for h in hits:
        if h.path not in checked:
            checked[h.path] = os.path.exists(h.path)
        if checked[h.path]:
            out.append(h)
            if len(out) >= limit:
                break
    return out
