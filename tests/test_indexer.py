from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vsearch.indexer.decode import Sampling
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search import query as q
from vsearch.search.catalog import Catalog
from vsearch.search.vectors import open_vectors
from vsearch.bench.synthetic import render_motion, write_video
from tests.conftest import FakeEncoder

FAST = IndexSettings(batch_size=4, workers=2, timeout=20)


def run(home: Path, roots: list[Path], encoder: FakeEncoder, settings: IndexSettings = FAST):
    cat = Catalog(home)
    try:
        return Indexer(cat, lambda: encoder, settings).run(roots)
    finally:
        cat.close()


def indexed_paths(home: Path) -> set[str]:
    cat = Catalog(home)
    try:
        return {r[0] for r in cat.db.execute("SELECT path FROM videos WHERE status = 'ok'")}
    finally:
        cat.close()


def test_index_stores_every_good_video_and_records_each_bad_one(library: Path, vsearch_home: Path, fake_encoder: FakeEncoder) -> None:
    report = run(vsearch_home, [library], fake_encoder)
    good = sorted(str(p) for p in library.glob("*.mp4"))
    assert report.indexed == len(good) == 12
    assert sorted(indexed_paths(vsearch_home)) == good
    reasons = {Path(p).name: r for p, r in report.failed}
    assert set(reasons) == {"empty.mp4", "random.mp4", "notes.mkv", "truncated.mp4"}
    assert "empty" in reasons["empty.mp4"]
    assert "not a readable video" in reasons["notes.mkv"]
    cat = Catalog(vsearch_home)
    assert cat.stats()["failed"] == 4
    assert {Path(p).name for p, _ in cat.failures()} == set(reasons)
    vectors, rebuilt = open_vectors(cat)
    assert not rebuilt and len(vectors) == cat.stats()["clips"] == 12  # saved in step by the run


def test_rerun_does_no_model_work_and_changes_are_picked_up(library: Path, vsearch_home: Path) -> None:
    first = FakeEncoder()
    run(vsearch_home, [library], first)
    assert first.clips == 12
    again = FakeEncoder()
    report = run(vsearch_home, [library], again)
    assert again.calls == 0 and report.indexed == 0 and report.unchanged == 16

    videos = sorted(library.glob("*.mp4"))
    moved = library / "sub" / "renamed clip.mp4"
    moved.parent.mkdir()
    videos[0].rename(moved)  # moved: keeps results, no model run
    shutil.copy2(videos[1], library / "copy.mp4")  # copied: reuses results
    videos[2].unlink()  # deleted: leaves the index
    os.utime(videos[3], (1, 1))  # touched only: same content
    changed = videos[4]
    write_video(changed, render_motion("growing", np.random.default_rng(99)))  # new content: re-indexed
    enc = FakeEncoder()
    report = run(vsearch_home, [library], enc)
    assert (report.moved, report.copied, report.removed, report.indexed) == (1, 1, 1, 1)
    assert enc.clips == 1  # only the modified file met the model
    paths = indexed_paths(vsearch_home)
    assert str(moved) in paths and str(videos[0]) not in paths
    assert str(library / "copy.mp4") in paths and str(videos[2]) not in paths
    assert str(changed) in paths
    cat = Catalog(vsearch_home)
    assert q.show(cat, str(library / "copy.mp4")).labels == q.show(cat, str(videos[1])).labels
    assert len(open_vectors(cat)[0]) == cat.stats()["clips"] == len(paths)


