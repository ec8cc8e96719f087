"""FAISS indexes over a vector space's vectors: derived data, rebuilt from SQLite whenever in doubt.

Vectors are L2-normalised, so inner product is cosine similarity. Ids are the space's ids (window
row ids for per-window spaces). The file is written atomically (temp file + rename) with a sidecar
that records the catalog generation it reflects; on open, a missing, stale or unreadable file is
rebuilt from the vectors in SQLite.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from vsearch.core.home import Home, write_json_atomic
from vsearch.core.words import counted
from vsearch.search.catalog import ACTIONS, Catalog, VectorSpace, from_blobs
from vsearch.search.doctor import Finding

# Exact search scans every vector: measured on 2 cores (vsearch bench --scale), a flat
# inner-product query over 768-d vectors takes ~3 ms at 20k windows and ~10 ms at 50k, growing
# linearly. Past EXACT_MAX windows the index becomes IVF with 8-bit scalar quantisation: a quarter
# of the memory, and a query probes NPROBE of its lists instead of scanning everything.
EXACT_MAX = 50_000
NPROBE = 48


def wanted_kind(count: int, current: str | None = None) -> str:
    """'flat' or 'ivf' for a catalog of `count` windows; hysteresis keeps it from flapping."""
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
        """(scores, ids) of the k nearest windows for each query row; id -1 pads short answers."""
        k = max(1, min(k, len(self)))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, home: Path, generation: int, space: VectorSpace = ACTIONS) -> None:
        """Write the index under a fresh name, then switch the pointer file to it atomically.

        The pointer (vectors.json) names the index file and the catalog generation it reflects;
        one rename publishes both, so two processes saving at once can never pair one's index
        with the other's generation.
        """
        import faiss

        home.mkdir(parents=True, exist_ok=True)
        layout = Home.at(home)
        prefix = layout.vectors_prefix_of(space.name)
        name = f"{prefix}-{generation}-{secrets.token_hex(4)}.faiss"
        faiss.write_index(self.index, str(home / name))
        write_json_atomic(layout.vectors_meta_of(space.name), {"file": name, "generation": generation, "count": len(self),
                                                            "dim": self.dim, "kind": self.kind})
        for old in home.glob(f"{prefix}-*.faiss"):  # earlier versions; a reader that has one open keeps it
            if old.name != name:
                try:
                    old.unlink()
                except OSError:
                    pass

    @classmethod
    def load(cls, home: Path, generation: int, dim: int, space: VectorSpace = ACTIONS) -> VectorIndex | None:
        """The saved index of a vector space if it matches this catalog generation, else None."""
        import faiss

        try:
            meta = json.loads(Home.at(home).vectors_meta_of(space.name).read_text())
            if meta.get("generation") != generation or meta.get("dim") != dim:
                return None
            raw = faiss.read_index(str(home / meta["file"]))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError):
            return None  # missing or corrupt: the caller rebuilds
        if raw.ntotal != meta.get("count") or raw.d != dim:
            return None
        return cls.wrap(raw, meta.get("kind", "flat"))

    @classmethod
    def wrap(cls, raw: Any, kind: str) -> VectorIndex:
        """An index around a FAISS index read from disk ("flat" or "ivf"), probing as a new one would."""
        index = cls.__new__(cls)
        index.dim, index.index, index.kind = raw.d, raw, kind
        index.set_nprobe(NPROBE)
        return index


def current_file(home: Path, space: VectorSpace = ACTIONS) -> Path | None:
    """The index file the pointer names, if any."""
    try:
        return home / json.loads(Home.at(home).vectors_meta_of(space.name).read_text())["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def rebuild(catalog: Catalog, kind: str | None = None, space: VectorSpace = ACTIONS) -> VectorIndex:
    """A fresh index from the vectors in SQLite: exact while small, IVF once large."""
    count = catalog.count(space)
    kind = kind or wanted_kind(count)
    dim = catalog.dim_of(space)
    if kind == "flat":
        index = VectorIndex(dim)
    else:
        lists = ivf_lists(count)
        index = VectorIndex(dim, "ivf", lists)
        # Train on an even sample across the catalog: 40 vectors per list, as FAISS advises.
        step = max(1, count // (40 * lists))
        sample = [vectors[::step] for _, vectors in catalog.iter_vectors(space)]
        index.train(np.concatenate(sample))
    for ids, vectors in catalog.iter_vectors(space):
        index.add(ids, vectors)
    return index


def open_vectors(catalog: Catalog, save: bool = True, space: VectorSpace = ACTIONS) -> tuple[VectorIndex, bool]:
    """The vector index of a space in step with the catalog; (index, rebuilt?)."""
    generation = catalog.generation
    loaded = VectorIndex.load(catalog.home, generation, catalog.dim_of(space), space)
    # The generation moves with every commit that adds or removes vectors, so a matching one means
    # the saved count is the catalog's: no need to count a million rows on every open.
    if loaded is not None and loaded.kind == wanted_kind(len(loaded), loaded.kind):
        return loaded, False
    index = rebuild(catalog, wanted_kind(catalog.count(space), loaded.kind if loaded else None), space)
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


def check_vectors(catalog: Catalog, space: VectorSpace, repair: bool = True) -> Finding:
    """Is the saved FAISS index of a space in step with SQLite? Rebuild and save it if not (for doctor)."""
    check = "faiss index" if space == ACTIONS else f"faiss index of {space.name}"
    if not catalog.dim_of(space):
        return Finding(check, True, "no vectors yet")
    loaded = VectorIndex.load(catalog.home, catalog.generation, catalog.dim_of(space), space)
    if loaded is not None and len(loaded) == catalog.count(space):
        return Finding(check, True, f"{counted(len(loaded), 'vector')}, in step with SQLite")
    detail = "missing, stale or corrupt"
    if repair:
        rebuild(catalog, space=space).save(catalog.home, catalog.generation, space)
        detail += "; rebuilt from SQLite"
    return Finding(check, False, detail, repaired=repair)


class KeptVectors:
    """A space's FAISS index kept in memory by a long-running reader (the web page, a notebook): as
    videos become searchable or leave, their vectors are added or removed, instead of the whole index
    being rebuilt from SQLite at every video an index run finishes. A one-off search only loads it."""

    def __init__(self, space: VectorSpace):
        self.space = space
        self.index: VectorIndex | None = None
        self.generation = -1
        self._ids_of: dict[int, list[int]] | None = None  # video id -> its ids in the index, from the first change

    def current(self, catalog: Catalog) -> VectorIndex:
        """The index in step with the catalog as it is now."""
        if self.index is None:
            self.generation = catalog.generation
            self.index = open_vectors(catalog, space=self.space)[0]
        elif catalog.generation != self.generation:
            catalog.db.execute("BEGIN")  # one snapshot of the catalog for the whole update (WAL)
            try:
                self._update(catalog)
            finally:
                catalog.db.execute("COMMIT")
        return self.index

    def _update(self, catalog: Catalog) -> None:
        self.generation = catalog.generation
        if self._ids_of is None:  # which video each vector belongs to: read with the index it describes
            self.index = rebuild(catalog, space=self.space)
            self._ids_of = self._by_video(catalog)
            return
        assert self.index is not None  # loaded by current() first
        ok = {r[0] for r in catalog.db.execute("SELECT id FROM videos WHERE status = 'ok'")}
        for vid in [vid for vid in self._ids_of if vid not in ok]:
            self.index.remove(self._ids_of.pop(vid))
        new = sorted(ok - self._ids_of.keys())
        for first in range(0, len(new), 500):
            part = new[first : first + 500]
            rows = catalog.db.execute(f"SELECT r.id, r.video_id, r.vector FROM ({self.space.rows}) r "
                                      f"WHERE r.video_id IN ({','.join('?' * len(part))})", part).fetchall()
            if rows:
                self.index.add([r[0] for r in rows], from_blobs([r[2] for r in rows], catalog.dim_of(self.space)))
                for cid, vid, _ in rows:
                    self._ids_of.setdefault(vid, []).append(cid)
        if len(self.index) != catalog.count(self.space):  # a video's vectors changed in place (a new model)
            self.index = rebuild(catalog, space=self.space)
            self._ids_of = self._by_video(catalog)

    def _by_video(self, catalog: Catalog) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for cid, vid in catalog.db.execute(f"SELECT r.id, r.video_id FROM ({self.space.rows}) r JOIN videos v "
                                           "ON v.id = r.video_id WHERE v.status = 'ok'"):
            found.setdefault(vid, []).append(cid)
        return found
