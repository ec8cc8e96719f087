from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from vsearch import IndexMissing, IndexUnusable, ModelMismatch
from vsearch.core.home import Home
from vsearch.search import keyword
from vsearch.search.catalog import SCHEMA_VERSION, Catalog, WindowResult
from vsearch.search.hits import Filters
from vsearch.search.vectors import current_file, open_vectors


def add_video(cat: Catalog, path: str, labels: list[list[tuple[str, float]]], vectors: np.ndarray) -> int:
    with cat.transaction():
        vid = cat.start_video(path, 10, 1.0, f"fp-{path}", {"duration": 4.0 * len(labels)})
        cat.add_windows(vid, [WindowResult(i, 4.0 * i, 4.0 * (i + 1), lab, vec)
                              for i, (lab, vec) in enumerate(zip(labels, vectors))])
        cat.finish_video(vid)
    return vid


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    c = Catalog(tmp_path / "idx")
    c.bind_model("m", "m|fp", 4, ["eating spaghetti", "bouncing on trampoline", "dancing", "NEAR \"odd\" * label"])
    yield c
    c.close()


def test_schema_is_versioned_and_a_newer_index_is_refused_untouched(tmp_path: Path) -> None:
    c = Catalog(tmp_path / "idx")
    assert c.stats()["schema_version"] == SCHEMA_VERSION
    c.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    c.close()
    before = (tmp_path / "idx" / "vsearch.db").read_bytes()
    with pytest.raises(IndexUnusable, match="newer vsearch"):
        Catalog(tmp_path / "idx")
    assert (tmp_path / "idx" / "vsearch.db").read_bytes() == before


def test_corrupt_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "idx"
    home.mkdir()
    (home / "vsearch.db").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(IndexUnusable, match="left untouched"):
        Catalog(home)
    assert (home / "vsearch.db").read_bytes() == b"definitely not sqlite" * 100


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexMissing, match="vsearch index"):
        Catalog(tmp_path / "nothing", create=False)


def test_a_second_model_is_refused(cat: Catalog) -> None:
    cat.bind_model("m", "m|fp", 4, [])  # same model: fine
    with pytest.raises(ModelMismatch, match="cannot mix"):
        cat.bind_model("other", "other|fp", 4, ["x"])


