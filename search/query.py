"""Queries over the catalog: keyword search, find-similar, one video's labels, the vocabulary.

Keyword search uses FTS5 only to find which labels and file names match, then reads the clips
of those labels best-first through the (label_id, score) index: FTS5 relevance ranking would
score every matching row, which is slow at a million clips. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsearch.core.errors import BadInput, IndexMissing, NotIndexed
from vsearch.search.catalog import CLIPS, SCENES, Catalog
from vsearch.search.vectors import VectorIndex, open_vectors

if TYPE_CHECKING:
    from vsearch.search.text import TextModel

FILE_NAME_SCORE = 0.9  # a file named after the query is a strong hint, but below a sure label
SEARCH_MIN_SCORE = 0.05  # default floor of every front end: a label at 5% confidence is noise


@dataclass
class Filters:
    under: str | None = None  # only videos below this folder
    min_duration: float | None = None
    max_duration: float | None = None
    min_score: float = 0.0

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
        return " AND ".join(clauses), args


@dataclass
class Hit:
    path: str
    start: float
    end: float
    score: float
    label: str | None = None
    match: str = "label"  # label | text | file name | similar | scene
    label_score: float | None = None  # the model's confidence in `label` for the clip
    query_similarity: float | None = None  # how well the query matches `label` (1 = exact)
    video_id: int = field(default=0, repr=False)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("video_id")
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}


@dataclass(frozen=True)
class LabelMatch:
    label_id: int
    name: str
    similarity: float  # 1.0 exact, FTS matches a little less, semantic matches their cosine


def fts_query(text: str, prefix: bool = True) -> str | None:
    """User text -> a safe FTS5 query: every word quoted (so `NEAR`, `*`, `"` are literal), AND-ed."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    if prefix:
        quoted[-1] += "*"
    return " ".join(quoted)


def match_labels(catalog: Catalog, text: str) -> list[LabelMatch]:
    """Labels whose names match the words of the query: exact names first, then FTS5 matches."""
    db = catalog.db
    found: dict[int, LabelMatch] = {}
    for lid, name in db.execute("SELECT id, name FROM labels WHERE name = ? COLLATE NOCASE", [text.strip()]):
        found[lid] = LabelMatch(lid, name, 1.0)
    q = fts_query(text)
    if q:
        for lid, name in db.execute(
            "SELECT id, name FROM labels WHERE id IN (SELECT rowid FROM labels_fts WHERE labels_fts MATCH ?)", [q]
        ):
            if lid not in found:
                words = len(re.findall(r"\w+", name))
                asked = len(re.findall(r"\w+", text))
                # "spaghetti" matches "eating spaghetti" less well than "eating spaghetti" does
                found[lid] = LabelMatch(lid, name, 0.9 * min(1.0, asked / max(words, 1)) ** 0.5)
    return sorted(found.values(), key=lambda m: -m.similarity)


SEMANTIC_FLOOR = 0.35  # cosine below which a label is not what the user meant
SEMANTIC_SPREAD = 0.12  # labels this far below the best match are left out
SEMANTIC_TOP = 5


def semantic_matches(catalog: Catalog, text: str) -> list[LabelMatch] | None:
    """Labels whose names mean what the query means; None when no sentence model is installed."""
    ranked = label_similarities(catalog, text)
    if ranked is None:
        return None
    ids, sims = ranked
    if not ids:
        return []
    order = np.argsort(-sims)[:SEMANTIC_TOP]
    best = float(sims[order[0]])
    names = dict(catalog.labels())
    return [LabelMatch(ids[i], names[ids[i]], float(sims[i])) for i in order
            if sims[i] >= max(SEMANTIC_FLOOR, best - SEMANTIC_SPREAD)]


def label_similarities(catalog: Catalog, text: str) -> tuple[list[int], np.ndarray] | None:
    """(label ids, cosine of each label name with the text); None when no sentence model is installed."""
    from vsearch.search import text as sentence

    model = sentence.load_text_model()
    if model is None:
        return None
    ids, matrix = label_matrix(catalog, model)
    return ids, matrix @ model.embed([text])[0]


