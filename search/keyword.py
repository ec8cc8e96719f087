"""Keyword search: which labels (and file names) a query names, and the moments of those labels.

FTS5 only finds which labels and file names match the words; the windows of those labels are then
read best-first through the (label_id, score) index: FTS5 relevance ranking would score every
matching row, which is slow at a million windows. Labels also match by meaning, through the sentence
model (search.sentences), unless the query is a label's very name. Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vsearch.core.errors import BadInput
from vsearch.search.catalog import Catalog
from vsearch.search.hits import FILE_NAME_SCORE, Filters, Hit, SearchResult, existing, merge_hits, merge_moments

if TYPE_CHECKING:
    from vsearch.search.sentences import SentenceModel

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
    from vsearch.search import sentences

    model = sentences.load_sentence_model()
    if model is None:
        return None
    ids, matrix = label_matrix(catalog, model)
    return ids, matrix @ model.embed([text])[0]


def label_matrix(catalog: Catalog, model: SentenceModel) -> tuple[list[int], np.ndarray]:
    """Label-name embeddings: from the catalog, computed and stored on first use per vocabulary."""
    from vsearch.search import sentences

    stored = catalog.label_vectors(sentences.NAME)
    if stored is None:
        labels = catalog.labels()
        stored = [i for i, _ in labels], model.embed([n for _, n in labels])
        catalog.store_label_vectors(sentences.NAME, *stored)
    return stored


def windows_for_labels(
    catalog: Catalog, matches: Sequence[LabelMatch], filters: Filters, limit: int
) -> list[Hit]:
    """Moments of videos whose windows carry the matched labels, best first.

    Two steps keep this fast at a million windows: the videos with the best window of each label
    come straight off the (label_id, score) index of per-video labels, which ranks the
    (video, label) pairs; then only the winning pairs read their windows, so each moment gets its
    full extent.
    """
    where, args = filters.sql()
    best = max((m.similarity for m in matches), default=1.0)
    pairs: dict[tuple[int, int], float] = {}
    paths: dict[int, str] = {}
    # A window's label score counts as much as the label means the query; labels well below the
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
        windows = catalog.db.execute(
            # CROSS JOIN pins the order: this video's windows first, then one key lookup each.
            "SELECT c.idx, c.start, c.end, cl.score FROM windows c CROSS JOIN window_labels cl "
            "ON cl.window_id = c.id AND cl.label_id = ? WHERE c.video_id = ?",
            [lid, vid],
        ).fetchall()
        for start, end, score in merge_moments(windows):
            if score * weight_of[lid] >= filters.min_score:  # --min-score applies to the score shown
                hits.append(Hit(paths[vid], start, end, score * weight_of[lid], m.name,
                                "label" if m.similarity >= 0.9 else "text", score, m.similarity, vid, why=m.name))
    return hits



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
    return [Hit(path, 0.0, duration or 0.0, FILE_NAME_SCORE, None, "file name", None, None, vid, why="(file name)")
            for vid, path, duration in rows]



def names_a_label(catalog: Catalog, text: str) -> bool:
    """The query is a label's very name (any case): a search for it needs no model at all."""
    return catalog.db.execute("SELECT 1 FROM labels WHERE name = ? COLLATE NOCASE", [text.strip()]).fetchone() is not None


def label_hits(catalog: Catalog, text: str, filters: Filters, limit: int, semantic: bool = True
               ) -> tuple[list[Hit], bool | None]:
    """Moments of the labels the query names (exact, FTS5 words and prefixes, and by meaning), and
    whether matching by meaning was used (False: not needed, an exact name; None: no sentence model).

    An exact label name skips the sentence model altogether: the common case stays fast."""
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
    return windows_for_labels(catalog, list(matches.values()), filters, limit), used


def search(catalog: Catalog, text: str, limit: int = 20, filters: Filters | None = None, semantic: bool = True
           ) -> SearchResult:
    """Label names and file names, best first, one hit per moment. The library's search
    (vsearch.Index.search) asks every kind of evidence."""
    filters = filters or Filters()
    if not text.strip():
        raise BadInput("the query is empty")
    hits, used = label_hits(catalog, text, filters, limit, semantic)
    hits += file_name_hits(catalog, text, filters, limit)
    return SearchResult(existing(merge_hits(hits), limit), {"meaning": used})