def test_keyword_search_merges_adjacent_windows_into_moments(cat: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "party.mp4"
    path.write_bytes(b"x")
    spag = [("eating spaghetti", 0.9), ("dancing", 0.1)]
    dance = [("dancing", 0.8), ("eating spaghetti", 0.2)]
    add_video(cat, str(path), [spag, spag, dance, spag], np.eye(4, dtype=np.float32))
    hits = keyword.search(cat, "eating spaghetti", semantic=False).hits
    spaghetti = [(h.start, h.end) for h in hits if h.label == "eating spaghetti" and h.score > 0.5]
    assert spaghetti == [(0.0, 8.0), (12.0, 16.0)]
    assert hits[0].label == "eating spaghetti" and hits[0].query_similarity == 1.0
    assert keyword.search(cat, "spagh", semantic=False).hits[0].label == "eating spaghetti"  # prefix match


@pytest.mark.parametrize("text", ['"', '*', 'NEAR', "' OR 1=1 --", 'label"*', "odd) OR (x", "a:b", "^", '"dan', "dan*"])
def test_query_syntax_is_matched_literally(cat: Catalog, tmp_path: Path, text: str) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(b"x")
    add_video(cat, str(path), [[("dancing", 0.9)]], np.eye(4, dtype=np.float32)[:1])
    assert [h.label for h in keyword.search(cat, "dancing", semantic=False).hits] == ["dancing"]
    hits = keyword.search(cat, text, semantic=False).hits  # raises if the text reached FTS5 as syntax
    # Only the word "dan" is there to match, as a prefix of "dancing"; FTS syntax matches nothing.
    assert [h.label for h in hits] == (["dancing"] if "dan" in text else [])
    assert cat.stats()["videos"] == 1


def test_odd_label_is_found_by_its_words(cat: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(b"x")
    add_video(cat, str(path), [[('NEAR "odd" * label', 0.9)]], np.eye(4, dtype=np.float32)[:1])
    assert keyword.search(cat, 'NEAR "odd"', semantic=False).hits[0].label == 'NEAR "odd" * label'


def test_filters(cat: Catalog, tmp_path: Path) -> None:
    for sub, clips in (("a", 1), ("b", 3)):
        (tmp_path / sub).mkdir()
        p = tmp_path / sub / "v.mp4"
        p.write_bytes(b"x")
        add_video(cat, str(p), [[("dancing", 0.5 + 0.1 * clips)]] * clips, np.eye(4, dtype=np.float32)[:clips])

    def folders(filters: Filters) -> set[str]:
        return {Path(h.path).parent.name for h in keyword.search(cat, "dancing", filters=filters).hits}

    assert folders(Filters(under=str(tmp_path / "a"))) == {"a"}
    assert folders(Filters(min_duration=8)) == {"b"}
    assert folders(Filters(max_duration=8)) == {"a"}
    assert folders(Filters(min_score=0.7)) == {"b"}


def test_vectors_are_rebuilt_when_missing_stale_or_corrupt(cat: Catalog, tmp_path: Path) -> None:
    p = tmp_path / "v.mp4"
    p.write_bytes(b"x")
    add_video(cat, str(p), [[("dancing", 0.9)]] * 3, np.eye(4, dtype=np.float32)[:3])
    index, rebuilt = open_vectors(cat)
    assert rebuilt and len(index) == 3
    assert open_vectors(cat)[1] is False  # saved and in step now
    current_file(cat.home).write_bytes(b"garbage")
    index, rebuilt = open_vectors(cat)
    assert rebuilt and len(index) == 3
    p2 = tmp_path / "w.mp4"
    p2.write_bytes(b"y")
    add_video(cat, str(p2), [[("dancing", 0.9)]], np.eye(4, dtype=np.float32)[3:])  # FAISS not told
    index, rebuilt = open_vectors(cat)
    assert rebuilt and len(index) == 4
    current_file(cat.home).unlink()
    assert len(open_vectors(cat)[0]) == 4


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with Home(tmp_path).writer_lock():
        import subprocess
        import sys

        code = ("from vsearch import IndexBusy\nfrom vsearch.core.home import Home\n"
                f"try:\n  with Home.at({str(tmp_path)!r}).writer_lock(): print('got it')\n"
                "except IndexBusy as e: print('refused:', e)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.startswith("refused: another `vsearch index`")


def test_readers_see_the_last_commit_while_a_writer_holds_a_transaction(cat: Catalog, tmp_path: Path) -> None:
    p = tmp_path / "v.mp4"
    p.write_bytes(b"x")
    add_video(cat, str(p), [[("dancing", 0.9)]], np.eye(4, dtype=np.float32)[:1])
    reader = Catalog(cat.home)
    with cat.transaction():
        cat.start_video(str(tmp_path / "half.mp4"), 1, 1.0, "fp", {})
        assert len(keyword.search(reader, "dancing", semantic=False).hits) == 1  # WAL: the reader is not blocked
        assert reader.stats()["incomplete"] == 0
    reader.close()
    assert sqlite3.connect(cat.db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_large_catalogs_switch_to_ivf_with_high_recall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vsearch.search.vectors as vectors_module

    monkeypatch.setattr(vectors_module, "EXACT_MAX", 500)
    rng = np.random.default_rng(0)
    cat = Catalog(tmp_path / "big")
    cat.bind_model("m", "m|fp", 32, ["a"])
    topics = rng.standard_normal((20, 32))
    for v in range(120):  # 120 videos x 8 clips = 960 clips, clustered like real ones
        base = topics[v % 20] + 0.3 * rng.standard_normal(32)
        vecs = base + 0.2 * rng.standard_normal((8, 32))
        vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        p = tmp_path / f"v{v}.mp4"
        p.write_bytes(b"x")
        add_video(cat, str(p), [[("a", 0.5)]] * 8, vecs)
    index, rebuilt = open_vectors(cat)
    assert rebuilt and index.kind == "ivf" and len(index) == 960
    again, rebuilt = open_vectors(cat)
    assert not rebuilt and again.kind == "ivf"  # saved and reloaded as IVF
    ids, vecs, _ = cat.window_vectors(1)
    exact = vecs @ np.concatenate([v for _, v in cat.iter_vectors()]).T
    all_ids = np.concatenate([i for i, _ in cat.iter_vectors()])
    truth = [set(all_ids[np.argsort(-row)[:10]]) for row in exact]
    found = again.search(vecs, 10)[1]
    recall = np.mean([len(t & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.95
    again.remove(ids)  # IVF supports the indexer's removals too
    assert len(again) == 952


def test_one_long_video_does_not_crowd_out_the_others(cat: Catalog, tmp_path: Path) -> None:
    long = tmp_path / "long.mp4"
    long.write_bytes(b"x")
    rows = [[("dancing", 0.9 - 0.001 * i)] if i % 2 == 0 else [("eating spaghetti", 0.9)] for i in range(40)]
    add_video(cat, str(long), rows, np.tile(np.eye(4, dtype=np.float32), (10, 1)))
    for i in range(5):
        p = tmp_path / f"short{i}.mp4"
        p.write_bytes(b"x")
        add_video(cat, str(p), [[("dancing", 0.5)]], np.eye(4, dtype=np.float32)[:1])
    hits = keyword.search(cat, "dancing", limit=25, semantic=False).hits
    assert {Path(h.path).name for h in hits} >= {f"short{i}.mp4" for i in range(5)}
    strong = keyword.search(cat, "dancing", filters=Filters(min_score=0.7), semantic=False).hits
    assert {Path(h.path).name for h in strong} == {"long.mp4"} and all(h.score >= 0.7 for h in strong)


def index_at_schema(home: Path, version: int) -> sqlite_utils.Database:
    """A catalog as vsearch left it at schema `version`: its migrations up to there, and no further."""
    from vsearch.search.catalog import MIGRATIONS

    home.mkdir()
    db = sqlite_utils.Database(home / "vsearch.db")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for number, (_name, step) in enumerate(MIGRATIONS[:version], start=1):
        step(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ["schema_version", str(number)])
    return db


def test_an_index_made_before_content_hash_and_model_id_is_migrated(tmp_path: Path) -> None:
    """Schema 2 called the file hash column and the model's identity both "fingerprint"."""
    home = tmp_path / "old"
    db = index_at_schema(home, 2)
    for key, value in (("model", "m"), ("model_fingerprint", "m|fp"), ("dim", "4")):
        db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
    db.execute("INSERT INTO labels (name) VALUES ('dancing')")
    db.execute("INSERT INTO videos (path, name, size, mtime, fingerprint, status, indexed_at) "
               "VALUES ('/v/a.mp4', 'a mp4', 10, 1.0, 'hash-a', 'ok', 0)")
    db.conn.commit()
    db.close()

    cat = Catalog(home)
    assert cat.stats()["schema_version"] == SCHEMA_VERSION == 10
    assert cat.get_meta("migration_003") == "003_content_hash_and_model_id"
    assert cat.get_meta("model_fingerprint") is None and cat.get_meta("model_id") == "m|fp"
    assert cat.video("/v/a.mp4").content_hash == "hash-a"
    assert [v.path for v in cat.videos_with_content("hash-a")] == ["/v/a.mp4"]
    assert "videos_content_hash" in {i.name for i in cat.db["videos"].indexes}
    cat.bind_model("m", "m|fp", 4, ["dancing"])  # the model it was built with still fits
    with pytest.raises(ModelMismatch, match="cannot mix"):
        cat.bind_model("m", "m|retrained", 4, ["dancing"])
    with cat.transaction():  # the file-name search's triggers survive the renamed column
        cat.move_video(cat.video("/v/a.mp4").id, "/v/renamed clip.mp4", 10, 1.0)
    assert cat.db.execute("SELECT count(*) FROM videos_fts WHERE videos_fts MATCH 'renamed'").fetchone()[0] == 1
    cat.close()
    assert Catalog(home).stats()["schema_version"] == SCHEMA_VERSION  # opening again changes nothing



def test_an_index_whose_visuals_were_called_scenes_is_migrated_and_keeps_its_faiss_file(tmp_path: Path) -> None:
    """Schema 7 called what each window shows its scenes: table scene_vectors, meta scene_*, runs of
    kind 'scenes', FAISS files scenes.json and scenes-*.faiss. All of it takes the new name, nothing
    is lost, and the FAISS file is taken over in step, not rebuilt."""
    import json

    from vsearch.search.catalog import VISUALS, to_blob
    from vsearch.search.vectors import VectorIndex

    home = tmp_path / "old"
    db = index_at_schema(home, 7)
    meta = {"model": "m", "model_id": "m|fp", "dim": "4", "scene_model": "tiny-clip", "scene_model_id": "tiny-clip|scene=clip",
            "scene_dim": "3", "generation": "5"}
    for key, value in meta.items():
        db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
    db.execute("INSERT INTO videos (id, path, name, size, mtime, content_hash, status, indexed_at) "
               "VALUES (1, '/v/a.mp4', 'a mp4', 10, 1.0, 'hash-a', 'ok', 0)")
    vectors = np.eye(3, dtype=np.float32)[:2]
    for i in (0, 1):
        db.execute("INSERT INTO clips (id, video_id, idx, start, end, embedding) VALUES (?, 1, ?, ?, ?, ?)",
                   [i + 1, i, 4.0 * i, 4.0 * (i + 1), to_blob(np.ones(4))])
        db.execute("INSERT INTO scene_vectors VALUES (?, ?)", [i + 1, to_blob(vectors[i])])
    db.execute("INSERT INTO evidence_runs VALUES (1, 'scenes', 'tiny-clip', 2, NULL, NULL, 0)")
    db.conn.commit()
    db.close()
    old = VectorIndex(3)
    old.add([1, 2], vectors)
    import faiss

    faiss.write_index(old.index, str(home / "scenes-5-abcd.faiss"))
    (home / "scenes.json").write_text(json.dumps({"file": "scenes-5-abcd.faiss", "generation": 5, "count": 2, "dim": 3,
                                                  "kind": "flat"}))

    cat = Catalog(home)
    assert cat.stats()["schema_version"] == SCHEMA_VERSION and cat.get_meta("migration_008") == "008_visuals"
    assert "scene_vectors" not in cat.db.table_names() and cat.count(VISUALS) == 2 and cat.dim_of(VISUALS) == 3
    assert (cat.visual_model, cat.get_meta("visual_model_id"), cat.generation) == ("tiny-clip", "tiny-clip|scene=clip", 5)
    assert not [k for k in meta if k.startswith("scene_") and cat.get_meta(k) is not None]
    assert cat.db.execute("SELECT kind, model, found FROM evidence_runs").fetchall() == [("visuals", "tiny-clip", 2)]
    assert sorted(p.name for p in home.iterdir() if p.suffix in (".json", ".faiss")) == ["visuals-5-abcd.faiss",
                                                                                          "visuals.json"]
    index, rebuilt = open_vectors(cat, space=VISUALS)
    assert not rebuilt and len(index) == 2  # the same file, in step: nothing embedded or rebuilt again
    assert index.search(vectors[1:], 1)[1][0][0] == 2
    cat.close()
    assert Catalog(home).stats()["visual_windows"] == 2  # opening again changes nothing


def test_an_index_whose_windows_were_called_clips_is_migrated_whole(tmp_path: Path) -> None:
    """Schema 8 called a window a clip: tables clips and clip_labels, columns clip_id (a kind's own
    tables too), video_labels.clips and top_clips, and indexes named after them. All take the window's
    name; rows, ids, foreign keys and the id sequence stay, so search, copies and deletes go on. Its
    label vectors' column, text_model, names the sentence model that made them now."""
    from vsearch.search.catalog import to_blob

    home = tmp_path / "old"
    db = index_at_schema(home, 8)
    for key, value in {"model": "m", "model_id": "m|fp", "dim": "4"}.items():
        db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
    db.execute("INSERT INTO labels (id, name) VALUES (1, 'dancing')")
    db.execute("INSERT INTO videos (id, path, name, size, mtime, content_hash, status, indexed_at) "
               "VALUES (1, '/v/a.mp4', 'a mp4', 10, 1.0, 'hash-a', 'ok', 0)")
    for i in (0, 1, 2):
        db.execute("INSERT INTO clips (id, video_id, idx, start, end, embedding) VALUES (?, 1, ?, ?, ?, ?)",
                   [i + 1, i, 4.0 * i, 4.0 * (i + 1), to_blob(np.ones(4))])
    db.execute("DELETE FROM clips WHERE id = 3")  # the sequence remembers it: id 3 is never given again
    db.execute("INSERT INTO clip_labels VALUES (1, 1, 0.9), (2, 1, 0.4)")
    db.execute("INSERT INTO video_labels VALUES (1, 1, 0.9, 2, 2)")
    db.execute("INSERT INTO visual_vectors VALUES (1, ?), (2, ?)", [to_blob(np.ones(3)), to_blob(np.ones(3))])
    db.execute("CREATE TABLE copy_prints (id INTEGER PRIMARY KEY AUTOINCREMENT, "  # as the copies kind made it
               "clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE, t REAL, whole BLOB, middle BLOB)")
    db.execute("CREATE INDEX copy_prints_clip ON copy_prints(clip_id)")
    db.execute("INSERT INTO copy_prints (clip_id, t, whole, middle) VALUES (1, 0.5, x'00', x'00')")
    db.execute("INSERT INTO label_vectors VALUES (1, 'all-MiniLM-L6-v2', ?)", [np.ones(2, np.float32).tobytes()])
    db.conn.commit()
    db.close()

    cat = Catalog(home)
    assert cat.get_meta("migration_009") == "009_windows"
    tables = set(cat.db.table_names())
    assert {"windows", "window_labels"} <= tables and not {"clips", "clip_labels"} & tables
    schema = " ".join(sql for (sql,) in cat.db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
    names = [n for (n,) in cat.db.execute("SELECT name FROM sqlite_master")]
    assert "clip" not in re.sub(r"--[^\n]*", "", schema) and not [n for n in names if "clip" in n]
    assert [c.name for c in cat.db["video_labels"].columns][3:5] == ["windows", "top_windows"]
    assert cat.window_spans(1) == [(1, 0.0, 4.0), (2, 4.0, 8.0)]
    assert cat.get_meta("migration_010") == "010_sentence_model"  # and the label vectors name their model's kind
    ids, vectors = cat.label_vectors("all-MiniLM-L6-v2")
    assert ids == [1] and vectors.tolist() == [[1.0, 1.0]]
    hits, _ = keyword.label_hits(cat, "dancing", Filters(), 10, semantic=False)
    assert [(h.path, h.start, h.end, h.label) for h in hits] == [("/v/a.mp4", 0.0, 4.0, "dancing")]
    with cat.transaction():
        assert cat.add_windows(1, [WindowResult(3, 12.0, 16.0, [("dancing", 0.5)], np.ones(4, dtype=np.float32))]) == [4]
        cat.remove_videos([1])
    for table in ("windows", "window_labels", "visual_vectors", "copy_prints"):  # foreign keys followed the rename
        assert cat.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    cat.close()


def test_an_old_index_opened_by_several_at_once_is_migrated_once(tmp_path: Path) -> None:
    """A watcher and a search (or two searches) opening an index an older vsearch made: one takes
    each step, the others find it taken, and none is refused."""
    import threading

    home = tmp_path / "old"
    index_at_schema(home, 8).close()
    start, errors = threading.Barrier(4), []

    def open_it() -> None:
        start.wait()
        try:
            Catalog(home).close()
        except Exception as exc:  # any refusal is the failure this test reports
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Catalog(home).stats()["schema_version"] == SCHEMA_VERSION


def test_an_old_faiss_pointer_naming_a_moved_file_is_dropped_once_the_new_one_exists(tmp_path: Path) -> None:
    """A crash between moving the old FAISS file and writing its new pointer leaves the old pointer
    naming nothing: the space has no saved index, is rebuilt from SQLite, and the old pointer goes."""
    home = tmp_path / "idx"
    cat = Catalog(home)
    (home / "scenes.json").write_text('{"file": "scenes-1-gone.faiss", "generation": 1}')
    cat.close()
    cat = Catalog(home)  # the old pointer names a file already moved: left for now, never an error
    assert (home / "scenes.json").exists() and not (home / "visuals.json").exists()
    (home / "visuals.json").write_text("{}")  # the space saved again under its new name
    cat.close()
    Catalog(home).close()
    assert not (home / "scenes.json").exists()


def test_a_window_stored_twice_is_kept_once(tmp_path: Path) -> None:
    """Ray delivers at least once: a second copy of a (video, window) must not become a second clip."""
    from vsearch.search.catalog import WindowResult

    cat = Catalog(tmp_path / "home")
    cat.bind_model("m", "m|1", 4, ["dancing", "eating"])
    window = WindowResult(0, 0.0, 4.0, [("dancing", 0.9), ("eating", 0.1)], np.array([1.0, 0, 0, 0], dtype=np.float32))
    with cat.transaction():
        video = cat.start_video("/v/a.mp4", 10, 1.0, "hash-a", {})
        first = cat.add_windows(video, [window])
        again = cat.add_windows(video, [window, WindowResult(1, 4.0, 8.0, window.labels, window.embedding)])
    assert len(first) == 1 and len(again) == 1 and again[0] != first[0]  # only window 1 is new
    assert cat.db.execute("SELECT count(*) FROM windows").fetchone()[0] == 2
    assert cat.db.execute("SELECT count(*) FROM window_labels").fetchone()[0] == 4
    cat.close()