def label_matrix(catalog: Catalog, model: TextModel) -> tuple[list[int], np.ndarray]:
    """Label-name embeddings: from the catalog, computed and stored on first use per vocabulary."""
    from vsearch.search import text as sentence

    stored = catalog.label_vectors(sentence.NAME)
    if stored is None:
        labels = catalog.labels()
        stored = [i for i, _ in labels], model.embed([n for _, n in labels])
        catalog.store_label_vectors(sentence.NAME, *stored)
    return stored


def clips_for_labels(
    catalog: Catalog, matches: Sequence[LabelMatch], filters: Filters, limit: int
) -> list[Hit]:
    """Moments of videos whose clips carry the matched labels, best first.

    Two steps keep this fast at a million clips: the videos with the best clip of each label
    come straight off the (label_id, score) index of per-video labels, which ranks the
    (video, label) pairs; then only the winning pairs read their clips, so each moment gets its
    full extent.
    """
    where, args = filters.sql()
    best = max((m.similarity for m in matches), default=1.0)
    pairs: dict[tuple[int, int], float] = {}
    paths: dict[int, str] = {}
    # A clip's label score counts as much as the label means the query; labels well below the
    # best match fade fast, so a sure "gargling" does not outrank a likely "eating spaghetti"
    # for "slurping noodles".
    weight_of = {m.label_id: m.similarity * math.exp((m.similarity - best) / 0.05) for m in matches}
    for m in matches:
        # Per-video best scores, best first: one long video cannot crowd out the others.
        for vid, score, path in catalog.db.execute(
            "SELECT vl.video_id, vl.score, v.path FROM video_labels vl CROSS JOIN videos v ON v.id = vl.video_id "
            f"WHERE vl.label_id = ? AND vl.score >= ? AND {where} ORDER BY vl.score DESC LIMIT ?",
            [m.label_id, filters.min_score, *args, limit + 5],
        ):
            key = (vid, m.label_id)
            pairs[key] = max(pairs.get(key, 0.0), score * weight_of[m.label_id])
            paths[vid] = path
    label_of = {m.label_id: m for m in matches}
    hits = []
    # Each winning (video, label) pair gives at least one moment: a few spare cover min-score drops.
    for (vid, lid), _ in sorted(pairs.items(), key=lambda kv: -kv[1])[: limit + 5]:
        m = label_of[lid]
        clips = catalog.db.execute(
            # CROSS JOIN pins the order: this video's clips first, then one key lookup each.
            "SELECT c.idx, c.start, c.end, cl.score FROM clips c CROSS JOIN clip_labels cl "
            "ON cl.clip_id = c.id AND cl.label_id = ? WHERE c.video_id = ?",
            [lid, vid],
        ).fetchall()
        for start, end, score in merge_moments(clips):
            if score * weight_of[lid] >= filters.min_score:  # --min-score applies to the score shown
                hits.append(Hit(paths[vid], start, end, score * weight_of[lid], m.name,
                                "label" if m.similarity >= 0.9 else "text", score, m.similarity, vid))
    return hits


def merge_moments(
    clips: Iterable[tuple[int, float, float, float]], relative: float = 0.5
) -> list[tuple[float, float, float]]:
    """Runs of consecutive windows that show a label become one moment, scored by its best window.

    A window shows the label when its score is at least `relative` times the video's peak for
    that label: a label that is merely in a window's top-k, far below its peak, splits moments.
    """
    clips = sorted(clips)
    if not clips:
        return []
    floor = relative * max(c[3] for c in clips)
    moments: list[tuple[float, float, float]] = []
    last_idx = None
    for idx, start, end, score in clips:
        if score < floor:
            continue
        if last_idx is not None and idx == last_idx + 1:
            s, _, best = moments[-1]
            moments[-1] = (s, end, max(best, score))
        else:
            moments.append((start, end, score))
        last_idx = idx
    return moments


