from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import faulty
from tests.conftest import FakeEncoder
from vsearch.bench.synthetic import render_motion, write_video
from vsearch.indexer.pipeline import Batch, ChangePlan, Copy, Indexer, IndexSettings, Move, plan_changes
from vsearch.search import browse, keyword, similar
from vsearch.search.catalog import Catalog
from vsearch.search.vectors import open_vectors
from vsearch.video.decode import Sampling, VideoInfo, Window, read_windows
from vsearch.video.files import DEFAULT_EXCLUDES
from vsearch.video.workers import Chunk, Failed, Finished

FAST = IndexSettings(batch_size=4, workers=2, timeout=20)


def run(home: Path, roots: list[Path], encoder: FakeEncoder, settings: IndexSettings = FAST, read=read_windows):
    cat = Catalog(home)
    try:
        return Indexer(cat, lambda: encoder, settings, read=read).run(roots)
    finally:
        cat.close()


def indexed_paths(home: Path) -> set[str]:
    cat = Catalog(home)
    try:
        return {r[0] for r in cat.db.execute("SELECT path FROM videos WHERE status = 'ok'")}
    finally:
        cat.close()


def test_index_stores_every_good_video_and_records_each_bad_one(
    library: Path, vsearch_home: Path, fake_encoder: FakeEncoder
) -> None:
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
    assert not rebuilt and len(vectors) == cat.stats()["windows"] == 12  # saved in step by the run


def test_rerun_does_no_model_work_and_changes_are_picked_up(library: Path, vsearch_home: Path) -> None:
    first = FakeEncoder()
    report = run(vsearch_home, [library], first)
    assert first.windows == report.windows == 12
    with pytest.warns(DeprecationWarning, match="IndexReport.windows"):
        assert report.clips == 12  # its older name still answers
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
    assert enc.windows == 1  # only the modified file met the model
    paths = indexed_paths(vsearch_home)
    assert str(moved) in paths and str(videos[0]) not in paths
    assert str(library / "copy.mp4") in paths and str(videos[2]) not in paths
    assert str(changed) in paths
    cat = Catalog(vsearch_home)
    assert browse.show(cat, str(library / "copy.mp4")).labels == browse.show(cat, str(videos[1])).labels
    assert len(open_vectors(cat)[0]) == cat.stats()["windows"] == len(paths)


def test_search_finds_videos_by_label_and_moves_keep_them_findable(library: Path, vsearch_home: Path) -> None:
    run(vsearch_home, [library], FakeEncoder())
    cat = Catalog(vsearch_home)
    hits = keyword.search(cat, "moving", limit=50).hits
    assert hits and all(h.label == "moving" for h in hits[:5])
    assert hits == sorted(hits, key=lambda h: -h.score)
    old = Path(hits[0].path)
    window_ids, vectors, _ = cat.window_vectors(cat.video(str(old)).id)
    before = browse.show(cat, str(old))
    cat.close()

    new = library / "moved here" / "renamed.mp4"
    new.parent.mkdir()
    old.rename(new)
    enc = FakeEncoder()
    report = run(vsearch_home, [library], enc)
    assert (report.moved, report.copied, report.removed, report.indexed) == (1, 0, 0, 0)
    assert enc.windows == 0  # no model work for a move
    cat = Catalog(vsearch_home)
    after = browse.show(cat, str(new))
    assert (after.labels, after.windows) == (before.labels, before.windows)
    ids, vecs, _ = cat.window_vectors(cat.video(str(new)).id)
    assert ids == window_ids and np.array_equal(vecs, vectors)  # the same clips, not copies
    found = {h.path for h in keyword.search(cat, "moving", limit=50).hits}
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
    hits = similar.similar_to_file(cat, root / "red0.mp4", limit=5)  # stored vectors: no model needed
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
    bright = [h for h in keyword.search(cat, "bright").hits if h.label == "bright"]
    assert [(h.start, h.end) for h in bright] == [(4.0, 12.0)]
    assert len(browse.show(cat, str(tmp_path / "v" / "day.mp4")).windows) == 6


