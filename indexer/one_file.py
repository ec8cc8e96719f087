"""One video, no index: classify it, or embed it so find-similar can compare it with the index.

These run the same decode workers and model path as `vsearch index`, so a file answers here as
it would once indexed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsearch.indexer.pipeline import embed_file
from vsearch.model.encoder import Encoder
from vsearch.search.query import FileEmbedder
from vsearch.video.decode import Sampling


@dataclass(frozen=True)
class Classification:
    path: str  # as the caller named it
    labels: list[tuple[str, float]]  # best first; probabilities averaged over the windows

    def to_json(self) -> dict:
        return {"path": self.path, "labels": [{"label": n, "score": round(s, 4)} for n, s in self.labels]}


def classify(encoder: Encoder, path: str | Path, top: int = 5) -> Classification:
    """The `top` labels of one video: the model's probabilities averaged over all its windows.

    Raises DecodeError with the reason when the file cannot be read.
    """
    _, probs, _ = embed_file(encoder, str(Path(path).resolve()))
    mean = probs.mean(axis=0)
    order = mean.argsort()[::-1][:top]
    return Classification(str(path), [(encoder.labels[i], float(mean[i])) for i in order])


def file_embedder(load: Callable[[], Encoder], sampling: Sampling | None = None) -> FileEmbedder:
    """The `embed` that search.query.similar_to_file takes: it calls `load` for the model on its first
    call only, so a query on an indexed file never pays for loading one. `sampling` should be the
    index's own (Catalog.sampling), so windows line up with the stored ones."""
    loaded: list[Encoder] = []

    def embed(path: str) -> tuple[list[tuple[float, float]], np.ndarray]:
        if not loaded:
            loaded.append(load())
        windows, _, embeddings = embed_file(loaded[0], path, sampling)
        return [(w.start, w.end) for w in windows], embeddings

    return embed