def file_name_hits(catalog: Catalog, text: str, filters: Filters, limit: int) -> list[Hit]:
    q = fts_query(text)
    if not q:
        return []
    where, args = filters.sql()
    # The FTS lookup runs first, on its own: joined, SQLite may probe the FTS table once per video.
    rows = catalog.db.execute(
        "SELECT v.id, v.path, v.duration FROM videos v "
        f"WHERE v.id IN (SELECT rowid FROM videos_fts WHERE videos_fts MATCH ?) AND {where} LIMIT ?",
        [q, *args, limit],
    ).fetchall()
    return [Hit(path, 0.0, duration or 0.0, FILE_NAME_SCORE, None, "file name", None, None, vid)
            for vid, path, duration in rows]


@dataclass
class SearchResult:
    hits: list[Hit]
    semantic: bool | None  # True: matched by meaning too; False: exact label, not needed; None: no model
    scenes: bool | None = None  # True: by what windows show too; False: not needed; None: no scene model


def names_a_label(catalog: Catalog, text: str) -> bool:
    """The query is a label's very name (any case): a search for it needs no model at all."""
    return catalog.db.execute("SELECT 1 FROM labels WHERE name = ? COLLATE NOCASE", [text.strip()]).fetchone() is not None


def search(
    catalog: Catalog,
    text: str,
    limit: int = 20,
    filters: Filters | None = None,
    semantic: bool = True,
    more: Sequence[Hit] = (),
) -> SearchResult:
    """Label names (exact, FTS5 words and prefixes, and by meaning) and file names, best first, with
    `more` hits the caller found by other means (scene matches) ranked among them.

    An exact label name skips the sentence model altogether: the common case stays fast.
    """
    filters = filters or Filters()
    if not text.strip():
        raise BadInput("the query is empty")
    literal = match_labels(catalog, text)
    used: bool | None = False
    matches: dict[int, LabelMatch] = {}
    if semantic and not any(m.similarity == 1.0 for m in literal):
        found = semantic_matches(catalog, text)
        used = None if found is None else True
        matches = {m.label_id: m for m in found or []}
    for m in literal:  # a literal match beats a semantic one for the same label
        if m.label_id not in matches or matches[m.label_id].similarity < m.similarity:
            matches[m.label_id] = m
    hits = clips_for_labels(catalog, list(matches.values()), filters, limit)
    hits += file_name_hits(catalog, text, filters, limit)
    hits += more
    hits.sort(key=lambda h: (-h.score, h.path, h.start))
    return SearchResult(_existing(hits, limit), used)


def _existing(hits: list[Hit], limit: int) -> list[Hit]:
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


def similar(
    catalog: Catalog,
    vectors: VectorIndex,
    queries: np.ndarray,
    exclude_video: int | None = None,
    limit: int = 10,
    filters: Filters | None = None,
) -> list[Hit]:
    """Videos whose clips are nearest to any query clip, one hit per video at its best moment."""
    if len(vectors) == 0:
        return []
    excluded = 0
    if exclude_video is not None:
        excluded = catalog.db.execute("SELECT count(*) FROM clips WHERE video_id = ?", [exclude_video]).fetchone()[0]
    k = min(len(vectors), limit * 8 + excluded)
    scores, ids = vectors.search(queries, k)
    best: dict[int, float] = {}
    for row_scores, row_ids in zip(scores, ids):
        for s, i in zip(row_scores, row_ids):
            if i >= 0 and s > best.get(int(i), -2.0):
                best[int(i)] = float(s)
    return hits_for_clips(catalog, best, exclude_video, limit, filters)


