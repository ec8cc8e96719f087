"""One video, no index: classify it, or embed it so find-similar can compare it with the index.

These run the same decode workers and model path as `vsearch index`, so a file answers here as
it would once indexed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsearch.indexer.pipeline import embed_file, embed_windows
from vsearch.model.encoder import Encoder
from vsearch.model.scene import SceneEncoder
from vsearch.search.catalog import CLIPS, SCENES
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


def file_embedder(load: Callable[[], Encoder], sampling: Sampling | None = None,
                  load_scene: Callable[[], SceneEncoder] | None = None) -> FileEmbedder:
    """The `embed` that search.query.similar_to_file takes: it calls `load` (and `load_scene`, when
    the comparison is by what windows show too) on its first call only, so a query on an indexed file
    never pays for loading a model. `sampling` should be the index's own (Catalog.sampling), so
    windows line up with the stored ones."""
    loaded: list[tuple[Encoder, SceneEncoder | None]] = []

    def embed(path: str) -> tuple[list[tuple[float, float]], dict[str, np.ndarray]]:
        if not loaded:
            loaded.append((load(), load_scene() if load_scene is not None else None))
        encoder, scene = loaded[0]
        found = embed_windows(encoder, path, sampling, scene=scene)
        vectors = {CLIPS: found.embeddings}
        if found.scenes is not None:
            vectors[SCENES] = found.scenes
        return [(w.start, w.end) for w in found.windows], vectors

    return embed
