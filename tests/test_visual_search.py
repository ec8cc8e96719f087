"""Search by any description, end to end: videos whose picture changes mid-way are indexed with the
demo video model and a tiny CLIP the tests trained (conftest.visual_model_dir), then found by a
description, at the right moment; through the library, the command line and the web page.
Also: what an index without a visual model says, a new visual model without running the video model
again, find-similar by what happens, what is seen, or both."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import vsearch
from tests.conftest import as_schema_8
from tests.visual_fixtures import Picture, picture_video
from vsearch import data
from vsearch.cli.main import app
from vsearch.search.catalog import VISUALS

pytestmark = pytest.mark.slow  # trains the tiny CLIP once per session (about a minute)

SECONDS = 4.0  # per picture; the index cuts 2-s windows
RED_CIRCLE, YELLOW_SQUARE = Picture("red", "circle", "blue"), Picture("yellow", "square", "green")
WHITE_TRIANGLE, GREEN_SQUARE = Picture("white", "triangle", "black"), Picture("green", "square", "red")
MOTION = str(data.path("motion-model"))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pictures")
    return {
        "changes": picture_video(root / "changes.mp4", [WHITE_TRIANGLE, RED_CIRCLE, YELLOW_SQUARE], SECONDS, seed=1),
        "green": picture_video(root / "green.mp4", [GREEN_SQUARE, GREEN_SQUARE], SECONDS, seed=2),
        "yellow": picture_video(root / "yellow.mp4", [YELLOW_SQUARE], 2 * SECONDS, seed=3),
    }


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, library: dict[str, Path], visual_model_dir: Path) -> vsearch.Index:
    idx = vsearch.Index(tmp_path_factory.mktemp("home"))
    report = idx.index([library["changes"].parent], model=MOTION, text_model=str(visual_model_dir), window=2.0,
                       runtime="torch", precision="fp32")
    assert report.indexed == 3 and not report.failed
    return idx


def visual_hits(idx: vsearch.Index, text: str) -> list[vsearch.Hit]:
    return [h for h in idx.search(text, limit=20).hits if h.match == "visuals"]


def test_a_description_finds_the_video_and_the_moment_that_shows_it(indexed: vsearch.Index,
                                                                    library: dict[str, Path]) -> None:
    stats = indexed.stats()
    assert stats["visual_model"] and stats["visual_windows"] == stats["windows"] == 2 * 3 + 4 + 4
    for text in ("a red circle on a blue background", "red circle", "a circle that is red on blue"):
        result = indexed.search(text)
        assert result.visuals is True
        best = visual_hits(indexed, text)[0]
        # the red circle shows from 4 s to 8 s of changes.mp4, and nowhere else
        assert (Path(best.path), best.start, best.end) == (library["changes"], SECONDS, 2 * SECONDS), best
        assert 0 < best.score <= 1 and best.label is None
    yellow = visual_hits(indexed, "a yellow square on green")
    assert {(Path(h.path), h.start, h.end) for h in yellow[:2]} == {(library["changes"], 2 * SECONDS, 3 * SECONDS),
                                                                    (library["yellow"], 0.0, 2 * SECONDS)}


def test_something_absent_scores_below_the_floor(indexed: vsearch.Index) -> None:
    assert visual_hits(indexed, "a blue triangle on a yellow background") == []
    assert visual_hits(indexed, "a black circle") == []


def test_a_label_name_needs_no_visual_model(indexed: vsearch.Index) -> None:
    result = indexed.search("moving left")
    assert result.visuals is False and all(h.match != "visuals" for h in result.hits)
    assert result.scenes is False  # the deprecated name of `visuals`


def test_the_cli_and_the_web_page_show_visual_hits(indexed: vsearch.Index, library: dict[str, Path]) -> None:
    from starlette.testclient import TestClient

    from vsearch.web.app import create_app

    home = str(indexed.home.root)
    cli = CliRunner().invoke(app, ["search", "red circle", "--json", "--home", home])
    assert cli.exit_code == 0, cli.output
    first = next(h for h in json.loads(cli.stdout) if h["match"] == "visuals")
    assert (first["path"], first["start"], first["end"]) == (str(library["changes"]), SECONDS, 2 * SECONDS)
    client = TestClient(create_app(indexed.home.root), base_url="http://127.0.0.1:8765")
    api = client.get("/api/search", params={"q": "red circle"}).json()
    assert next(h for h in api if h["match"] == "visuals")["start"] == SECONDS
    page = client.get("/", params={"q": "red circle"}).text
    assert 'data-start="4.0"' in page and "shows “red circle”" in page


def test_an_index_without_a_visual_model_says_how_to_add_one(tmp_path: Path, library: dict[str, Path]) -> None:
    home = tmp_path / "plain"
    result = CliRunner().invoke(app, ["index", str(library["green"]), "--model", MOTION, "--home", str(home),
                                      "--runtime", "torch", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert "searching by description is off" in result.stderr and "--text-model" in result.stderr  # offline here
    search = CliRunner().invoke(app, ["search", "a green square", "--home", str(home)])
    assert "index it again with --text-model" in search.stderr
    off = CliRunner().invoke(app, ["index", str(library["green"]), "--home", str(home), "--text-model", "none"])
    assert off.exit_code == 0 and "searching by description is off" not in off.stderr
    again = CliRunner().invoke(app, ["search", "a green square", "--home", str(home)])
    assert "--text-model" not in again.stderr  # turned off on purpose: no more advice


def test_a_new_visual_model_embeds_again_without_the_video_model(tmp_path: Path, library: dict[str, Path],
                                                                 visual_model_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import vsearch.model.encoder as encoder_module
    from tests.test_visual import _save  # a small random CLIP, another vector space

    runs: list[int] = []  # windows per call of the loaded video model
    real_load = encoder_module.load_encoder

    def load_counted(*args: object, **kwargs: object) -> object:
        encoder = real_load(*args, **kwargs)
        encode = encoder.encode
        encoder.encode = lambda frames: runs.append(len(frames)) or encode(frames)  # type: ignore[method-assign]
        return encoder

    monkeypatch.setattr(encoder_module, "load_encoder", load_counted)
    other = tmp_path / "other-clip"
    _save(other, "clip")
    idx = vsearch.Index(tmp_path / "home")
    idx.index([library["yellow"]], model=MOTION, text_model=str(visual_model_dir), window=2.0, runtime="torch")
    assert sum(runs) == 4  # the video model saw the 4 windows once
    runs.clear()
    report = idx.index([library["yellow"]], model=MOTION, text_model=str(other), window=2.0, runtime="torch")
    assert (report.indexed, report.filled) == (0, {"visuals": 1}) and "model" not in report.timings
    assert runs == []  # the video model never ran: only the visual model saw the windows again
    catalog = idx.catalog()
    assert catalog.visual_model == str(other) and catalog.count(VISUALS) == 4
    assert idx.index([library["yellow"]], model=MOTION).filled == {}  # the index's own now: nothing to do
    assert runs == []


def test_an_index_from_when_visuals_were_called_scenes_is_searched_and_clean_as_it_is(indexed: vsearch.Index,
                                                                                       tmp_path: Path) -> None:
    """An index as earlier versions left it (schema 7: table scene_vectors, meta scene_*, runs of kind
    'scenes', scenes.json and scenes-*.faiss) opens, finds a description, says what it holds and is
    clean by doctor, as it is: migrated on open, nothing embedded again, its FAISS file not rebuilt."""
    import shutil
    import sqlite3

    text = "a red circle on a blue background"
    before = [(h.path, h.start, h.end, h.score) for h in visual_hits(indexed, text)]  # its FAISS file saved
    assert before
    home = tmp_path / "old"
    shutil.copytree(indexed.home.root, home, ignore=shutil.ignore_patterns("vsearch.db*", "index.lock"))
    source, db = sqlite3.connect(indexed.home.db), sqlite3.connect(home / "vsearch.db")
    source.backup(db)
    source.close()
    as_schema_8(db)
    db.executescript("""
        ALTER TABLE visual_vectors RENAME TO scene_vectors;
        UPDATE meta SET key = 'scene' || substr(key, 7) WHERE key LIKE 'visual\\_%' ESCAPE '\\';
        UPDATE evidence_runs SET kind = 'scenes' WHERE kind = 'visuals';
        UPDATE meta SET value = '7' WHERE key = 'schema_version';
        DELETE FROM meta WHERE key IN ('migration_008', 'migration_009', 'migration_010');
    """)
    assert {k for (k,) in db.execute("SELECT key FROM meta WHERE key LIKE 'scene%'")} >= {"scene_model", "scene_model_id"}
    db.close()
    pointer = json.loads((home / "visuals.json").read_text())
    old_file = pointer["file"].replace("visuals-", "scenes-", 1)
    (home / pointer["file"]).rename(home / old_file)
    (home / "scenes.json").write_text(json.dumps({**pointer, "file": old_file}))
    (home / "visuals.json").unlink()
    saved = (home / old_file).read_bytes()

    old = vsearch.Index(home)
    assert [(h.path, h.start, h.end, h.score) for h in visual_hits(old, text)] == before
    stats, new_stats = old.stats(), indexed.stats()
    assert stats["schema_version"] == new_stats["schema_version"] == 10
    assert (stats["visual_model"], stats["visual_windows"]) == (new_stats["visual_model"], new_stats["visual_windows"])
    taken = json.loads((home / "visuals.json").read_text())["file"]
    assert taken.startswith("visuals-") and (home / taken).read_bytes() == saved  # the same file, not rebuilt
    assert not list(home.glob("scenes*"))
    report = old.doctor()
    assert report.clean and not [f for f in report.findings if f.repaired], report.findings
    assert [f.detail for f in report.findings if f.check == "faiss index of visuals"] == ["14 vectors, in step with SQLite"]


def test_similar_by_what_is_seen(indexed: vsearch.Index, library: dict[str, Path]) -> None:
    """The yellow-square video: by what is seen, its twin is a window of changes.mp4 with a yellow
    square (8-12 s), not the green squares."""
    hits = indexed.similar(library["yellow"], by="visuals")
    assert Path(hits[0].path) == library["changes"] and 2 * SECONDS <= hits[0].start < 3 * SECONDS
    older = indexed.similar(library["yellow"], by="scene")  # the word of earlier versions, still understood
    assert [(h.path, h.start, h.score) for h in older] == [(h.path, h.start, h.score) for h in hits]
    with pytest.raises(vsearch.BadArgument, match="--by"):
        indexed.similar(library["yellow"], by="colour")


def test_similar_by_both_finds_the_same_thing_happening_to_the_same_thing(tmp_path: Path) -> None:
    """Fakes that see only motion (the action space) and only colour (the visual space), on four
    videos: a red and a blue square, each moving left and right. Asked with a new red square moving
    left, by action ties the two that move left, by visuals the two red ones; both finds the one."""
    from tests.conftest import FakeEncoder
    from vsearch.bench.synthetic import write_video
    from vsearch.evidence import visuals
    from vsearch.evidence.base import WindowPart
    from vsearch.indexer.one_file import file_embedder
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.search import similar
    from vsearch.search.catalog import ACTIONS, VISUALS, Catalog
    from vsearch.video.decode import FrameSpec, Sampling

    class Motion(FakeEncoder):
        dim = 2

        def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            probs, _ = super().encode(frames)
            columns = frames.astype(np.float32).mean(axis=(2, 4))  # (B, T, W): where the square is
            xs = (columns * np.arange(columns.shape[-1])).sum(-1) / np.maximum(columns.sum(-1), 1e-6)
            step = np.sign(xs[:, -1] - xs[:, 0])
            return probs, np.stack([step, np.ones_like(step) * 0.1], axis=1) / np.hypot(step, 0.1)[:, None]

    class Colour:
        name, dim, model_id = "fake-colour", 3, "fake-colour|3"
        frame_spec = FrameSpec(3, ("shortest_edge", 16), (16, 16))

        def embed_frames(self, frames: np.ndarray) -> np.ndarray:
            rgb = frames.astype(np.float32).max(axis=(1, 2, 3))
            return rgb / np.linalg.norm(rgb, axis=1, keepdims=True)

    def moving(path: Path, colour: tuple[int, int, int], direction: int) -> Path:
        frames = np.zeros((32, 48, 64, 3), np.uint8)
        for i in range(32):
            x = 8 + (i if direction > 0 else 31 - i)
            frames[i, 16:32, x : x + 16] = colour
        return write_video(path, frames)

    root = tmp_path / "lib"
    for name, colour, direction in [("red_left", (220, 30, 30), -1), ("red_right", (220, 30, 30), 1),
                                    ("blue_left", (30, 30, 220), -1), ("blue_right", (30, 30, 220), 1)]:
        moving(root / f"{name}.mp4", colour, direction)
    query = moving(tmp_path / "query.mp4", (230, 40, 40), -1)
    catalog = Catalog(tmp_path / "home")
    Indexer(catalog, Motion, IndexSettings(workers=1), parts=[WindowPart(visuals.KIND, "fake-colour", Colour)]).run([root])
    embed = file_embedder(Motion, Sampling(), {VISUALS.name: Colour})

    def ranked(spaces: tuple[str, ...]) -> list[str]:
        hits = similar.similar_to_file(catalog, query, embed=embed, spaces=spaces)
        return [Path(h.path).stem for h in hits]

    assert set(ranked((ACTIONS,))[:2]) == {"red_left", "blue_left"}
    assert set(ranked((VISUALS,))[:2]) == {"red_left", "red_right"}
    assert ranked((ACTIONS, VISUALS))[0] == "red_left"
    catalog.close()


def test_visual_model_loading_is_lazy_for_label_searches(indexed: vsearch.Index) -> None:
    """A search by a label's name in a fresh process imports no torch, even with a visual model."""
    import subprocess

    code = ("import sys, vsearch; idx = vsearch.Index(sys.argv[1]); idx.search('moving left'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(indexed.home.root)], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_descriptions_find_their_picture_and_only_its_span(tmp_path_factory: pytest.TempPathFactory,
                                                         visual_model_dir: Path) -> None:
    """The descriptions check: 12 videos whose picture changes mid-way (two 6-s pictures on one background,
    4-s windows), 48 descriptions, a tiny CLIP whose logit scale is real CLIP's (100). Each description's first picture
    hit must be the right video, with a moment mostly (60%) inside its picture: not the whole video, and
    not a score of 1.000 for a near miss."""
    import random

    from tests.visual_fixtures import HELD_OUT, TEMPLATES, all_pictures
    from vsearch.model.visual import load_visual_model

    model = load_visual_model(str(visual_model_dir), runtime="torch", precision="fp32")
    assert float(model.module.logit_scale.exp()) == pytest.approx(100.0, rel=1e-4)
    pool = [s for s in all_pictures() if (s.colour, s.shape) not in HELD_OUT]
    random.Random(5).shuffle(pool)
    pairs: list[tuple[Picture, Picture]] = []
    while len(pairs) < 12:  # the same shape and colour on another background: each half a near miss of the other
        a = pool.pop()
        b = next(s for s in pool if s.colour == a.colour and s.shape == a.shape)
        pool.remove(b)
        pairs.append((a, b))
    root = tmp_path_factory.mktemp("changes")
    for i, pictures in enumerate(pairs):
        picture_video(root / f"v{i:02d}.mp4", list(pictures), 6.0, seed=10 + i)
    idx = vsearch.Index(tmp_path_factory.mktemp("home"))
    idx.index([root], model=MOTION, text_model=str(visual_model_dir), window=4.0, runtime="torch", precision="fp32")
    wordings = [t for t in TEMPLATES if "{b}" in t]
    passed, scores, insides, seen = 0, [], [], []
    for i, pictures in enumerate(pairs):
        for half, picture in enumerate(pictures):
            for template in random.Random(i * 2 + half).sample(wordings, 2):
                text = template.format(c=picture.colour, s=picture.shape, b=picture.background)
                hit = next((h for h in idx.search(text, limit=10).hits
                            if "visuals" in [h.match, *(a.match for a in h.also)]), None)
                if hit is None:
                    seen.append((text, None))
                    continue
                lo, hi = 6.0 * half, 6.0 * (half + 1)
                inside = max(0.0, min(hit.end, hi) - max(hit.start, lo)) / (hit.end - hit.start)
                passed += Path(hit.path).name == f"v{i:02d}.mp4" and inside >= 0.6
                scores.append(hit.score)
                insides.append(inside)
                seen.append((text, (Path(hit.path).name, hit.start, hit.end, round(hit.score, 3))))
    assert passed >= 0.9 * 48, (passed, float(np.mean(insides)), seen)
    assert len(set(np.round(scores, 3))) > 24 and max(scores) < 0.9999, scores  # scores that discriminate


