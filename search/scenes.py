"""What windows show: search the scene model's vectors by a description.

The scene model itself (model.scene) is not imported here: the caller embeds the query with its
text tower and passes the vector, the model's own cosine-to-score mapping and its floor, so the
storage layer stays free of torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vsearch.search.catalog import SCENES, Catalog
from vsearch.search.query import Filters, Hit, merge_moments
from vsearch.search.vectors import VectorIndex

CANDIDATES = 20  # windows looked at per hit asked for: a moment spans several, a video several moments


@dataclass
class SceneQuery:
    """A description, embedded: its vector, the model's cosine -> 0..1 relevance, and the floor
    below which a window does not show it (what a caption that says nothing scores)."""

    vector: np.ndarray  # (dim,) L2-normalised
    score: Callable[[np.ndarray], np.ndarray]
    floor: float


def scene_hits(catalog: Catalog, vectors: VectorIndex, query: SceneQuery, filters: Filters, limit: int) -> list[Hit]:
    """Moments whose windows show the description, best first, one or more per video.

    FAISS finds the windows nearest the description; each of their videos is then scored window by
    window, so a moment gets its whole extent (consecutive windows above the floor and at least half
    the video's best, as label moments are merged), not only the windows that made the cut."""
    if len(vectors) == 0:
        return []
    cosines, ids = vectors.search(query.vector[None], min(len(vectors), limit * CANDIDATES))
    floor = max(query.floor, filters.min_score)
    found = {int(i): float(s) for i, s in zip(ids[0], query.score(cosines[0])) if i >= 0 and s >= floor}
    if not found:
        return []
    where, args = filters.sql()
    best: dict[int, tuple[float, str]] = {}  # video id -> (its best window's score, path)
    clip_ids = list(found)
    for start in range(0, len(clip_ids), 500):
        part = clip_ids[start : start + 500]
        rows = catalog.db.execute(
            f"SELECT c.id, c.video_id, v.path FROM clips c CROSS JOIN videos v ON v.id = c.video_id "
            f"WHERE c.id IN ({','.join('?' * len(part))}) AND {where}", [*part, *args]).fetchall()
        for cid, vid, path in rows:
            if found[cid] > best.get(vid, (-1.0, ""))[0]:
                best[vid] = (found[cid], path)
    hits = []
    for vid, (_, path) in sorted(best.items(), key=lambda kv: -kv[1][0])[: limit + 5]:
        spans = catalog.clip_spans(vid)
        ids_here, vecs = catalog.vectors_of(SCENES, [cid for cid, _, _ in spans])
        scores = dict(zip(ids_here, query.score(vecs @ query.vector)))
        windows = [(i, s, e, float(scores[cid])) for i, (cid, s, e) in enumerate(spans) if scores.get(cid, 0.0) >= floor]
        for start_s, end_s, top in merge_moments(windows):
            hits.append(Hit(path, start_s, end_s, top, None, "scene", None, None, vid))
    return hits
