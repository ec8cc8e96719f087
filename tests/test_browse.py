"""Browsing the library (issue 22) at the library level: the newest videos a page at a time,
one video's moments, the library at a glance. The web page shows exactly these."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FakeEncoder
from vsearch import BadArgument, Index, NotIndexed
from vsearch.bench.synthetic import write_video
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search import browse
from vsearch.search.catalog import Catalog, WindowResult
from vsearch.video.decode import Sampling

TWO_SECONDS = IndexSettings(sampling=Sampling(window_seconds=2), workers=1, timeout=20)


def index(home: Path, roots: list[Path]) -> None:
    cat = Catalog(home)
    try:
        Indexer(cat, FakeEncoder, TWO_SECONDS).run(roots)
    finally:
        cat.close()


DARK, BUSY = (12, 8), (128, 60)  # (grey level, noise): the fake encoder sees `dark` and `moving`


def noisy(parts: list[tuple[int, int]], seed: int = 0, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Two seconds (16 frames at 8 fps) per (grey level, noise) part, `size` (height, width)."""
    rng = np.random.default_rng(seed)
    frames = [np.clip(level + rng.integers(-noise, noise, (16, *size, 3)), 0, 255) for level, noise in parts]
    return np.concatenate(frames).astype(np.uint8)


@pytest.fixture
def library(tmp_path: Path, vsearch_home: Path) -> Path:
    """`day.mp4`: dark for 4 s, busy for 6 s, dark again for 2 s; five plain videos beside it."""
    root = tmp_path / "videos"
    write_video(root / "day.mp4", noisy([DARK, DARK, BUSY, BUSY, BUSY, DARK]), fps=8)
    for i in range(5):
        write_video(root / f"plain_{i}.mp4", noisy([DARK if i % 2 else BUSY] * 2, seed=i), fps=8)
    index(vsearch_home, [root])
    return root


def test_moments_merge_adjacent_windows_of_one_best_label(library: Path, vsearch_home: Path) -> None:
    shown = Index(vsearch_home).moments(library / "day.mp4")
    assert [(m.label, m.start, m.end, m.kind) for m in shown.moments] == [
        ("dark", 0.0, 4.0, "label"), ("moving", 4.0, 10.0, "label"), ("dark", 10.0, 12.0, "label")]
    catalog = Catalog(vsearch_home)
    spans = {cid: (s, e) for cid, s, e in catalog.window_spans(shown.id)}
    assert [spans[m.window_id][0] for m in shown.moments] == [0.0, 4.0, 10.0]  # each moment's picture is its start
    assert all(0 < m.score <= 1 for m in shown.moments)
    assert Index(vsearch_home).moments(shown.id) == shown  # by catalog id, as the web page asks
    assert shown.labels and all(score >= browse.MOMENT_FLOOR for _, score in shown.labels)
    every = catalog.db.execute("SELECT count(*) FROM video_labels WHERE video_id = ?", [shown.id]).fetchone()[0]
    assert len(shown.labels) < every  # the labels at 0.00 are not listed


def test_windows_whose_best_label_is_below_the_floor_are_left_blank(library: Path, vsearch_home: Path) -> None:
    catalog = Catalog(vsearch_home)
    vid = catalog.video(str(library / "day.mp4")).id
    assert browse.video_moments(catalog, vid, floor=1.01).moments == []
    sure = browse.video_moments(catalog, vid, floor=0.0)
    strict = browse.video_moments(catalog, vid, floor=max(m.score for m in sure.moments))
    assert len(strict.moments) == 1 and strict.moments[0].score == max(m.score for m in sure.moments)


def test_moments_of_what_the_index_does_not_hold(library: Path, vsearch_home: Path) -> None:
    with pytest.raises(NotIndexed):
        Index(vsearch_home).moments(library / "nowhere.mp4")
    with pytest.raises(NotIndexed):
        Index(vsearch_home).moments(99_999)


def test_videos_come_newest_first_a_page_at_a_time(library: Path, vsearch_home: Path) -> None:
    idx = Index(vsearch_home)
    seen, before, pages = [], None, 0
    while True:
        page = idx.videos(before=before, limit=2)
        seen += page.videos
        pages += 1
        if page.before is None:
            break
        assert page.before == page.videos[-1].id
        before = page.before
    assert pages == 3 and len(seen) == 6 == idx.stats()["videos"]
    assert [v.id for v in seen] == sorted((v.id for v in seen), reverse=True)
    assert [v.indexed_at for v in seen] == sorted((v.indexed_at for v in seen), reverse=True)
    day = next(v for v in seen if v.path.endswith("day.mp4"))
    assert day.label in ("dark", "moving") and day.window_id is not None and day.window_start is not None
    with pytest.raises(BadArgument):
        idx.videos(limit=0)