@pytest.mark.parametrize("name, reason", [
    ("hang.mp4", "decoder hung"),
    ("crash.mp4", "decoder crashed (SIGSEGV)"),
    ("hog.mp4", "out of memory"),
])
def test_a_decoder_that_hangs_crashes_or_hogs_memory_loses_only_its_file(
    library: Path, vsearch_home: Path, name: str, reason: str
) -> None:
    shutil.copy2(next(library.glob("*.mp4")), library / name)
    settings = IndexSettings(batch_size=4, workers=2, timeout=3, memory_limit=1 << 30)
    report = run(vsearch_home, [library], FakeEncoder(), settings, read=faulty.read_windows)
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


def test_batched_pipelined_indexing_matches_one_window_at_a_time(tmp_path: Path, library: Path, tiny_model: Path) -> None:
    """Batches of 8 from two decode workers give what one clip at a time through the model gives."""
    from vsearch.indexer.one_file import embed_windows
    from vsearch.model.encoder import load_encoder

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
            _, vecs, _ = cat.window_vectors(vid)
            for i, c in enumerate(browse.show(cat, str(path), top=1).windows):
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
    found = embed_windows(encoder, str(path), Sampling(window_seconds=0.5))
    windows, embs = found.windows, found.embeddings
    for i in range(len(windows)):
        assert float(embs[i] @ batched[(path.name, i)][1]) > 0.99


def test_decode_workers_are_added_when_the_model_waits_for_frames(library: Path, vsearch_home: Path) -> None:
    settings = IndexSettings(batch_size=2, workers=1, rebalance_every=0.5)
    cat = Catalog(vsearch_home)
    report = Indexer(cat, lambda: FakeEncoder(), settings, read=faulty.slow_read_windows).run([library])
    assert report.indexed == 12
    assert report.timings["workers"] == min(12, os.cpu_count() or 1) and report.timings.get("workers_added", 0) >= 1 \
        or (os.cpu_count() or 1) == 1