def hits_for_clips(catalog: Catalog, best: dict[int, float], exclude_video: int | None = None, limit: int = 10,
                   filters: Filters | None = None) -> list[Hit]:
    """Clip id -> score as one "similar" hit per video, at its best clip, best first."""
    filters = filters or Filters()
    if not best:
        return []
    where, args = filters.sql()
    by_video: dict[int, Hit] = {}
    ordered = sorted(best.items(), key=lambda kv: -kv[1])
    for start in range(0, len(ordered), 500):
        part = ordered[start : start + 500]
        marks = ",".join("?" * len(part))
        rows = catalog.db.execute(
            # CROSS JOIN pins the order: the found clips by key, then their videos by key.
            f"SELECT c.id, c.video_id, c.start, c.end, v.path FROM clips c CROSS JOIN videos v "
            f"ON v.id = c.video_id WHERE c.id IN ({marks}) AND {where}",
            [i for i, _ in part] + args,
        ).fetchall()
        for cid, vid, s, e, path in rows:
            score = best[cid]
            if vid == exclude_video or score < filters.min_score:
                continue
            if vid not in by_video or by_video[vid].score < score:
                by_video[vid] = Hit(path, s, e, score, None, "similar", None, None, vid)
    hits = sorted(by_video.values(), key=lambda h: (-h.score, h.path))
    return _existing(hits, limit)


@dataclass
class Probe:
    """One vector space's part of a find-similar: its FAISS index and the query windows' vectors."""

    space: str  # CLIPS (what happens) or SCENES (what is seen)
    vectors: VectorIndex
    queries: np.ndarray  # (windows, dim) L2-normalised


def nearest_clips(catalog: Catalog, probes: list[Probe], exclude_video: int | None, limit: int) -> dict[int, float]:
    """Clip id -> how like the query it is: the best cosine with any query window, in each space,
    averaged over the spaces. With one space, FAISS's own scores; with two, the candidates either
    space found are scored exactly in both (a clip near in one space only is not near overall)."""
    excluded = 0
    if exclude_video is not None:
        excluded = catalog.db.execute("SELECT count(*) FROM clips WHERE video_id = ?", [exclude_video]).fetchone()[0]
    found: dict[int, float] = {}
    for probe in probes:
        if len(probe.vectors) == 0:
            continue
        scores, ids = probe.vectors.search(probe.queries, min(len(probe.vectors), limit * 8 + excluded))
        for row_scores, row_ids in zip(scores, ids):
            for s, i in zip(row_scores, row_ids):
                if i >= 0 and s > found.get(int(i), -2.0):
                    found[int(i)] = float(s)
    if len(probes) < 2 or not found:
        return found
    candidates = sorted(found)
    total = dict.fromkeys(candidates, 0.0)
    for probe in probes:
        have, vecs = catalog.vectors_of(probe.space, candidates)
        best = (vecs @ probe.queries.T).max(axis=1) if have else np.zeros(0)
        for i, s in zip(have, best):
            total[i] += float(s) / len(probes)
    return total


# A video file -> (its window spans in seconds, and per vector space one L2-normalised vector per window).
FileEmbedder = Callable[[str], tuple[list[tuple[float, float]], dict[str, np.ndarray]]]