def test_search_finds_videos_by_label_and_moves_keep_them_findable(library: Path, vsearch_home: Path) -> None:
    run(vsearch_home, [library], FakeEncoder())
    cat = Catalog(vsearch_home)
    hits = q.search(cat, "moving", limit=50).hits
    assert hits and all(h.label == "moving" for h in hits[:5])
    assert hits == sorted(hits, key=lambda h: -h.score)
    old = Path(hits[0].path)
    clip_ids, vectors, _ = cat.clip_vectors(cat.video(str(old)).id)
    before = q.show(cat, str(old))
    cat.close()

    new = library / "moved here" / "renamed.mp4"
    new.parent.mkdir()
    old.rename(new)
    enc = FakeEncoder()
    report = run(vsearch_home, [library], enc)
    assert (report.moved, report.copied, report.removed, report.indexed) == (1, 0, 0, 0)
    assert enc.clips == 0  # no model work for a move
    cat = Catalog(vsearch_home)
    after = q.show(cat, str(new))
    assert (after.labels, after.clips) == (before.labels, before.clips)
    ids, vecs, _ = cat.clip_vectors(cat.video(str(new)).id)
    assert ids == clip_ids and np.array_equal(vecs, vectors)  # the same clips, not copies
    found = {h.path for h in q.search(cat, "moving", limit=50).hits}
    assert str(new) in found and str(old) not in found
    assert cat.video(str(old)) is None


def test_similar_finds_the_same_kind_first_and_leaves_out_the_query(tmp_path: Path, vsearch_home: Path) -> None:
    from vsearch.bench.synthetic import write_video

    root = tmp_path / "colours"
    rng = np.random.default_rng(0)
    for colour, rgb in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        for i in range(3):
            frames = np.clip(np.array(rgb) + rng.integers(-15, 15, (16, 32, 32, 3)), 0, 255).astype(np.uint8)
            write_video(root / f"{colour}{i}.mp4", frames, fps=8)
    run(vsearch_home, [root], FakeEncoder())
    cat = Catalog(vsearch_home)
    hits = q.similar_to_file(cat, root / "red0.mp4", limit=5)  # stored vectors: no model needed
    names = [Path(h.path).stem for h in hits]
    assert "red0" not in names
    assert set(names[:2]) == {"red1", "red2"}


def test_long_video_is_cut_into_windows_and_moments(tmp_path: Path, vsearch_home: Path) -> None:
    from vsearch.bench.synthetic import write_video

    # 12 s: dark for 4 s, bright for 8 s, at 8 fps
    frames = np.concatenate([np.full((32, 32, 32, 3), 10, np.uint8), np.full((64, 32, 32, 3), 240, np.uint8)])
    write_video(tmp_path / "v" / "day.mp4", frames, fps=8)
    run(vsearch_home, [tmp_path / "v"], FakeEncoder(), IndexSettings(sampling=Sampling(window_seconds=2), workers=1))
    cat = Catalog(vsearch_home)
    bright = [h for h in q.search(cat, "bright").hits if h.label == "bright"]
    assert [(h.start, h.end) for h in bright] == [(4.0, 12.0)]
    assert len(q.show(cat, str(tmp_path / "v" / "day.mp4")).clips) == 6


@pytest.mark.parametrize("name, reason", [
    ("hang.mp4", "decoder hung"),
    ("crash.mp4", "decoder crashed (SIGSEGV)"),
    ("hog.mp4", "out of memory"),
])
def test_a_decoder_that_hangs_crashes_or_hogs_memory_loses_only_its_file(
    library: Path, vsearch_home: Path, name: str, reason: str
) -> None:
    shutil.copy2(next(library.glob("*.mp4")), library / name)
    settings = IndexSettings(batch_size=4, workers=2, timeout=3, memory_limit=1 << 30,
                             reader="tests.faulty:read_windows")
    report = run(vsearch_home, [library], FakeEncoder(), settings)
    failed = dict((Path(p).name, r) for p, r in report.failed)
    assert reason in failed[name]
    assert report.indexed == 12  # every good video, including the ones decoded after the fault


