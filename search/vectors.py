"""The FAISS index over clip embeddings: derived data, rebuilt from SQLite whenever in doubt.

Vectors are L2-normalised, so inner product is cosine similarity. Ids are clip row ids. The file
is written atomically (temp file + rename) with a sidecar that records the catalog generation it
reflects; on open, a missing, stale or unreadable file is rebuilt from the embeddings in SQLite.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vsearch.core.home import Home
from vsearch.core.words import counted
from vsearch.search.catalog import CLIPS, SCENES, Catalog
from vsearch.search.doctor import Finding

# Exact search scans every vector: measured on 2 cores (vsearch bench --scale), a flat
# inner-product query over 768-d vectors takes ~3 ms at 20k clips and ~10 ms at 50k, growing
# linearly. Past EXACT_MAX clips the index becomes IVF with 8-bit scalar quantisation: a quarter
# of the memory, and a query probes NPROBE of its lists instead of scanning everything.
EXACT_MAX = 50_000
NPROBE = 48


def wanted_kind(count: int, current: str | None = None) -> str:
    """'flat' or 'ivf' for a catalog of `count` clips; hysteresis keeps it from flapping."""
    if current == "ivf" and count >= EXACT_MAX // 2:
        return "ivf"
    return "ivf" if count > EXACT_MAX else "flat"


def ivf_lists(count: int) -> int:
    return int(min(65536, max(256, 4 * math.sqrt(count))))


class VectorIndex:
    def __init__(self, dim: int, kind: str = "flat", lists: int = 0):
        import faiss

        self.dim, self.kind = dim, kind
        self.index: Any  # FAISS's SWIG classes: a flat IDMap2 or an IVF index, with no common typed base
        if kind == "flat":
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            self.quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFScalarQuantizer(
                self.quantizer, dim, lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            self.index.nprobe = NPROBE

    def set_nprobe(self, nprobe: int) -> None:
        """How many IVF lists a query visits: more finds more and takes longer (flat: no effect)."""
        if self.kind == "ivf":
            import faiss

            faiss.extract_index_ivf(self.index).nprobe = nprobe

    def train(self, sample: np.ndarray) -> None:
        if self.kind != "flat":
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: list[int]) -> None:
        if ids:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest clips for each query row; id -1 pads short answers."""
        k = max(1, min(k, len(self)))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, home: Path, generation: int, space: str = CLIPS) -> None:
        """Write the index under a fresh name, then switch the pointer file to it atomically.

        The pointer (vectors.json) names the index file and the catalog generation it reflects;
        one rename publishes both, so two processes saving at once can never pair one's index
        with the other's generation.
        """
        import faiss

        home.mkdir(parents=True, exist_ok=True)
        layout = Home.at(home)
        prefix = layout.vectors_prefix_of(space)
        name = f"{prefix}-{generation}-{secrets.token_hex(4)}.faiss"
        faiss.write_index(self.index, str(home / name))
        _write_json_atomic(layout.vectors_meta_of(space), {"file": name, "generation": generation, "count": len(self),
                                                            "dim": self.dim, "kind": self.kind})
        for old in home.glob(f"{prefix}-*.faiss"):  # earlier versions; a reader that has one open keeps it
            if old.name != name:
                try:
                    old.unlink()
                except OSError:
                    pass

    @classmethod
    def load(cls, home: Path, generation: int, dim: int, space: str = CLIPS) -> VectorIndex | None:
        """The saved index of a vector space if it matches this catalog generation, else None."""
        import faiss

        try:
            meta = json.loads(Home.at(home).vectors_meta_of(space).read_text())
            if meta.get("generation") != generation or meta.get("dim") != dim:
                return None
            raw = faiss.read_index(str(home / meta["file"]))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError):
            return None  # missing or corrupt: the caller rebuilds
        if raw.ntotal != meta.get("count") or raw.d != dim:
            return None
        index = cls.__new__(cls)
        index.dim, index.index, index.kind = dim, raw, meta.get("kind", "flat")
        index.set_nprobe(NPROBE)
        return index


def current_file(home: Path, space: str = CLIPS) -> Path | None:
    """The index file the pointer names, if any."""
    try:
        return home / json.loads(Home.at(home).vectors_meta_of(space).read_text())["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".meta-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def rebuild(catalog: Catalog, kind: str | None = None, space: str = CLIPS) -> VectorIndex:
    """A fresh index from the vectors in SQLite: exact while small, IVF once large."""
    count = catalog.clip_count(space)
    kind = kind or wanted_kind(count)
    dim = catalog.dim_of(space)
    if kind == "flat":
        index = VectorIndex(dim)
    else:
        lists = ivf_lists(count)
        index = VectorIndex(dim, "ivf", lists)
        # Train on an even sample across the catalog: 40 vectors per list, as FAISS advises.
        step = max(1, count // (40 * lists))
        sample = [vectors[::step] for _, vectors in catalog.iter_vectors(space=space)]
        index.train(np.concatenate(sample))
    for ids, vectors in catalog.iter_vectors(space=space):
        index.add(ids, vectors)
    return index


def open_vectors(catalog: Catalog, save: bool = True, space: str = CLIPS) -> tuple[VectorIndex, bool]:
    """The vector index of a space in step with the catalog; (index, rebuilt?)."""
    generation = catalog.generation
    loaded = VectorIndex.load(catalog.home, generation, catalog.dim_of(space), space)
    # The generation moves with every commit that adds or removes vectors, so a matching one means
    # the saved count is the catalog's: no need to count a million rows on every open.
    if loaded is not None and loaded.kind == wanted_kind(len(loaded), loaded.kind):
        return loaded, False
    index = rebuild(catalog, wanted_kind(catalog.clip_count(space), loaded.kind if loaded else None), space)
    if save:
        # Only the holder of the writer lock saves: a search that rebuilt while an index run
        # writes keeps its copy in memory rather than race the run's own save.
        with catalog.layout.writer_lock_if_free() as locked:
            if locked:
                try:
                    index.save(catalog.home, generation, space)
                except OSError:
                    pass  # a read-only index still answers from the rebuilt copy in memory
    return index, True


def check_vectors(catalog: Catalog, repair: bool = True, space: str = CLIPS) -> Finding:
    """Is the saved FAISS index of a space in step with SQLite? Rebuild and save it if not (for doctor)."""
    check = "faiss index" if space == CLIPS else "faiss scene index"
    if not catalog.dim_of(space):
        return Finding(check, True, "no vectors yet")
    loaded = VectorIndex.load(catalog.home, catalog.generation, catalog.dim_of(space), space)
    if loaded is not None and len(loaded) == catalog.clip_count(space):
        return Finding(check, True, f"{counted(len(loaded), 'vector')}, in step with SQLite")
    detail = "missing, stale or corrupt"
    if repair:
        rebuild(catalog, space=space).save(catalog.home, catalog.generation, space)
        detail += "; rebuilt from SQLite"
    return Finding(check, False, detail, repaired=repair)


def check_scene_vectors(catalog: Catalog, repair: bool = True) -> Finding:
    return check_vectors(catalog, repair, SCENES)