def test_a_moment_is_the_windows_near_the_videos_best_not_all_above_the_floor(tmp_path: Path) -> None:
    """Four windows all above the floor, the first two far better: the moment is those two. (Merging
    every window above the floor made a description's moment the whole video.)"""
    from tests.conftest import FakeEncoder
    from vsearch.indexer.pipeline import window_results
    from vsearch.search.catalog import Catalog
    from vsearch.search.hits import Filters
    from vsearch.search.vectors import open_vectors
    from vsearch.search.visuals import VisualQuery, visual_hits
    from vsearch.video.decode import Window

    catalog = Catalog(tmp_path / "home")
    enc = FakeEncoder()
    catalog.bind_model(enc.name, enc.model_id, enc.dim, enc.labels)
    query = np.array([1.0, 0.0, 0.0])
    cosines = [0.90, 0.88, 0.70, 0.66]
    vectors = np.array([[c, np.sqrt(1 - c * c), 0.0] for c in cosines], dtype=np.float32)
    probs, embs = enc.encode(np.zeros((4, 4, 16, 16, 3), np.uint8))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    with catalog.transaction():
        catalog.bind_kind_model("visual", "fake", "fake|3", 3)
        vid = catalog.start_video(str(video), 1, 1.0, "h", {"duration": 16.0})
        ids = catalog.add_windows(vid, window_results(enc.labels, [Window(i, 4.0 * i, 4.0 * i + 4, ()) for i in range(4)],
                                                  probs, embs))
        catalog.add_visual_vectors(ids, vectors)
        catalog.finish_video(vid)
    found = visual_hits(catalog, open_vectors(catalog, space=VISUALS)[0],
                       VisualQuery(query, lambda c: np.asarray(c, dtype=np.float32), 0.5, 0.05), Filters(), 10)
    assert [(h.start, h.end) for h in found] == [(0.0, 8.0)] and found[0].score == pytest.approx(0.9, abs=1e-3)  # float16 storage
