"""Copies across a library: which videos share content, and the spans that match in both.

Exact copies (the same bytes) share their content hash and are found without a look at a frame.
Near copies (re-encoded, scaled, cropped, trimmed, an intro added, pieces joined) are found by a
fingerprint of each second of every video (evidence.copies): its luminance on an 8 x 8 grid, over
the whole frame and over its middle, mean taken out and scaled to unit length, so that a new
encoding, a new size or another brightness changes it little, and a copy cropped by 10% a side
shows as its source's middle. Seconds that show nothing (black, blank: too flat to have a layout)
are not fingerprinted, and a second too like the one before it (a still title card, a static shot)
says nothing new and asks nothing.

Finding them, in the way of the Video Similarity Challenge's baseline: every new second asks the
fingerprint index (FAISS) for its nearest seconds in other videos; the matches of one pair of videos
vote for the time offset between them, and a run of matches on one offset, at least MIN_SECONDS of
new seconds long, is a span they share. Two beach windows look alike to a visual model; they do not
repeat one another second by second at one offset, and a shared title card is one new second, never
three. A pair is "same" when its spans cover both videos, "contains" when they cover the shorter
one only (a trim, a window with an intro), else "part" (a piece of each: a montage).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vsearch.search.catalog import Catalog, from_blobs
from vsearch.search.hits import Hit
from vsearch.search.vectors import VectorIndex

MATCH = 0.9  # cosine of two seconds' fingerprints from which they may be the same picture
NEIGHBOURS = 8  # nearest seconds each new second asks for
MIN_SECONDS = 3  # new seconds a shared span needs: a title card or a fade is one
MIN_MEAN = 0.93  # mean cosine along a shared span
GAP = 4.0  # seconds without a match inside one shared span (skipped static seconds, a cut)
SLACK = 1.5  # seconds a match may stray from the span's offset (one second's sampling, frame rates)
COVERS = 0.85  # a span covering this much of a video covers it ("same" when both are covered)


@dataclass(frozen=True)
class Span:
    path: str
    start: float
    end: float
    video_id: int = field(default=0, compare=False)

    def to_json(self) -> dict:
        return {"path": self.path, "start": round(self.start, 2), "end": round(self.end, 2)}


@dataclass(frozen=True)
class CopyPair:
    """Two videos that share content: the span in each, how (same, contains: `a` contains `b`, part),
    and how sure (1.0 for the same bytes, else the mean cosine of the seconds matched)."""

    a: Span
    b: Span
    kind: str
    score: float

    def to_json(self) -> dict:
        return {"a": self.a.to_json(), "b": self.b.to_json(), "kind": self.kind, "score": round(self.score, 4)}


@dataclass
class CopyGroup:
    """An original and its copies, as a person decides about them: the original is the largest file
    of the group (the best encoding); `savings` are the bytes the copies take."""

    original: Span
    size: int
    copies: list[tuple[CopyPair, int]]  # each pair with the original (or with a copy of it) and the copy's size

    @property
    def savings(self) -> int:
        return sum(size for _, size in self.copies)

    def to_json(self) -> dict:
        return {"original": self.original.path, "size": self.size, "savings": self.savings,
                "copies": [{**pair.to_json(), "size": size} for pair, size in self.copies]}


@dataclass
class Duplicates:
    """What `vsearch duplicates` answers: every pair of videos that share content, and the pairs as
    groups for people (an original and its copies, the most bytes to free first)."""

    pairs: list[CopyPair]
    groups: list[CopyGroup]
    notes: list[str] = field(default_factory=list)  # what a person should know about the answer

    def to_json(self) -> dict:
        return {"pairs": [p.to_json() for p in self.pairs], "groups": [g.to_json() for g in self.groups]}


@dataclass
class Prints:
    """One video's fingerprints: the time of each fingerprinted second, its two regions' vectors, and
    which of its seconds are new (unlike the second before)."""

    times: np.ndarray  # (n,)
    whole: np.ndarray  # (n, d)
    middle: np.ndarray  # (n, d)
    new: np.ndarray  # (n,) bool


def exact_pairs(catalog: Catalog, videos: Iterable[int] | None = None) -> list[CopyPair]:
    """Videos with the same bytes (their content hash): copies without a look at a frame."""
    wanted = set(videos) if videos is not None else None
    # only the hashes of the videos asked about: a search asks for its hits', not the whole library's
    of_wanted = "" if wanted is None else \
        "AND content_hash IN (SELECT content_hash FROM videos WHERE id IN (SELECT value FROM json_each(?))) "
    rows = catalog.db.execute(
        "SELECT content_hash, id, path, duration FROM videos WHERE status = 'ok' AND content_hash IN "
        f"(SELECT content_hash FROM videos WHERE status = 'ok' {of_wanted}GROUP BY content_hash HAVING count(*) > 1) "
        "ORDER BY content_hash, id", [] if wanted is None else [json.dumps(sorted(wanted))]).fetchall()
    by_hash: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    for digest, vid, path, duration in rows:
        by_hash[digest].append((vid, path, duration or 0.0))
    pairs = []
    for same in by_hash.values():
        first = same[0]
        for other in same[1:]:
            if wanted is None or first[0] in wanted or other[0] in wanted:
                pairs.append(CopyPair(Span(first[1], 0.0, first[2], first[0]), Span(other[1], 0.0, other[2], other[0]),
                                      "same", 1.0))
    return pairs


def near_pairs(catalog: Catalog, index: VectorIndex, prints_of: Callable[[int], Prints],
               locate: Callable[[list[int]], dict[int, tuple[int, float]]], videos: Sequence[int],
               middles: bool = True) -> list[CopyPair]:
    """The videos that share content with any of `videos`, by their fingerprints (see the module
    docstring). `index` holds one region's fingerprints of the whole index, by print id; each new
    second of `videos` asks it with its whole frame's fingerprint and, with `middles`, its middle's;
    `prints_of` reads one video's; `locate` gives the (video, second) of print ids."""
    if len(index) == 0:
        return []
    votes: dict[tuple[int, int], list[tuple[float, float, float]]] = defaultdict(list)
    for vid in videos:
        mine = prints_of(vid)
        if not mine.new.any():
            continue
        asked = np.concatenate([mine.whole[mine.new], mine.middle[mine.new]]) if middles else mine.whole[mine.new]
        at = np.concatenate([mine.times[mine.new]] * (2 if middles else 1))
        cosines, ids = index.search(asked, min(NEIGHBOURS, len(index)))
        keep = (ids >= 0) & (cosines >= MATCH)
        if not keep.any():
            continue
        rows = locate(sorted({int(i) for i in ids[keep]}))
        for q, (row_ids, row_cos) in enumerate(zip(ids, cosines)):
            for i, c in zip(row_ids, row_cos):
                if i < 0 or c < MATCH or int(i) not in rows:
                    continue
                other, t = rows[int(i)]
                if other == vid:
                    continue
                a, b = (vid, other) if vid < other else (other, vid)
                ta, tb = (at[q], t) if vid < other else (t, at[q])
                votes[(a, b)].append((float(ta), float(tb), float(c)))
    voted = sorted({v for p in votes for v in p})
    videos_of = {vid: (path, duration or 0.0) for vid, path, duration in catalog.db.execute(
        f"SELECT id, path, duration FROM videos WHERE id IN ({','.join('?' * len(voted))})", voted)} if votes else {}
    pairs = []
    for (a, b), matches in votes.items():
        if a in videos_of and b in videos_of:
            pairs += _shared(matches, a, b, videos_of)
    return pairs


