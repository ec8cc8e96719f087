"""One video, no index: classify it, or embed it so find-similar can compare it with the index.

These run the same decode workers and model path as `vsearch index`, so a file answers here as
it would once indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vsearch.core.errors import DecodeError
from vsearch.evidence.base import WindowModel
from vsearch.model.encoder import Encoder
from vsearch.search.catalog import ACTIONS
from vsearch.search.similar import FileEmbedder
from vsearch.video.decode import Sampling, Window
from vsearch.video.workers import Chunk, DecodePool, DecodeSettings, Failed


@dataclass(frozen=True)
class Classification:
    path: str  # as the caller named it
    labels: list[tuple[str, float]]  # best first; probabilities averaged over the windows

    def to_json(self) -> dict:
        return {"path": self.path, "labels": [{"label": n, "score": round(s, 4)} for n, s in self.labels]}


@dataclass
class FileVectors:
    """One file's windows and what the models made of each: label probabilities, window embeddings,
    and each other window model's vectors, by the name it was given under."""

    windows: list[Window]
    probs: np.ndarray
    embeddings: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


def embed_windows(encoder: Encoder, path: str, sampling: Sampling | None = None, timeout: float = 120.0,
                  models: Mapping[str, WindowModel] | None = None) -> FileVectors:
    """Decode one file (in a worker, like indexing) and run the models on all its windows.

    Raises DecodeError with the reason for a bad file."""
    models = dict(models or {})
    settings = DecodeSettings(spec=encoder.frame_spec, sampling=sampling or Sampling(), timeout=timeout,
                              sides=tuple((name, m.frame_spec) for name, m in models.items()))
    windows: list[Window] = []
    probs, embs = [], []
    values: dict[str, list[np.ndarray]] = {name: [] for name in models}
    with DecodePool(settings) as pool:
        for event in pool.run([(0, path)]):
            if isinstance(event, Failed):
                raise DecodeError(f"{path}: {event.reason}")
            if isinstance(event, Chunk):
                p, e = encoder.encode(event.frames)
                windows += event.windows
                probs.append(p)
                embs.append(e)
                for name, model in models.items():
                    values[name].append(model.embed_frames(event.sides[name]))
    return FileVectors(windows, np.concatenate(probs), np.concatenate(embs),
                       {name: np.concatenate(v) for name, v in values.items() if v})


def classify(encoder: Encoder, path: str | Path, top: int = 5) -> Classification:
    """The `top` labels of one video: the model's probabilities averaged over all its windows.

    Raises DecodeError with the reason when the file cannot be read.
    """
    probs = embed_windows(encoder, str(Path(path).resolve())).probs
    mean = probs.mean(axis=0)
    order = mean.argsort()[::-1][:top]
    return Classification(str(path), [(encoder.labels[i], float(mean[i])) for i in order])


def file_embedder(load: Callable[[], Encoder], sampling: Sampling | None = None,
                  spaces: Mapping[str, Callable[[], WindowModel]] | None = None) -> FileEmbedder:
    """The `embed` that search.similar.similar_to_file takes: it calls `load` (and the loaders of the
    other vector spaces compared, by space name) on its first call only, so a query on an indexed file
    never pays for loading a model. `sampling` should be the index's own (Catalog.sampling), so
    windows line up with the stored ones."""
    loaded: list[tuple[Encoder, dict[str, WindowModel]]] = []

    def embed(path: str) -> tuple[list[tuple[float, float]], dict[str, np.ndarray]]:
        if not loaded:
            loaded.append((load(), {name: loader() for name, loader in (spaces or {}).items()}))
        encoder, models = loaded[0]
        found = embed_windows(encoder, path, sampling, models=models)
        return [(w.start, w.end) for w in found.windows], {ACTIONS.name: found.embeddings, **found.values}

    return embed
