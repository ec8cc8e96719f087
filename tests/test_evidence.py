"""A kind of evidence of the tests' own, registered from here and no other file: mean brightness per
window, searchable as "bright". It is indexed, filled in for an index made before it, searched (and
merged with the label that finds the same moment), checked by doctor, counted by stats, and shown by
the command line's JSON and the web page's hits, through the same interface as the built-in kinds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import vsearch
from tests.conftest import FakeEncoder
from vsearch import evidence
from vsearch.bench.synthetic import write_video
from vsearch.cli.main import app
from vsearch.evidence.base import Ask, Setup, WindowKind, WindowPart
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search.catalog import Catalog
from vsearch.search.doctor import Finding
from vsearch.search.hits import Hit, merge_moments
from vsearch.video.decode import FrameSpec, Sampling


class MeanBrightness:
    """The kind's "model": the mean of one small frame per window, 0..1."""

    name, dim, model_id = "mean-brightness", 1, "mean-brightness|1"
    frame_spec = FrameSpec(1, ("shortest_edge", 8), None)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        return (frames.astype(np.float32).mean(axis=(1, 2, 3, 4)) / 255)[:, None]


def _create(db) -> None:  # noqa: ANN001  (sqlite_utils.Database)
    db.execute("CREATE TABLE brightness (window_id INTEGER PRIMARY KEY REFERENCES windows(id) ON DELETE CASCADE, "
               "value REAL NOT NULL)")


class Brightness(WindowKind):
    name = "brightness"
    matches = ("bright",)
    prefix = "brightness"
    tables = [("001_brightness", _create)]

    def hits(self, ask: Ask) -> list[Hit]:
        if "bright" not in ask.text.lower().split() or not ask.catalog.has_part(self.name):
            return []
        where, args = ask.filters.sql()
        by_video: dict[int, tuple[str, list[tuple[int, float, float, float]]]] = {}
        for vid, path, idx, start, end, value in ask.catalog.db.execute(
                "SELECT v.id, v.path, c.idx, c.start, c.end, b.value FROM brightness b JOIN windows c ON c.id = b.window_id "
                f"JOIN videos v ON v.id = c.video_id WHERE b.value >= 0.5 AND {where}", args):
            by_video.setdefault(vid, (path, []))[1].append((idx, start, end, value))
        return [Hit(path, s, e, top, None, "bright", None, None, vid, why=f"bright {top:.2f}")
                for vid, (path, windows) in by_video.items() for s, e, top in merge_moments(windows, 0.9)]

    def checks(self) -> list:
        def every_window(catalog: Catalog, repair: bool) -> Finding:
            missing = catalog.db.execute("SELECT count(*) FROM windows c LEFT JOIN brightness b ON b.window_id = c.id "
                                         "WHERE b.window_id IS NULL").fetchone()[0] if catalog.has_part(self.name) else 0
            return Finding("brightness", missing == 0, f"{missing} windows without a brightness")
        return [every_window]

    def clear(self, catalog: Catalog) -> None:
        catalog.db.execute("DELETE FROM brightness")

    def store(self, catalog: Catalog, window_ids: Sequence[int], values: np.ndarray) -> None:
        catalog.db.conn.executemany("INSERT OR REPLACE INTO brightness VALUES (?, ?)",
                                    [(i, float(v[0])) for i, v in zip(window_ids, values)])

    def part(self, setup: Setup) -> WindowPart:
        return WindowPart(self, MeanBrightness.name, MeanBrightness)


@pytest.fixture
def brightness() -> Iterator[Brightness]:
    kind = Brightness()
    evidence.register(kind)
    try:
        yield kind
    finally:
        evidence.unregister(kind.name)


@pytest.fixture
def day(tmp_path: Path) -> Path:
    """12 s: dark for 4 s, bright for 8 s (the fake video model calls that "bright" too), and a dark video."""
    root = tmp_path / "v"
    frames = np.concatenate([np.full((32, 32, 32, 3), 10, np.uint8), np.full((64, 32, 32, 3), 240, np.uint8)])
    write_video(root / "day.mp4", frames, fps=8)
    write_video(root / "night.mp4", np.full((48, 32, 32, 3), 12, np.uint8), fps=8)
    return root