def _shared(matches: list[tuple[float, float, float]], a: int, b: int,
            videos: dict[int, tuple[str, float]]) -> list[CopyPair]:
    """The spans two videos share: runs of matches along one time offset (b's time - a's)."""
    pairs = []
    left = list(matches)
    while len(left) >= MIN_SECONDS:
        offsets = np.round([tb - ta for ta, tb, _ in left])
        values, where, counts = np.unique(offsets, return_inverse=True, return_counts=True)
        if counts.max() < MIN_SECONDS:
            break
        # votes weighed by how alike: where seconds look alike, the right offset matches best
        offset = float(values[np.argmax(np.bincount(where, weights=[c for _, _, c in left]))])
        on = sorted((m for m in left if abs(m[1] - m[0] - offset) <= SLACK), key=lambda m: m[0])
        left = [m for m in left if abs(m[1] - m[0] - offset) > SLACK]
        for run in _runs(on):
            seconds = {round(ta) for ta, _, _ in run}
            mean = float(np.mean([c for _, _, c in run]))
            if len(seconds) < MIN_SECONDS or mean < MIN_MEAN:
                continue
            (pa, da), (pb, db) = videos[a], videos[b]
            # One span in both videos, as long in each (a copy plays at the same speed): a's, moved by
            # the run's own offset. Each side's matches alone stray by up to SLACK, and on pictures
            # that hardly change (a lecture, a title) they stray to both ends of the other video.
            near = [tb - ta for ta, tb, _ in run if abs(tb - ta - offset) <= 0.5]
            shift = float(np.median(near)) if near else offset
            start = max(0.0, min(m[0] for m in run), -shift)
            end = min(da or 1e9, max(m[0] for m in run) + 1.0, (db or 1e9) - shift)
            span_a, span_b = Span(pa, start, end, a), Span(pb, start + shift, end + shift, b)
            pairs.append(_kind(span_a, da, span_b, db, mean))
    return _one_per_span(pairs)