def similar_to_file(
    catalog: Catalog,
    path: str | Path,
    at: float | None = None,
    limit: int = 10,
    filters: Filters | None = None,
    embed: FileEmbedder | None = None,
    vectors: Mapping[str, VectorIndex] | None = None,
    spaces: Sequence[str] = (CLIPS,),
) -> list[Hit]:
    """Videos with moments like this file (or like its window at `at` seconds), one hit per video,
    by what happens in them (CLIPS), what they show (SCENES), or both.

    An indexed file is compared by its stored vectors, without a model, and left out of its own
    results; any other file is embedded on the fly by `embed` (indexer.one_file.file_embedder
    builds one), whose own errors (DecodeError for a file that cannot be read) reach the caller.
    A long-running caller (the web server) passes the vector indexes it keeps in memory.
    """
    if catalog.is_empty():
        raise IndexMissing("the index is empty; run `vsearch index FOLDER` first")
    if SCENES in spaces and not catalog.scene_model:
        raise BadInput("this index has no scene vectors (it was made without a text model): index again with "
                       "--text-model, or compare by what happens (--by action)")
    located = locate(catalog, path)
    row = catalog.video(located)
    exclude: int | None = None
    if row is not None and row.status == "ok":
        exclude = row.id
        ids, clips, spans = catalog.clip_vectors(row.id)
        queries = {CLIPS: clips}
        if SCENES in spaces:
            with_scene, scenes = catalog.vectors_of(SCENES, ids)
            if len(with_scene) < len(ids):
                raise BadInput(f"{located} has no scene vectors yet: run `vsearch index` to give it some")
            queries[SCENES] = scenes
    elif embed is None:
        raise NotIndexed(f"{located} is not indexed, and no model was given to embed it")
    else:
        spans, queries = embed(located)
    if at is not None:
        window = pick_window(spans, at)
        queries = {space: q[[window]] for space, q in queries.items()}
    given = dict(vectors or {})
    probes = [Probe(space, given[space] if space in given else open_vectors(catalog, space=space)[0], queries[space])
              for space in spaces]
    if len(probes) == 1:
        return similar(catalog, probes[0].vectors, probes[0].queries, exclude, limit, filters)
    return hits_for_clips(catalog, nearest_clips(catalog, probes, exclude, limit), exclude, limit, filters)


def pick_window(spans: Sequence[tuple[float, float]], at: float) -> int:
    """Index of the window that contains `at`, else the nearest one."""
    for i, (s, e) in enumerate(spans):
        if s <= at < e:
            return i
    return int(np.argmin([min(abs(at - s), abs(at - e)) for s, e in spans]))


@dataclass
class VideoLabels:
    path: str
    status: str
    error: str | None
    duration: float | None
    labels: list[tuple[str, float]]  # per video, best first
    clips: list[dict]  # per window: start, end, labels

    def to_json(self) -> dict:
        return {"path": self.path, "status": self.status, "error": self.error, "duration": self.duration,
                "labels": [{"label": n, "score": round(s, 4)} for n, s in self.labels], "clips": self.clips}


def show(catalog: Catalog, path: str, top: int = 3) -> VideoLabels:
    row = catalog.video(locate(catalog, path))
    if row is None:
        raise NotIndexed(f"{path} is not in the index")
    video_labels = catalog.db.execute(
        "SELECT l.name, vl.score FROM video_labels vl JOIN labels l ON l.id = vl.label_id "
        "WHERE vl.video_id = ? ORDER BY vl.score DESC LIMIT ?",
        [row.id, top * 2],
    ).fetchall()
    clips = []
    for cid, start, end in catalog.db.execute(
        "SELECT id, start, end FROM clips WHERE video_id = ? ORDER BY idx", [row.id]
    ).fetchall():
        labels = catalog.db.execute(
            "SELECT l.name, cl.score FROM clip_labels cl JOIN labels l ON l.id = cl.label_id "
            "WHERE cl.clip_id = ? ORDER BY cl.score DESC LIMIT ?",
            [cid, top],
        ).fetchall()
        clips.append({"start": start, "end": end, "labels": [{"label": n, "score": round(s, 4)} for n, s in labels]})
    return VideoLabels(row.path, row.status, row.error, row.duration, [(n, s) for n, s in video_labels], clips)


def stats(catalog: Catalog) -> dict:
    """What is in the index (Catalog.stats), and which files failed and why."""
    return {**catalog.stats(), "failures": [{"path": p, "reason": r} for p, r in catalog.failures()]}


