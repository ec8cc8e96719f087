"""`vsearch bench --scale`'s visual space: written through the catalog, searched through the index,
exact while small and IVF past the threshold, each row's recall checked against brute force."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from vsearch.bench.scale import _exact_top10, add_visuals, build_catalog, recall_rows, visual_rows
from vsearch.search import vectors
from vsearch.search.catalog import VISUALS, Catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = build_catalog(tmp_path / "home", videos=120, windows_per_video=5, dim=32, topics=10, log=lambda _: None)
    yield catalog
    catalog.close()


def all_visual_vectors(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    parts = list(catalog.iter_vectors(VISUALS))
    return np.concatenate([ids for ids, _ in parts]), np.concatenate([vecs for _, vecs in parts])


def test_visual_vectors_at_scale_are_stored_once_and_exact_search_finds_its_own_top10(catalog: Catalog) -> None:
    count, centres = add_visuals(catalog, dim=16, topics=8)
    assert count == 600 == catalog.count(VISUALS) and catalog.dim_of(VISUALS) == 16
    writes, generation = catalog.db.conn.total_changes, catalog.generation
    again, same_centres = add_visuals(catalog, dim=16, topics=8)
    # written once: the catalog is the bench's cache, and a second run writes no row
    assert again == 600 and np.array_equal(same_centres, centres)
    assert catalog.db.conn.total_changes == writes and catalog.generation == generation
    rows, size, kind = visual_rows(catalog, centres, np.random.default_rng(0))
    assert kind == "flat" and size > 600 * 16 * 4  # under the IVF threshold: exact, 4 bytes a number
    [(name, ms, recall)] = rows
    assert (name, recall) == ("flat", "1.000") and float(ms) > 0  # exact search is its own reference


def test_past_the_threshold_the_visual_index_is_ivf_and_its_recall_is_measured(catalog: Catalog,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, centres = add_visuals(catalog, dim=16, topics=8)
    monkeypatch.setattr(vectors, "EXACT_MAX", 300)  # 600 visual vectors: past it, as a big library is
    rows, size, kind = visual_rows(catalog, centres, np.random.default_rng(0))
    assert kind == "ivf" and size > 0
    assert [r[0] for r in rows] == [f"ivf, nprobe {n}" for n in (16, 32, 48, 64)]
    assert all(float(ms) > 0 for _, ms, _ in rows)
    recalls = [float(r[2]) for r in rows]
    assert recalls == sorted(recalls) and 0 < recalls[0] < 1  # more lists probed find more; few miss some

    # each row's recall, worked out here by brute force over the stored vectors
    index, rebuilt = vectors.open_vectors(catalog, space=VISUALS)
    assert index.kind == "ivf" and not rebuilt  # the one visual_rows built and saved
    rng = np.random.default_rng(5)
    queries = centres[rng.integers(len(centres), size=20)] + 0.5 * rng.standard_normal((20, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids, vecs = all_visual_vectors(catalog)
    exact = [list(ids[np.argsort(-(vecs @ q))[:10]]) for q in queries]
    assert [sorted(e) for e in _exact_top10(catalog, queries, space=VISUALS)] == [sorted(e) for e in exact]
    rows = recall_rows(index, queries, exact)
    assert faiss.extract_index_ivf(index.index).nprobe == vectors.NPROBE  # left as search uses it
    for nprobe, (_, _, recall) in zip((16, 32, 48, 64), rows):
        index.set_nprobe(nprobe)
        found = index.search(queries, 10)[1]
        assert float(recall) == pytest.approx(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]),
                                              abs=5e-4)