def _runs(matches: list[tuple[float, float, float]]) -> list[list[tuple[float, float, float]]]:
    runs: list[list[tuple[float, float, float]]] = []
    for m in matches:
        if runs and m[0] - runs[-1][-1][0] <= GAP:
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _kind(a: Span, da: float, b: Span, db: float, score: float) -> CopyPair:
    covers_a = (a.end - a.start) >= COVERS * da if da else False
    covers_b = (b.end - b.start) >= COVERS * db if db else False
    if covers_a and covers_b:
        return CopyPair(a, b, "same", score)
    if covers_b:  # all of b is in a
        return CopyPair(a, b, "contains", score)
    if covers_a:
        return CopyPair(b, a, "contains", score)
    return CopyPair(a, b, "part", score)


def _one_per_span(pairs: list[CopyPair]) -> list[CopyPair]:
    """Spans of one pair that overlap (found along two offsets a second apart) are one."""
    kept: list[CopyPair] = []
    for p in sorted(pairs, key=lambda p: -(p.a.end - p.a.start)):
        if not any(k.a.video_id == p.a.video_id and min(k.a.end, p.a.end) > max(k.a.start, p.a.start)
                   and min(k.b.end, p.b.end) > max(k.b.start, p.b.start) for k in kept):
            kept.append(p)
    return kept


def groups(pairs: Sequence[CopyPair], sizes: dict[int, int]) -> list[CopyGroup]:
    """Pairs as groups for people: videos joined by "same" or "contains" pairs are one group, whose
    original is its largest file; each other member comes with the pair that ties it to the original
    (else to the group); the groups that would free the most bytes first. "part" pairs (a piece of
    each) stay pairs: neither video is a copy of the other."""
    parent: dict[int, int] = {}

    def root(v: int) -> int:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    whole = [p for p in pairs if p.kind in ("same", "contains")]
    for p in whole:
        parent[root(p.a.video_id)] = root(p.b.video_id)
    members: dict[int, set[int]] = defaultdict(set)
    paths: dict[int, str] = {}
    for p in whole:
        for s in (p.a, p.b):
            members[root(s.video_id)].add(s.video_id)
            paths[s.video_id] = s.path
    found = []
    for ids in members.values():
        original = max(ids, key=lambda v: (sizes.get(v, 0), -v))
        copies = []
        for v in sorted(ids - {original}):
            ties = [p for p in whole if v in (p.a.video_id, p.b.video_id)]
            link = next((p for p in ties if original in (p.a.video_id, p.b.video_id)), ties[0])
            copies.append((link, sizes.get(v, 0)))
        found.append(CopyGroup(Span(paths[original], 0.0, 0.0, original), sizes.get(original, 0), copies))
    return sorted(found, key=lambda g: -g.savings)


def fold_copies(hits: Sequence[Hit], pairs: Sequence[CopyPair]) -> list[Hit]:
    """Hits whose moment is the same moment of a copy of a video ranked above them folded into that
    hit (its details' `copies`): a search does not show one moment five times. A "part" pair folds
    only the shared piece; any hit of a video outside what it shares stays."""
    between: dict[frozenset[int], list[CopyPair]] = defaultdict(list)
    for p in pairs:
        between[frozenset((p.a.video_id, p.b.video_id))].append(p)
    kept: list[Hit] = []
    for h in hits:
        lead = next((k for k in kept if any(_same_moment(k, h, p) for p in between.get(
            frozenset((k.video_id, h.video_id)), ()))), None)
        if lead is None:
            kept.append(h)
        else:
            lead.details.setdefault("copies", []).append({"path": h.path, "start": round(h.start, 2),
                                                          "end": round(h.end, 2)})
    return kept


def _same_moment(kept: Hit, hit: Hit, pair: CopyPair) -> bool:
    """Whether `hit` shows, in its video, what `kept` shows in the other, through the pair's spans."""
    mine, theirs = (pair.a, pair.b) if pair.a.video_id == hit.video_id else (pair.b, pair.a)
    if hit.end <= mine.start or hit.start >= mine.end:
        return False
    shift = theirs.start - mine.start  # a second of hit's video is this much later in kept's
    if kept.end - kept.start <= 0 or hit.end - hit.start <= 0:  # whole-video hits (similar, file names)
        return True
    start, end = hit.start + shift, hit.end + shift
    return min(end, kept.end) - max(start, kept.start) > 0.5 * min(end - start, kept.end - kept.start)


def prints_from_rows(rows: Sequence[tuple[float, bytes, bytes]], dim: int, novelty: float) -> Prints:
    """A video's fingerprints from its rows (time, whole, middle), in time order; a second is new when
    its whole-frame fingerprint is less like the one before than `novelty`."""
    times = np.array([r[0] for r in rows], dtype=np.float64)
    whole = from_blobs([r[1] for r in rows], dim)
    middle = from_blobs([r[2] for r in rows], dim)
    new = np.ones(len(rows), dtype=bool)
    if len(rows) > 1:
        new[1:] = (whole[1:] * whole[:-1]).sum(axis=1) < novelty
    return Prints(times, whole, middle, new)