def test_a_changed_file_comes_back_to_the_top(library: Path, vsearch_home: Path) -> None:
    oldest = Index(vsearch_home).videos(limit=100).videos[-1]
    time.sleep(0.01)
    write_video(Path(oldest.path), noisy([BUSY, DARK, BUSY], seed=5), fps=8)
    index(vsearch_home, [library])
    newest = Index(vsearch_home).videos(limit=1).videos[0]
    assert newest.path == oldest.path and newest.indexed_at > oldest.indexed_at


def test_a_page_is_a_seek_not_a_scan(library: Path, vsearch_home: Path) -> None:
    """Whatever the library's size, a page reads its own rows only: no OFFSET, no sort."""
    catalog = Catalog(vsearch_home)
    plan = " | ".join(r[3] for r in catalog.db.execute("EXPLAIN QUERY PLAN " + browse.RECENT, [browse.NEWEST, 25]))
    assert plan.startswith("SEARCH videos") and "TEMP B-TREE" not in plan and "SCAN" not in plan, plan


def test_the_library_at_a_glance(library: Path, vsearch_home: Path, tmp_path: Path) -> None:
    (library / "broken.mp4").write_bytes(b"not a video")
    index(vsearch_home, [library])
    idx = Index(vsearch_home)
    seen = idx.overview(limit=4, labels=10)
    stats = idx.stats()
    assert seen.health == {"videos": stats["videos"], "hours": stats["hours"], "failed": 1}
    assert seen.videos == idx.videos(limit=4) and seen.videos.before is not None
    assert [r["label"] for r in seen.labels] == [r["label"] for r in idx.labels(limit=10)]
    catalog = Catalog(vsearch_home)
    for row in seen.labels:  # each label's picture is a clip that carries the label
        names = {n for (n,) in catalog.db.execute(
            "SELECT l.name FROM window_labels cl JOIN labels l ON l.id = cl.label_id WHERE cl.window_id = ?",
            [row["window_id"]])}
        assert row["label"] in names


def test_a_video_whose_labels_are_all_below_the_floor_still_lists(tmp_path: Path) -> None:
    """Its card has no label and its middle window for a picture."""
    catalog = Catalog(tmp_path / "home")
    catalog.bind_model("m", "m|2|3", 3, ["a", "b"])
    with catalog.transaction():
        vid = catalog.start_video(str(tmp_path / "v.mp4"), 1, 1.0, "h", {"duration": 12.0})
        catalog.add_windows(vid, [WindowResult(i, 4.0 * i, 4.0 * i + 4, [("a", 0.01), ("b", 0.01)],
                                           np.ones(3, np.float32)) for i in range(3)])
        catalog.finish_video(vid)
    card = browse.recent_videos(catalog).videos[0]
    assert (card.label, card.window_start) == (None, 4.0)
    assert browse.video_moments(catalog, vid).labels == []


def test_label_counts_are_made_once_per_change_of_the_index(library: Path, vsearch_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting labels reads every video's labels: a home page view reuses the last count until
    a video becomes searchable or leaves; failed files show at once."""
    counted = []
    real = browse.vocabulary
    monkeypatch.setattr(browse, "vocabulary", lambda *a, **k: counted.append(a) or real(*a, **k))
    idx = Index(vsearch_home)
    first = idx.overview()
    assert idx.overview() == first and idx.labels() == idx.labels() and len(counted) == 2  # one each
    idx.labels()[0]["videos"] = -1  # a caller's change stays its own
    assert idx.labels()[0]["videos"] > 0

    (library / "broken.mp4").write_bytes(b"not a video")
    index(vsearch_home, [library])
    assert idx.overview().health == {**first.health, "failed": 1} and len(counted) == 2  # nothing new to count

    write_video(library / "more.mp4", noisy([BUSY, BUSY], seed=9), fps=8)
    index(vsearch_home, [library])
    after = idx.overview()
    assert after.health["videos"] == first.health["videos"] + 1 and len(counted) == 3
    assert sum(r["videos"] for r in after.labels) == sum(r["videos"] for r in first.labels) + 1