def vocabulary(catalog: Catalog, text: str | None = None, limit: int = 50) -> list[dict]:
    """Labels that videos carry (the best label of at least one of their clips), with video counts.

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
                "AND v.status = 'ok' WHERE vl.top_clips > 0 GROUP BY vl.label_id").fetchall())
            return [{"label": names[ids[i]], "videos": counts.get(ids[i], 0), "similarity": round(float(sims[i]), 4)}
                    for i in order]
    base = (
        "SELECT l.name, count(DISTINCT vl.video_id) AS n FROM labels l "
        "JOIN video_labels vl ON vl.label_id = l.id AND vl.top_clips > 0 "
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
    clip_id: int | None  # the window whose thumbnail stands for the video
    clip_start: float | None  # where that window starts, in seconds

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
        "WHERE vl.video_id = ? AND vl.score >= ? AND vl.top_clips > 0 ORDER BY vl.top_clips DESC, vl.score DESC LIMIT 1",
        [video_id, MOMENT_FLOOR],
    ).fetchone()
    if found is not None:
        picture = catalog.db.execute(
            "SELECT c.id, c.start FROM clips c CROSS JOIN clip_labels cl ON cl.clip_id = c.id AND cl.label_id = ? "
            "WHERE c.video_id = ? ORDER BY cl.score DESC, c.idx LIMIT 1", [found[0], video_id]).fetchone()
    else:
        picture = catalog.db.execute(
            "SELECT id, start FROM clips WHERE video_id = ? AND idx >= "
            "(SELECT max(idx) FROM clips WHERE video_id = ?) / 2 ORDER BY idx LIMIT 1", [video_id, video_id]).fetchone()
    clip_id, clip_start = picture if picture is not None else (None, None)
    return VideoCard(video_id, path, duration, indexed_at, found[1] if found else None, clip_id, clip_start)


@dataclass(frozen=True)
class Moment:
    """A stretch of a video's timeline: adjacent windows whose best label is the same."""

    start: float
    end: float
    label: str
    score: float  # the label's score in its best window
    clip_id: int  # the moment's first window: its thumbnail is where the moment starts
    kind: str = "label"  # what found the stretch; "label": the model's own labels

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
    first_clip: dict[float, int] = {}  # a window's start -> its clip id
    for cid, idx, start, end, name, score in catalog.db.execute(
        # each window's labels best first (ties by name, so the strip never flickers between runs)
        "SELECT c.id, c.idx, c.start, c.end, l.name, cl.score FROM clips c JOIN clip_labels cl ON cl.clip_id = c.id "
        "JOIN labels l ON l.id = cl.label_id WHERE c.video_id = ? ORDER BY c.idx, cl.score DESC, l.name",
        [video_id],
    ):
        if start in first_clip:
            continue  # not this window's best label
        first_clip[start] = cid
        if score >= floor:
            by_label.setdefault(name, []).append((idx, start, end, score))
    # relative=0: every window whose best label this is belongs to a moment of it
    moments = [Moment(s, e, name, score, first_clip[s]) for name, windows in by_label.items()
               for s, e, score in merge_moments(windows, relative=0.0)]
    moments.sort(key=lambda m: m.start)
    return VideoMoments(row.id, row.path, row.status, row.error, row.duration, [(n, s) for n, s in labels], moments)


def library_size(catalog: Catalog) -> dict:
    """How many videos can be searched, and how many hours they play."""
    videos, seconds = catalog.db.execute("SELECT count(*), sum(duration) FROM videos WHERE status = 'ok'").fetchone()
    return {"videos": videos, "hours": round((seconds or 0) / 3600, 3)}


def label_cards(catalog: Catalog, limit: int) -> list[dict]:
    """The labels videos carry (as `vocabulary` lists them), each with the clip that shows it best."""
    return [{**row, "clip_id": catalog.best_clip(row["label"])} for row in vocabulary(catalog, None, limit)]


@dataclass(frozen=True)
class Overview:
    """The library at a glance: its health, its newest videos and the labels it holds."""

    health: dict  # videos, hours, failed (files that could not be indexed)
    videos: VideoPage
    labels: list[dict]  # label, videos, clip_id

    def to_json(self) -> dict:
        return {"health": self.health, **self.videos.to_json(), "labels": self.labels}