def index(home: Path, root: Path, kinds: list) -> tuple[vsearch.IndexReport, FakeEncoder]:
    encoder = FakeEncoder()
    catalog = Catalog(home)
    parts = [k.part(None) for k in kinds]  # type: ignore[arg-type]  # the test kind needs no setup
    try:
        report = Indexer(catalog, lambda: encoder, IndexSettings(sampling=Sampling(window_seconds=2), workers=1),
                         parts=parts).run([root])
    finally:
        catalog.close()
    return report, encoder


def test_a_kind_of_its_own_is_indexed_searched_checked_and_shown(brightness: Brightness, day: Path,
                                                                vsearch_home: Path) -> None:
    report, encoder = index(vsearch_home, day, [brightness])
    assert report.indexed == 2 and encoder.windows == 6 + 3
    idx = vsearch.Index(vsearch_home)

    result = idx.search("bright")
    [hit] = [h for h in result.hits if h.path.endswith("day.mp4")]
    # one moment, found by the label and by the kind: merged, the stronger first, the other in `also`
    assert (hit.start, hit.end) == (4.0, 12.0)
    assert {hit.match, *(a.match for a in hit.also)} == {"label", "bright"}
    assert hit.score > max(a.score for a in [hit, *hit.also]) - 1e-9  # two kinds agreeing rank it higher
    assert not [h for h in result.hits if h.path.endswith("night.mp4") and h.match == "bright"]

    data = json.loads(CliRunner().invoke(app, ["search", "bright", "--json", "--home", str(vsearch_home)]).stdout)
    shown = next(h for h in data if h["path"].endswith("day.mp4"))
    assert {shown["match"], *(a["match"] for a in shown.get("also", []))} == {"label", "bright"}
    assert any(w.startswith("bright 0.9") for w in [shown["why"], *(a["why"] for a in shown.get("also", []))])

    checks = {f.check: f for f in idx.doctor().findings}
    assert checks["brightness"].ok and checks["brightness"].detail == "0 windows without a brightness"
    assert idx.stats()["evidence"]["brightness"] == {"model": "mean-brightness", "videos": 2, "found": 9, "failed": 0,
                                                     "unit": "window"}
    shown = CliRunner().invoke(app, ["stats", "--home", str(vsearch_home)]).stdout
    assert "brightness 2 videos, 9 windows  (mean-brightness)" in shown

    from starlette.testclient import TestClient

    from vsearch.web.app import create_app

    client = TestClient(create_app(vsearch_home), base_url="http://127.0.0.1:8765")
    api = next(h for h in client.get("/api/search", params={"q": "bright"}).json() if h["path"].endswith("day.mp4"))
    assert any(r.startswith("bright 0.9") for r in api["reasons"])
    assert "bright 0.9" in client.get("/", params={"q": "bright"}).text


def test_an_index_made_before_the_kind_is_filled_in_without_the_video_model(brightness: Brightness, day: Path,
                                                                           vsearch_home: Path) -> None:
    index(vsearch_home, day, [])
    catalog = Catalog(vsearch_home)
    assert not catalog.has_part("brightness") and catalog.runs_summary()["labels"]["videos"] == 2
    catalog.close()
    report, encoder = index(vsearch_home, day, [brightness])
    assert report.filled == {"brightness": 2} and encoder.windows == 0 and report.indexed == 0
    assert "filled in brightness for 2 indexed videos" in report.summary_lines()
    again, _ = index(vsearch_home, day, [brightness])
    assert again.filled == {}  # every video has it now: nothing to do
    assert [h.match for h in vsearch.Index(vsearch_home).search("bright").hits].count("bright") == 1


def test_a_copy_of_a_video_carries_the_kinds_evidence(brightness: Brightness, day: Path, vsearch_home: Path) -> None:
    index(vsearch_home, day, [brightness])
    (day / "copy.mp4").write_bytes((day / "day.mp4").read_bytes())
    report, encoder = index(vsearch_home, day, [brightness])
    assert report.copied == 1 and encoder.windows == 0
    catalog = Catalog(vsearch_home)
    values = catalog.db.execute("SELECT v.path, b.value FROM brightness b JOIN windows c ON c.id = b.window_id "
                                "JOIN videos v ON v.id = c.video_id ORDER BY v.path, c.idx").fetchall()
    by_path: dict[str, list[float]] = {}
    for path, value in values:
        by_path.setdefault(Path(path).name, []).append(value)
    assert by_path["copy.mp4"] == by_path["day.mp4"]
    assert catalog.runs_of(catalog.video(str(day / "copy.mp4")).id)["brightness"][0] == "mean-brightness"
