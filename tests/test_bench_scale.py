"""`vsearch bench --scale`'s scene space: written through the catalog, searched through the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vsearch.bench.scale import add_scenes, build_catalog, scene_rows
from vsearch.search.catalog import SCENES


def test_scene_vectors_at_scale_are_stored_once_and_exact_search_finds_its_own_top10(tmp_path: Path) -> None:
    catalog = build_catalog(tmp_path / "home", videos=120, clips_per_video=5, dim=32, topics=10, log=lambda _: None)
    count, centres = add_scenes(catalog, dim=16, topics=8)
    assert count == 600 == catalog.count(SCENES) and catalog.dim_of(SCENES) == 16
    assert add_scenes(catalog, dim=16, topics=8)[0] == 600  # written once: the catalog is the bench's cache
    rows, size, kind = scene_rows(catalog, centres, np.random.default_rng(0))
    assert kind == "flat" and size > 600 * 16 * 4  # under the IVF threshold: exact, 4 bytes a number
    assert rows == [["flat", rows[0][1], "1.000"]]  # exact search is its own reference
    catalog.close()
