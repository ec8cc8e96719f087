"""What windows show: search the visual model's vectors by a description.

The visual model itself (model.visual) is not imported here: the caller embeds the query with its
text tower and passes the vector, the model's own cosine-to-score mapping, its floor and how close
to a video's best window a window must be to share its moment, so the storage layer stays free of
torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vsearch.search.catalog import VISUALS, Catalog
from vsearch.search.hits import Filters, Hit, best_per_video, merge_moments
from vsearch.search.vectors import VectorIndex

CANDIDATES = 20  # windows looked at per hit asked for: a moment spans several, a video several moments


@dataclass
class VisualQuery:
    """A description, embedded: its vector, the model's cosine -> 0..1 relevance, the floor below
    which a window does not show it (what a caption that says nothing scores), and the margin of
    cosine below a video's best window within which a window still belongs to its moment."""

    vector: np.ndarray  # (dim,) L2-normalised
    score: Callable[[np.ndarray], np.ndarray]
    floor: float
    margin: float


def visual_hits(catalog: Catalog, vectors: VectorIndex, query: VisualQuery, filters: Filters, limit: int) -> list[Hit]:
    """Moments whose windows show the description, best first, one or more per video.

    FAISS finds the windows nearest the description; each of their videos is then scored window by
    window, and a moment is a run of windows above the floor whose cosine is within the margin of
    the video's best: the span that shows the description, not every window that mentions it a
    little (a video whose picture changes mid-way answers with the half that shows it)."""
    if len(vectors) == 0:
        return []
    cosines, ids = vectors.search(query.vector[None], min(len(vectors), limit * CANDIDATES))
    floor = max(query.floor, filters.min_score)
    found = {int(i): float(s) for i, s in zip(ids[0], query.score(cosines[0])) if i >= 0 and s >= floor}
    hits = []
    for vid, (_, _, path) in sorted(best_per_video(catalog, found, filters).items(), key=lambda kv: -kv[1][1])[: limit + 5]:
        spans = catalog.window_spans(vid)
        ids_here, vecs = catalog.vectors_of(VISUALS, [cid for cid, _, _ in spans])
        cosines_here = vecs @ query.vector
        cos = dict(zip(ids_here, cosines_here.tolist()))
        shown = dict(zip(ids_here, query.score(cosines_here) >= floor))
        top = max(cos.values())
        windows = [(i, s, e, cos[cid]) for i, (cid, s, e) in enumerate(spans)
                   if cid in cos and shown[cid] and cos[cid] >= top - query.margin]
        for start_s, end_s, best in merge_moments(windows, floor=-1.0):
            hits.append(Hit(path, start_s, end_s, float(query.score(np.array([best]))[0]), None, "visuals", None, None, vid))
    return hits