def test_a_file_that_becomes_unreadable_drops_its_vectors_too(library: Path, vsearch_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run(vsearch_home, [library], FakeEncoder())
    victim = sorted(library.glob("*.mp4"))[0]
    os.utime(victim, (5, 5))  # changed on disk, and now it cannot be read
    import vsearch.indexer.pipeline as pipeline

    real = pipeline.content_hash

    def failing(path: str, size: int) -> str:
        if path == str(victim):
            raise PermissionError(13, "Permission denied")
        return real(path, size)

    monkeypatch.setattr(pipeline, "content_hash", failing)
    report = run(vsearch_home, [library], FakeEncoder())
    assert dict(report.failed)[str(victim)] == "cannot read (Permission denied)"
    cat = Catalog(vsearch_home)
    vectors, rebuilt = open_vectors(cat)
    assert not rebuilt and len(vectors) == cat.window_count() == 11


# -- the planning step ----------------------------------------------------------------------


def plan_for(home: Path, roots: list[Path], **options: object) -> ChangePlan:
    cat = Catalog(home)
    try:
        return plan_changes(cat, roots, **options)
    finally:
        cat.close()


def test_plan_sorts_every_kind_of_change_and_writes_nothing(library: Path, vsearch_home: Path) -> None:
    run(vsearch_home, [library], FakeEncoder())
    videos = sorted(library.glob("*.mp4"))
    ids = {Path(p).name: vid for p, vid in Catalog(vsearch_home).paths_under([library]).items()}
    moved = library / "sub" / "moved.mp4"
    moved.parent.mkdir()
    videos[0].rename(moved)
    shutil.copy2(videos[1], library / "copy.mp4")
    videos[2].unlink()
    os.utime(videos[3], (1, 1))
    write_video(videos[4], render_motion("growing", np.random.default_rng(99)))
    before = (vsearch_home / "vsearch.db").read_bytes()

    plan = plan_for(vsearch_home, [library])
    assert (vsearch_home / "vsearch.db").read_bytes() == before  # planning only reads
    assert plan.found == 16 and plan.unchanged == 13  # 8 as they were, 1 touched, 4 that failed before
    assert [(vid, f.path) for vid, f in plan.touched] == [(ids[videos[3].name], str(videos[3]))]
    assert plan.reused == [Copy(ids[videos[1].name], plan.reused[0].file, False),
                           Move(ids[videos[0].name], plan.reused[1].file, False)]
    assert [s.file.path for s in plan.reused] == [str(library / "copy.mp4"), str(moved)]
    assert (plan.moved, plan.copied) == (1, 1)
    assert plan.removed == [ids[videos[2].name]]
    assert [j.file.path for j in plan.to_index] == [str(videos[4])]
    assert plan.failed == []  # the broken files failed before and are not tried again
    retry = plan_for(vsearch_home, [library], retry_failed=True)
    assert sorted(Path(j.file.path).name for j in retry.to_index) == sorted(
        [videos[4].name, "empty.mp4", "random.mp4", "notes.mkv", "truncated.mp4"])


def test_plan_applies_in_order_when_a_copy_reads_a_row_a_later_step_replaces(tmp_path: Path, vsearch_home: Path) -> None:
    """a.mp4 is a copy of p.mp4's old content, and p.mp4 now holds x.mp4's content: the copy must
    read p's row before p's new content replaces it."""
    root = tmp_path / "lib"
    write_video(root / "p.mp4", np.full((8, 32, 32, 3), 230, np.uint8), fps=4)  # bright
    write_video(root / "x.mp4", np.full((8, 32, 32, 3), 15, np.uint8), fps=4)  # dark
    run(vsearch_home, [root], FakeEncoder())

    def vector(name: str) -> np.ndarray:
        cat = Catalog(vsearch_home)
        try:
            return cat.window_vectors(cat.video(str(root / name)).id)[1][0]
        finally:
            cat.close()

    bright, dark = vector("p.mp4"), vector("x.mp4")
    assert float(bright @ dark) < 0.99
    shutil.copy2(root / "p.mp4", root / "a.mp4")
    shutil.copy2(root / "x.mp4", root / "p.mp4")
    enc = FakeEncoder()
    report = run(vsearch_home, [root], enc)
    assert enc.calls == 0 and (report.copied, report.indexed) == (2, 0)
    assert np.array_equal(vector("a.mp4"), bright) and np.array_equal(vector("p.mp4"), dark)
    cat = Catalog(vsearch_home)
    vectors, rebuilt = open_vectors(cat)
    assert not rebuilt and len(vectors) == cat.window_count() == 3


def test_a_rename_chain_moves_one_row_and_reindexes_what_lost_its_row(tmp_path: Path, vsearch_home: Path) -> None:
    """b -> c and a -> b: b's row gives way to a's, so c (b's old content) meets the model again."""
    root = tmp_path / "lib"
    for name, level in (("a.mp4", 20), ("b.mp4", 120), ("z.mp4", 240)):
        write_video(root / name, np.full((8, 32, 32, 3), level, np.uint8), fps=4)
    run(vsearch_home, [root], FakeEncoder())
    (root / "b.mp4").rename(root / "c.mp4")
    (root / "a.mp4").rename(root / "b.mp4")
    plan = plan_for(vsearch_home, [root])
    assert [(type(s).__name__, Path(s.file.path).name, s.replaces) for s in plan.reused] == [("Move", "b.mp4", True)]
    assert [Path(j.file.path).name for j in plan.to_index] == ["c.mp4"] and plan.removed == []
    enc = FakeEncoder()
    report = run(vsearch_home, [root], enc)
    assert (report.moved, report.indexed, report.removed, enc.windows) == (1, 1, 0, 1)
    assert indexed_paths(vsearch_home) == {str(root / n) for n in ("b.mp4", "c.mp4", "z.mp4")}
    cat = Catalog(vsearch_home)
    assert len(open_vectors(cat)[0]) == cat.window_count() == 3


# -- excluded folders ----------------------------------------------------------------------


def test_default_and_asked_for_excludes_leave_folders_out(tmp_path: Path, vsearch_home: Path) -> None:
    from vsearch.video.files import DEFAULT_EXCLUDES, find_videos

    root = tmp_path / "lib"
    clip = np.full((8, 32, 32, 3), 100, np.uint8)
    for rel in ("keep/a.mp4", "@eaDir/a.mp4/SYNOPHOTO_FILM.mp4", "#recycle/b.mp4", "node_modules/x/c.mp4",
                ".Trash-1000/files/d.mp4", "raw/e.mp4", "keep/f.part.mp4", "deep/raw/g.mp4", "take/h.mp4"):
        write_video(root / rel, clip, fps=4)

    def found(exclude: tuple[str, ...]) -> list[str]:
        return sorted(os.path.relpath(f.path, root) for f in find_videos([root], exclude=exclude))

    assert found(DEFAULT_EXCLUDES) == ["deep/raw/g.mp4", "keep/a.mp4", "keep/f.part.mp4", "raw/e.mp4", "take/h.mp4"]
    # names (folders or files) and whole paths
    assert found(DEFAULT_EXCLUDES + ("raw", "*.part.mp4", str(root / "take"))) == ["keep/a.mp4"]
    assert found(("*/deep/*",)) == ["#recycle/b.mp4", "@eaDir/a.mp4/SYNOPHOTO_FILM.mp4", "keep/a.mp4",
                                    "keep/f.part.mp4", "node_modules/x/c.mp4", "raw/e.mp4", "take/h.mp4"]


def test_a_file_in_a_newly_excluded_folder_leaves_the_index_like_a_deleted_one(library: Path, vsearch_home: Path) -> None:
    raw = library / "raw"
    raw.mkdir()
    shutil.move(str(sorted(library.glob("*.mp4"))[0]), raw / "take1.mp4")
    run(vsearch_home, [library], FakeEncoder())
    assert str(raw / "take1.mp4") in indexed_paths(vsearch_home)
    enc = FakeEncoder()
    report = run(vsearch_home, [library], enc, IndexSettings(batch_size=4, workers=2,
                                                              exclude=DEFAULT_EXCLUDES + ("raw",)))
    assert (report.removed, report.found, report.indexed, enc.calls) == (1, 15, 0, 0)
    assert str(raw / "take1.mp4") not in indexed_paths(vsearch_home) and len(indexed_paths(vsearch_home)) == 11
    cat = Catalog(vsearch_home)
    vectors, rebuilt = open_vectors(cat)
    assert not rebuilt and len(vectors) == cat.window_count() == 11
    assert not [h for h in keyword.search(cat, "take1").hits]


# -- batches and the batch store -------------------------------------------------------------


def _window(i: int) -> Window:
    return Window(i, float(i), float(i + 1), tuple(range(4)))


def test_a_batch_keeps_a_video_open_until_its_last_window_is_taken() -> None:
    info = VideoInfo(frames=40, fps=10.0, width=32, height=32)
    frames = np.zeros((3, 4, 8, 8, 3), np.uint8)
    batch = Batch()
    batch.add(Chunk(0, info, [_window(0), _window(1), _window(2)], frames, 0.1))
    batch.add(Finished(0))
    batch.add(Chunk(1, info, [_window(0), _window(1)], frames[:2], 0.1))
    batch.add(Chunk(2, info, [_window(0)], frames[:1], 0.1))
    batch.add(Failed(2, "decoder hung"))
    assert [c.key for c in batch.windows] == [0, 0, 0, 1, 1]  # a failed video's clips never reach the model
    first = batch.take(2)
    assert [(c.key, c.window.index) for c in first.windows] == [(0, 0), (0, 1)]
    assert first.finished == [] and first.failed == [(2, "decoder hung")]  # video 0 goes on into the rest
    second = batch.take(2)
    assert [(c.key, c.window.index) for c in second.windows] == [(0, 2), (1, 0)]
    assert second.finished == [0] and second.failed == []
    assert [c.key for c in batch.windows] == [1] and batch.finished == []


def test_the_batch_store_marks_a_video_ok_only_with_its_last_window(tmp_path: Path, vsearch_home: Path) -> None:
    from vsearch.indexer.pipeline import BatchStore, EncodedWindow, IndexJob, IndexReport, Vectors, window_results
    from vsearch.search.catalog import ACTIONS
    from vsearch.video.files import FoundFile

    cat = Catalog(vsearch_home)
    enc = FakeEncoder()
    cat.bind_model(enc.name, enc.model_id, enc.dim, enc.labels)
    kept = Vectors()
    kept.open(cat, ACTIONS)
    vectors = kept.spaces[ACTIONS.name][1]
    jobs = [IndexJob(FoundFile(str(tmp_path / f"{n}.mp4"), 10, 1.0), f"hash-{n}") for n in "abc"]
    report = IndexReport()
    store = BatchStore(cat, kept, jobs, report)
    info = VideoInfo(frames=40, fps=10.0, width=32, height=32)
    probs, embs = enc.encode(np.random.default_rng(0).integers(0, 255, (4, 4, 16, 16, 3), dtype=np.uint8))
    results = window_results(enc.labels, [_window(i) for i in range(4)], probs, embs)

    def status() -> dict[str, str]:
        return dict(cat.db.execute("SELECT path, status FROM videos").fetchall())


    settled = store.store([EncodedWindow(0, info, results[0]), EncodedWindow(1, info, results[1])])
    assert settled == [] and set(status().values()) == {"indexing"} and len(vectors) == 0
    assert cat.is_empty()  # a half-stored video is not searchable
    settled = store.store([EncodedWindow(0, info, results[2])], finished=[0, 2], failed=[(1, "decoder crashed")])
    assert settled == [job.file.path for job in jobs]
    assert status() == {jobs[0].file.path: "ok", jobs[1].file.path: "failed", jobs[2].file.path: "failed"}
    assert dict(cat.failures())[jobs[2].file.path] == "no frames could be decoded"
    assert len(vectors) == cat.window_count() == 2  # video 1's stored clip left with its failure
    assert (report.indexed, report.windows, len(report.failed), store.settled) == (1, 2, 2, 3)
    assert cat.db.execute("SELECT count(*) FROM windows").fetchone()[0] == 2


def test_a_model_other_than_the_index_s_is_refused_before_it_is_loaded(tmp_path: Path) -> None:
    from vsearch import ModelMismatch
    from vsearch.indexer.pipeline import index_model

    cat = Catalog(tmp_path / "idx")
    assert index_model(cat, None) is None  # a new index takes the default model
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert index_model(cat, str(folder)) == str(folder.resolve())
    cat.bind_model("m", "m|id", 4, ["a"])
    assert index_model(cat, None) == "m" and index_model(cat, "m") == "m"
    with pytest.raises(ModelMismatch, match="built with model 'm'; it cannot mix in vectors from 'other'"):
        index_model(cat, "other")


def test_the_run_summary_reads_right_in_the_singular_and_the_plural() -> None:
    from vsearch.indexer.pipeline import IndexReport

    one = IndexReport(found=1, indexed=1, windows=1, failed_before=1, interrupted=True,
                      timings={"wall": 2.04, "decode": 0.5, "model": 1.25, "store": 0.06, "workers": 1})
    assert one.summary_lines() == [
        ("1 video found: 1 indexed (1 window), 0 unchanged, 0 failed, 1 failed before (--retry-failed to try again) "
         "in 2.0s"),
        "time: decode 0.5s (in 1 worker process), model 1.2s, store 0.1s",
        "stopped early: everything above is saved; run the same command to finish",
    ]
    many = IndexReport(found=16, indexed=10, windows=12, unchanged=2, moved=1, copied=1, removed=3,
                       failed=[("/v/a.mp4", "empty file"), ("/v/b.mp4", "decoder hung")],
                       timings={"wall": 9.0, "decode": 1.0, "model": 6.0, "store": 0.5, "workers": 3})
    assert many.summary_lines() == [
        "16 videos found: 10 indexed (12 windows), 2 unchanged, 1 moved, 1 copied, 3 removed, 2 failed in 9.0s",
        "time: decode 1.0s (in 3 worker processes), model 6.0s, store 0.5s",
        "skipped /v/a.mp4: empty file",
        "skipped /v/b.mp4: decoder hung",
    ]
    assert IndexReport(found=4, unchanged=4).summary_lines() == [
        "4 videos found: 0 indexed (0 windows), 4 unchanged, 0 failed in 0.0s"]