def test_stop_request_saves_whole_batches_and_the_next_run_finishes(library: Path, vsearch_home: Path) -> None:
    cat = Catalog(vsearch_home)
    enc = FakeEncoder()
    report = Indexer(cat, lambda: enc, IndexSettings(batch_size=2, workers=1),
                     should_stop=lambda: enc.calls >= 2).run([library])
    assert report.interrupted and 0 < report.indexed < 12
    cat.close()
    assert len(indexed_paths(vsearch_home)) == report.indexed
    rest = FakeEncoder()
    report2 = run(vsearch_home, [library], rest)
    assert report2.indexed == 12 - report.indexed
    assert len(indexed_paths(vsearch_home)) == 12


def test_batched_pipelined_indexing_matches_one_clip_at_a_time(tmp_path: Path, library: Path, tiny_model: Path) -> None:
    """Batches of 8 from two decode workers give what one clip at a time through the model gives."""
    from vsearch.indexer.model import load_encoder
    from vsearch.indexer.pipeline import embed_file

    encoder = load_encoder(str(tiny_model), precision="bf16")
    homes = {}
    for name, settings in (("batched", IndexSettings(batch_size=8, workers=2, sampling=Sampling(window_seconds=0.5))),
                           ("single", IndexSettings(batch_size=1, workers=1, sampling=Sampling(window_seconds=0.5)))):
        homes[name] = tmp_path / name
        cat = Catalog(homes[name])
        Indexer(cat, lambda: encoder, settings).run([library])
        cat.close()

    def clips(home: Path) -> dict[tuple[str, int], tuple[list, np.ndarray]]:
        cat = Catalog(home)
        out = {}
        for path in sorted(library.glob("*.mp4")):
            vid = cat.video(str(path)).id
            _, vecs, _ = cat.clip_vectors(vid)
            for i, c in enumerate(q.show(cat, str(path), top=1).clips):
                out[(path.name, i)] = (c["labels"][0]["label"], vecs[i])
        cat.close()
        return out

    batched, single = clips(homes["batched"]), clips(homes["single"])
    assert batched.keys() == single.keys() and len(batched) == 12 * 4  # 2 s videos, 0.5 s windows
    agree = np.mean([batched[k][0] == single[k][0] for k in batched])
    cosine = min(float(batched[k][1] @ single[k][1]) for k in batched)
    assert agree >= 0.95 and cosine > 0.99
    # and the same as the model run directly on each clip of one file, one at a time
    path = sorted(library.glob("*.mp4"))[0]
    windows, probs, embs = embed_file(encoder, str(path), Sampling(window_seconds=0.5))
    for i in range(len(windows)):
        assert float(embs[i] @ batched[(path.name, i)][1]) > 0.99


def test_decode_workers_are_added_when_the_model_waits_for_frames(library: Path, vsearch_home: Path) -> None:
    settings = IndexSettings(batch_size=2, workers=1, reader="tests.faulty:slow_read_windows", rebalance_every=0.5)
    cat = Catalog(vsearch_home)
    report = Indexer(cat, lambda: FakeEncoder(), settings).run([library])
    assert report.indexed == 12
    assert report.timings["workers"] == min(12, os.cpu_count() or 1) and report.timings.get("workers_added", 0) >= 1 \
        or (os.cpu_count() or 1) == 1


def test_a_file_that_becomes_unreadable_drops_its_vectors_too(library: Path, vsearch_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run(vsearch_home, [library], FakeEncoder())
    victim = sorted(library.glob("*.mp4"))[0]
    os.utime(victim, (5, 5))  # changed on disk, and now it cannot be read
    import vsearch.indexer.pipeline as pipeline

    real = pipeline.fingerprint

    def failing(path: str, size: int) -> str:
        if path == str(victim):
            raise PermissionError(13, "Permission denied")
        return real(path, size)

    monkeypatch.setattr(pipeline, "fingerprint", failing)
    report = run(vsearch_home, [library], FakeEncoder())
    assert dict(report.failed)[str(victim)] == "cannot read (Permission denied)"
    cat = Catalog(vsearch_home)
    vectors, rebuilt = open_vectors(cat)
    assert not rebuilt and len(vectors) == cat.clip_count() == 11
