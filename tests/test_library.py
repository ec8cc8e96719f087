"""The library calls every front end shares (CLI, web page, live loop): one call per user action,
tested without the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import FakeEncoder
from vsearch import Index, IndexBusy, IndexMissing, NotIndexed
from vsearch.bench.synthetic import write_video
from vsearch.cli.main import app
from vsearch.core.home import Home
from vsearch.indexer.one_file import classify, embed_windows, file_embedder
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search import browse, similar
from vsearch.search.catalog import ACTIONS, Catalog
from vsearch.video.decode import DecodeError, Sampling

TWO_SECONDS = Sampling(window_seconds=2)


def index(home: Path, roots: list[Path], sampling: Sampling = TWO_SECONDS) -> None:
    cat = Catalog(home)
    try:
        Indexer(cat, FakeEncoder, IndexSettings(sampling=sampling, workers=1, timeout=20)).run(roots)
    finally:
        cat.close()


def plain(path: Path, value: int, seconds: int = 4) -> Path:
    rng = np.random.default_rng(value)
    frames = np.clip(value + rng.integers(-8, 8, (8 * seconds, 32, 32, 3)), 0, 255).astype(np.uint8)
    return write_video(path, frames, fps=8)


@pytest.fixture
def day_and_night(tmp_path: Path, vsearch_home: Path) -> Path:
    """`day.mp4` is dark for 4 s, then bright for 8 s; beside it a dark and a bright video."""
    root = tmp_path / "videos"
    frames = np.concatenate([np.full((32, 32, 32, 3), 10, np.uint8), np.full((64, 32, 32, 3), 240, np.uint8)])
    write_video(root / "day.mp4", frames, fps=8)
    plain(root / "night.mp4", 12)
    plain(root / "noon.mp4", 235)
    index(vsearch_home, [root])
    return root


def never_embed(path: str) -> tuple[list[tuple[float, float]], dict[str, np.ndarray]]:
    raise AssertionError(f"an indexed file was embedded again: {path}")


def fake_embedder(path: str) -> tuple[list[tuple[float, float]], dict[str, np.ndarray]]:
    found = embed_windows(FakeEncoder(), path, TWO_SECONDS)
    windows, embeddings = found.windows, found.embeddings
    return [(w.start, w.end) for w in windows], {ACTIONS.name: embeddings}


def test_similar_to_an_indexed_file_uses_its_stored_vectors_and_leaves_it_out(day_and_night: Path,
                                                                               vsearch_home: Path) -> None:
    cat = Catalog(vsearch_home)
    hits = similar.similar_to_file(cat, day_and_night / "night.mp4", embed=never_embed)
    assert [Path(h.path).name for h in hits] == ["day.mp4", "noon.mp4"]  # day has a dark start
    assert hits[0].score > 0.99 and (hits[0].start, hits[0].end) == (0.0, 2.0)
    assert all(h.match == "similar" for h in hits)


def test_at_picks_the_window_of_that_moment(day_and_night: Path, vsearch_home: Path, tmp_path: Path) -> None:
    cat = Catalog(vsearch_home)
    day = day_and_night / "day.mp4"
    assert [Path(h.path).name for h in similar.similar_to_file(cat, day, at=1.0)] == ["night.mp4", "noon.mp4"]
    assert [Path(h.path).name for h in similar.similar_to_file(cat, day, at=9.5)] == ["noon.mp4", "night.mp4"]
    assert Path(similar.similar_to_file(cat, day, at=99.0)[0].path).name == "noon.mp4"  # past the end: the last window
    outside = tmp_path / "copy of day.mp4"  # not indexed: embedded on the fly, same windows
    shutil.copy(day, outside)
    dark = similar.similar_to_file(cat, outside, at=1.0, embed=fake_embedder)
    assert [(Path(h.path).name, h.start < 4) for h in dark[:2]] == [("day.mp4", True), ("night.mp4", True)]
    bright = similar.similar_to_file(cat, outside, at=9.5, embed=fake_embedder)
    assert [(Path(h.path).name, h.start < 4) for h in bright[:2]] == [("day.mp4", False), ("noon.mp4", True)]


def test_a_file_outside_the_index_is_embedded_and_finds_its_twin(day_and_night: Path, vsearch_home: Path,
                                                                 tmp_path: Path) -> None:
    cat = Catalog(vsearch_home)
    outside = tmp_path / "elsewhere" / "night again.mp4"
    outside.parent.mkdir()
    shutil.copy(day_and_night / "night.mp4", outside)
    with pytest.raises(NotIndexed, match="is not indexed, and no model was given"):
        similar.similar_to_file(cat, outside)
    hits = similar.similar_to_file(cat, outside, limit=2, embed=fake_embedder)
    assert Path(hits[0].path).name == "night.mp4" and hits[0].score > 0.99
    assert len(hits) == 2  # not indexed, so nothing is left out as "the query itself"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(DecodeError):
        similar.similar_to_file(cat, broken, embed=fake_embedder)


def test_similar_on_an_empty_index_says_so(vsearch_home: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexMissing, match="the index is empty"):
        similar.similar_to_file(Catalog(vsearch_home), plain(tmp_path / "a.mp4", 100), embed=never_embed)


def test_file_embedder_loads_the_model_once_and_only_when_called(tiny_model: Path, day_and_night: Path,
                                                                tmp_path: Path) -> None:
    from vsearch import ModelError
    from vsearch.model.encoder import VideoEncoder, load_encoder

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    embed = file_embedder(lambda: load_encoder(str(not_a_model)))  # nothing is loaded yet, so nothing fails yet
    with pytest.raises(ModelError):
        embed(str(day_and_night / "day.mp4"))
    loaded = []

    def load() -> VideoEncoder:
        loaded.append(load_encoder(str(tiny_model), device="cpu"))
        return loaded[-1]

    embed = file_embedder(load)
    assert loaded == []
    spans, vectors = embed(str(day_and_night / "day.mp4"))
    spans_again, _ = embed(str(day_and_night / "night.mp4"))
    assert len(loaded) == 1 and loaded[0].name == str(tiny_model)
    assert spans == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)] and spans_again == [(0.0, 4.0)]
    assert set(vectors) == {ACTIONS.name} and vectors[ACTIONS.name].shape == (3, loaded[0].dim)  # no visual model: one space
    assert np.allclose(np.linalg.norm(vectors[ACTIONS.name], axis=1), 1.0, atol=1e-3)


def test_classify_averages_every_window_and_ranks(tmp_path: Path) -> None:
    blue, red = np.array([20, 20, 220], np.uint8), np.array([220, 20, 20], np.uint8)
    flag = write_video(tmp_path / "flag.mp4", np.concatenate([np.tile(blue, (32, 32, 32, 1)),
                                                              np.tile(red, (64, 32, 32, 1))]), fps=8)
    result = classify(FakeEncoder(), flag, top=3)
    # Three 4 s windows, all still, one blue, two red: only the average of all three ranks
    # red second and blue third (the first window alone says blue, the last alone has no blue).
    assert [name for name, _ in result.labels] == ["still", "red", "blue"]
    probs = embed_windows(FakeEncoder(), str(flag)).probs
    assert len(probs) == 3
    expected = probs.mean(axis=0)
    for name, score in result.labels:
        assert score == pytest.approx(float(expected[FakeEncoder.labels.index(name)]))
    assert result.to_json() == {"path": str(flag), "labels": [{"label": n, "score": round(s, 4)}
                                                             for n, s in result.labels]}
    assert len(classify(FakeEncoder(), flag, top=1).labels) == 1
    with pytest.raises(DecodeError):
        classify(FakeEncoder(), Path(__file__))


def doctor(home: Path, repair: bool = True):
    """The library's doctor, with repair on as `vsearch doctor` has it."""
    return Index(home).doctor(repair=repair)


