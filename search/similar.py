"""Find-similar: videos with moments like a file, or like one of its windows, in one or more
vector spaces (what happens, what it shows). Nothing here imports torch: a file outside the index
is embedded by a callable the caller passes in (indexer.one_file.file_embedder builds one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsearch.core.errors import BadInput, IndexMissing, NotIndexed
from vsearch.search.browse import locate
from vsearch.search.catalog import ACTIONS, Catalog, VectorSpace
from vsearch.search.hits import Filters, Hit, best_per_video, existing
from vsearch.search.vectors import VectorIndex, open_vectors

# A video file -> (its window spans in seconds, and per vector space one L2-normalised vector per window).
FileEmbedder = Callable[[str], tuple[list[tuple[float, float]], dict[str, np.ndarray]]]
# A vector space -> its FAISS index in step with the catalog (the library keeps them, see Index.vectors).
Vectors = Callable[[VectorSpace], VectorIndex]


@dataclass
class Probe:
    """One vector space's part of a find-similar: its FAISS index and the query windows' vectors."""

    space: VectorSpace
    vectors: VectorIndex
    queries: np.ndarray  # (windows, dim) L2-normalised


def nearest_windows(catalog: Catalog, probes: list[Probe], exclude_video: int | None, limit: int) -> dict[int, float]:
    """Window id -> how like the query it is: the best cosine with any query window, in each space,
    averaged over the spaces. With one space, FAISS's own scores; with two, the candidates either
    space found are scored exactly in both (a window near in one space only is not near overall)."""
    excluded = 0
    if exclude_video is not None:
        excluded = catalog.db.execute("SELECT count(*) FROM windows WHERE video_id = ?", [exclude_video]).fetchone()[0]
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


def hits_for_windows(catalog: Catalog, scores: dict[int, float], exclude_video: int | None = None, limit: int = 10,
                   filters: Filters | None = None) -> list[Hit]:
    """Window id -> score as one "similar" hit per video, at its best window, best first."""
    filters = filters or Filters()
    kept = {cid: s for cid, s in scores.items() if s >= filters.min_score}
    spans: dict[int, tuple[float, float]] = {}
    best = best_per_video(catalog, kept, filters)
    if exclude_video is not None:
        best.pop(exclude_video, None)
    if best:
        marks = ",".join("?" * len(best))
        spans = {cid: (s, e) for cid, s, e in catalog.db.execute(
            f"SELECT id, start, end FROM windows WHERE id IN ({marks})", [cid for cid, _, _ in best.values()])}
    hits = [Hit(path, *spans[cid], score, None, "similar", None, None, vid, why="(similar)")
            for vid, (cid, score, path) in best.items()]
    return existing(sorted(hits, key=lambda h: (-h.score, h.path)), limit)


def similar_to_file(
    catalog: Catalog,
    path: str | Path,
    spaces: Sequence[VectorSpace] = (ACTIONS,),
    vectors: Vectors | None = None,
    at: float | None = None,
    limit: int = 10,
    filters: Filters | None = None,
    embed: FileEmbedder | None = None,
) -> list[Hit]:
    """Videos with moments like this file (or like its window at `at` seconds), one hit per video, in
    these vector spaces (their scores averaged). `vectors` gives each space's FAISS index (a
    long-running caller keeps them); by default they are opened from the index folder.

    An indexed file is compared by its stored vectors, without a model, and left out of its own
    results; any other file is embedded on the fly by `embed`, whose own errors (DecodeError for a
    file that cannot be read) reach the caller.
    """
    if vectors is None:
        vectors = lambda space: open_vectors(catalog, space=space)[0]  # noqa: E731
    if catalog.is_empty():
        raise IndexMissing("the index is empty; run `vsearch index FOLDER` first")
    located = locate(catalog, path)
    row = catalog.video(located)
    exclude: int | None = None
    if row is not None and row.status == "ok":
        exclude = row.id
        windows = catalog.window_spans(row.id)
        ids, spans = [w[0] for w in windows], [(start, end) for _, start, end in windows]
        queries = {}
        for space in spaces:
            have, queries[space.name] = catalog.vectors_of(space, ids)
            if len(have) < len(ids):
                raise BadInput(f"{located} has no {space.name} vectors yet: run `vsearch index` to give it some")
    elif embed is None:
        raise NotIndexed(f"{located} is not indexed, and no model was given to embed it")
    else:
        spans, queries = embed(located)
    if at is not None:
        window = pick_window(spans, at)
        queries = {name: q[[window]] for name, q in queries.items()}
    probes = [Probe(space, vectors(space), queries[space.name]) for space in spaces]
    return hits_for_windows(catalog, nearest_windows(catalog, probes, exclude, limit), exclude, limit, filters)


def pick_window(spans: Sequence[tuple[float, float]], at: float) -> int:
    """Index of the window that contains `at`, else the nearest one."""
    for i, (s, e) in enumerate(spans):
        if s <= at < e:
            return i
    return int(np.argmin([min(abs(at - s), abs(at - e)) for s, e in spans]))