def test_doctor_reports_clean_then_repairs_and_check_only_changes_nothing(day_and_night: Path,
                                                                          vsearch_home: Path) -> None:
    report = doctor(vsearch_home)
    assert report.clean and not report.sqlite_damaged and not report.unrepaired
    assert report.findings[0].check == "sqlite integrity"
    assert "faiss index" in [f.check for f in report.findings]
    (day_and_night / "noon.mp4").unlink()
    checked = doctor(vsearch_home, repair=False)
    assert [f.check for f in checked.unrepaired] == ["files still on disk"]
    assert not checked.sqlite_damaged
    assert browse.stats(Catalog(vsearch_home))["videos"] == 3  # --check-only left the row
    repaired = doctor(vsearch_home)
    assert not repaired.clean and not repaired.unrepaired
    assert browse.stats(Catalog(vsearch_home))["videos"] == 2
    assert doctor(vsearch_home).clean


def test_doctor_says_when_the_sqlite_file_is_damaged_and_leaves_it_untouched(day_and_night: Path,
                                                                             vsearch_home: Path) -> None:
    cat = Catalog(vsearch_home)
    with cat.transaction():  # pages at the end of the file that nothing else needs to open the index
        cat.db.execute("CREATE TABLE ballast (x TEXT)")
        cat.db.execute("CREATE INDEX ballast_x ON ballast (x)")
        cat.db.conn.executemany("INSERT INTO ballast VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)])
    cat.close()
    db = vsearch_home / "vsearch.db"
    data = bytearray(db.read_bytes())
    page = 4096
    data[-4 * page:] = b"\xff" * (4 * page)
    db.write_bytes(bytes(data))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    report = doctor(vsearch_home)
    assert report.sqlite_damaged and not report.clean
    assert [f.check for f in report.findings] == ["sqlite integrity"] and report.unrepaired
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1 and "PROBLEM  sqlite integrity" in result.stdout
    assert "the SQLite file is damaged; it was left untouched" in result.stderr


def test_doctor_refuses_while_an_index_run_writes_and_without_an_index(day_and_night: Path,
                                                                      vsearch_home: Path, tmp_path: Path) -> None:
    with Home(vsearch_home).writer_lock(), pytest.raises(IndexBusy, match="is writing to"):
        doctor(vsearch_home)
    with pytest.raises(IndexMissing, match="no index at"):
        doctor(tmp_path / "nothing here")


def test_stats_and_show_are_what_the_cli_prints(library: Path, vsearch_home: Path) -> None:
    index(vsearch_home, [library], Sampling())
    cat = Catalog(vsearch_home)
    data = browse.stats(cat)
    assert (data["videos"], data["failed"]) == (12, 4)
    assert {Path(f["path"]).name for f in data["failures"]} == {"empty.mp4", "random.mp4", "notes.mkv",
                                                                 "truncated.mp4"}
    assert all(f["reason"] for f in data["failures"])
    runner = CliRunner()
    assert json.loads(runner.invoke(app, ["stats", "--json"]).stdout) == Index(vsearch_home).stats() == {
        **data, "evidence": {"labels": {"model": "fake-encoder", "videos": 12, "found": data["windows"], "failed": 0,
                                        "unit": "window"}}}
    shown = runner.invoke(app, ["stats"]).stdout  # the same, as a person reads it
    assert f"    evidence: labels     12 videos, {data['windows']} windows  (fake-encoder)" in shown.splitlines()
    assert all(f"failed {f['path']}: {f['reason']}" in shown for f in data["failures"])
    video = sorted(library.glob("*.mp4"))[0]
    shown = browse.show(cat, str(video)).to_json()
    assert set(shown) == {"path", "status", "error", "duration", "labels", "windows"}
    assert shown["path"] == str(video) and shown["status"] == "ok" and shown["labels"]
    assert json.loads(runner.invoke(app, ["show", str(video), "--json"]).stdout) == shown
