"""The catalog: SQLite is the source of truth, embeddings included; FAISS is derived from it.

This module is the one place that knows the schema. SQLite runs in WAL mode so searches read
while an index run writes, and every write the indexer makes is one transaction per batch, so a
kill loses at most the batch in flight. The schema is versioned with named migrations, and an
index made by a newer vsearch is refused rather than touched.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from vsearch.core.errors import IndexMissing, IndexUnusable, ModelMismatch
from vsearch.core.home import Home

TOP_K = 5  # labels kept per window and per video


@dataclass(frozen=True)
class VectorSpace:
    """Where a kind of evidence keeps one vector per item, each space with a FAISS index of its own:
    `rows` lists them as (id, video_id, start, end, vector), and the meta key `dim_key` holds their
    dimension. `per_window`: the ids are window ids (one vector per window); else the kind's own."""

    name: str
    rows: str
    dim_key: str
    per_window: bool = True


# The video model's window embeddings (what happens), kept in the windows table itself.
ACTIONS = VectorSpace("actions", "SELECT c.id AS id, c.video_id AS video_id, c.start AS start, c.end AS end, "
                               "c.embedding AS vector FROM windows c", "dim")
# The image-text model's vector of each window (what it shows).
VISUALS = VectorSpace("visuals", "SELECT v.window_id AS id, c.video_id AS video_id, c.start AS start, c.end AS end, "
                                 "v.vector AS vector FROM visual_vectors v JOIN windows c ON c.id = v.window_id", "visual_dim")


def _m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE videos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,            -- file name made searchable: separators become spaces
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            fingerprint TEXT NOT NULL,
            duration REAL, fps REAL, width INTEGER, height INTEGER,
            status TEXT NOT NULL,          -- 'indexing' until all clips are stored, then 'ok'; or 'failed'
            error TEXT,
            indexed_at REAL NOT NULL
        );
        CREATE INDEX videos_fingerprint ON videos(fingerprint);
        CREATE INDEX videos_status ON videos(status);
        CREATE TABLE clips (
            -- AUTOINCREMENT: a deleted clip's id is never reused, so a stale FAISS entry can never
            -- pass for a new clip
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            start REAL NOT NULL,
            end REAL NOT NULL,
            embedding BLOB NOT NULL        -- float16, L2-normalised
        );
        CREATE INDEX clips_video ON clips(video_id, idx);
        CREATE TABLE labels (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        );
        CREATE TABLE clip_labels (
            clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
            label_id INTEGER NOT NULL REFERENCES labels(id),
            score REAL NOT NULL,
            PRIMARY KEY (clip_id, label_id)
        ) WITHOUT ROWID;
        -- keyword search reads clips of a label best-first through this index, not through FTS ranking
        CREATE INDEX clip_labels_label ON clip_labels(label_id, score DESC);
        CREATE TABLE video_labels (
            video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
            label_id INTEGER NOT NULL REFERENCES labels(id),
            score REAL NOT NULL,           -- best clip score of this label in the video
            clips INTEGER NOT NULL,        -- clips that have it in their top-k
            top_clips INTEGER NOT NULL,    -- clips where it is the best label: the video "carries" it
            PRIMARY KEY (video_id, label_id)
        ) WITHOUT ROWID;
        CREATE INDEX video_labels_label ON video_labels(label_id, score DESC);
        """
    )
    db.table("labels").enable_fts(["name"], create_triggers=True, tokenize="unicode61")
    db.table("videos").enable_fts(["name"], create_triggers=True, tokenize="unicode61")


def _m002_label_vectors(db: sqlite_utils.Database) -> None:
    # Sentence embeddings of label names, for free-text queries; filled once per vocabulary.
    db.executescript(
        """
        CREATE TABLE label_vectors (
            label_id INTEGER PRIMARY KEY REFERENCES labels(id),
            text_model TEXT NOT NULL,
            vector BLOB NOT NULL
        );
        """
    )


def _m003_content_hash_and_model_id(db: sqlite_utils.Database) -> None:
    # "fingerprint" named two things: the hash of a file's content (a column) and the identity
    # of the model that made the vectors (a meta key). Each gets its own name.
    # One statement at a time: executescript would commit the migration's transaction first.
    for statement in (
        "ALTER TABLE videos RENAME COLUMN fingerprint TO content_hash",
        "DROP INDEX videos_fingerprint",
        "CREATE INDEX videos_content_hash ON videos(content_hash)",
        "UPDATE meta SET key = 'model_id' WHERE key = 'model_fingerprint'",
    ):
        db.execute(statement)


def _m004_unique_clip_window(db: sqlite_utils.Database) -> None:
    # A Ray run delivers results at least once: a retried actor may send a window twice. One row
    # per (video, window) makes a second delivery a no-op instead of a duplicate clip.
    db.execute(
        "DELETE FROM clips WHERE id NOT IN (SELECT min(id) FROM clips GROUP BY video_id, idx)"
    )
    db.execute("DROP INDEX clips_video")
    db.execute("CREATE UNIQUE INDEX clips_video ON clips(video_id, idx)")


def _m005_scene_vectors(db: sqlite_utils.Database) -> None:
    # What each window shows, by the index's image-text model (meta scene_model, scene_model_id,
    # scene_dim): one vector per clip, in its own FAISS index, for searching by any description.
    db.execute(
        """
        CREATE TABLE scene_vectors (
            clip_id INTEGER PRIMARY KEY REFERENCES clips(id) ON DELETE CASCADE,
            vector BLOB NOT NULL           -- float16, L2-normalised
        )
        """
    )


def _m006_retry_lost_workers(db: sqlite_utils.Database) -> None:
    # Earlier versions recorded a file as failed whenever its decode worker was lost, even when the
    # workers could not start at all (a script on standard input): such files get one more try by
    # the next index run, under the rule that blames a file only for a fault that follows it. Status
    # 'retry' is not settled: plan_changes indexes such a file as if it were new.
    db.execute("UPDATE videos SET status = 'retry' WHERE status = 'failed' AND (error LIKE 'decoder exited unexpectedly%' "
               "OR error LIKE 'decoder crashed%' OR error LIKE 'decoder hung%')")


def _m007_evidence_runs(db: sqlite_utils.Database) -> None:
    # Which kind of evidence ran on which video with which model: a video the speech model heard
    # nothing in differs from one it has not heard yet, and a new kind (or model) is filled in for
    # exactly the videos that lack it. Filled here for what earlier versions stored.
    db.execute(
        """
        CREATE TABLE evidence_runs (
            video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,            -- the kind of evidence: labels, scenes, speech, ...
            model TEXT NOT NULL,           -- the model (or reader) that made it
            found INTEGER NOT NULL,        -- items it stored; 0: it ran and found nothing (a silent video)
            error TEXT,                    -- why it could not run on this video; NULL when it ran
            detail TEXT,                   -- what else it read, as it was (files beside the video): changed, it runs again
            at REAL NOT NULL,
            PRIMARY KEY (video_id, kind)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX evidence_runs_kind ON evidence_runs(kind, model)")
    # The language spoken in a video, as the speech model heard it: shown, and a search filter.
    db.execute("ALTER TABLE videos ADD COLUMN language TEXT")
    db.execute("INSERT INTO evidence_runs SELECT v.id, 'labels', m.value, count(c.id), NULL, NULL, v.indexed_at "
               "FROM videos v JOIN clips c ON c.video_id = v.id JOIN meta m ON m.key = 'model' "
               "WHERE v.status = 'ok' GROUP BY v.id")
    db.execute("INSERT INTO evidence_runs SELECT v.id, 'scenes', m.value, count(s.clip_id), NULL, NULL, v.indexed_at "
               "FROM videos v JOIN clips c ON c.video_id = v.id JOIN meta m ON m.key = 'scene_model' "
               "LEFT JOIN scene_vectors s ON s.clip_id = c.id WHERE v.status = 'ok' GROUP BY v.id "
               "HAVING count(s.clip_id) = count(c.id)")


def _m008_visuals(db: sqlite_utils.Database) -> None:
    # What each window shows was called its "scene", which reads as shot detection: it is its
    # visuals. The table, the image-text model's meta keys and its runs take the new name; its
    # vectors and the catalog generation stay as they were, so the FAISS file saved for them stays in
    # step (core.home takes it over under the new name: Home.adopt_renamed_spaces).
    db.execute("ALTER TABLE scene_vectors RENAME TO visual_vectors")
    for key in ("model", "model_id", "dim", "off"):
        db.execute("UPDATE meta SET key = ? WHERE key = ?", [f"visual_{key}", f"scene_{key}"])
    db.execute("UPDATE evidence_runs SET kind = 'visuals' WHERE kind = 'scenes'")


# What migration 009 renamed: a window of a video (what every kind of evidence describes) had been
# called a clip, the word for what `vsearch clip` cuts out of a video.
WINDOW_TABLES = {"clips": "windows", "clip_labels": "window_labels"}
WINDOW_COLUMNS = {"clip_id": "window_id", "clips": "windows", "top_clips": "top_windows"}


def _m009_windows(db: sqlite_utils.Database) -> None:
    # Tables, columns and indexes take the window's name, in every table that has them (a kind of
    # evidence's own tables too); rows, ids and the catalog generation stay, so FAISS files stay in step.
    for old, new in WINDOW_TABLES.items():
        db.execute(f"ALTER TABLE {old} RENAME TO {new}")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = {r[1] for r in db.execute(f'PRAGMA table_info("{table}")')}
        for old, new in WINDOW_COLUMNS.items():
            if old in columns:
                db.execute(f'ALTER TABLE "{table}" RENAME COLUMN {old} TO {new}')
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                         "AND name LIKE '%clip%'").fetchall()
    for name, sql in indexes:
        renamed = name.replace("clips", "windows").replace("clip", "window")
        db.execute(f'DROP INDEX "{name}"')
        db.execute(sql.replace(name, renamed, 1))


def _m010_sentence_model(db: sqlite_utils.Database) -> None:
    # The model that matches label names by meaning is the sentence model; "text model" names the
    # image-text model `--text-model` picks. The label vectors' column says which made them.
    db.execute("ALTER TABLE label_vectors RENAME COLUMN text_model TO sentence_model")


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_label_vectors", _m002_label_vectors),
    ("003_content_hash_and_model_id", _m003_content_hash_and_model_id),
    ("004_unique_clip_window", _m004_unique_clip_window),
    ("005_scene_vectors", _m005_scene_vectors),
    ("006_retry_lost_workers", _m006_retry_lost_workers),
    ("007_evidence_runs", _m007_evidence_runs),
    ("008_visuals", _m008_visuals),
    ("009_windows", _m009_windows),
    ("010_sentence_model", _m010_sentence_model),
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class VideoRow:
    id: int
    path: str
    size: int
    mtime: float
    content_hash: str
    status: str
    error: str | None
    duration: float | None
    fps: float | None = None


@dataclass(frozen=True)
class WindowResult:
    """What the model said about one window: top-k (label, score) and the embedding."""

    idx: int
    start: float
    end: float
    labels: list[tuple[str, float]]
    embedding: np.ndarray


def _under(roots: Iterable[Path]) -> tuple[str, list[str]]:
    """SQL that keeps the paths below any of these folders (or equal to these files), and its arguments."""
    clauses, args = [], []
    for root in roots:
        prefix = str(root).rstrip(os.sep) + os.sep
        clauses.append("path = ? OR path LIKE ? ESCAPE '\\'")
        args += [str(root), prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"]
    return ("(" + " OR ".join(clauses) + ")") if clauses else "", args


def searchable_name(path: str) -> str:
    stem = Path(path).name
    for ch in "._-+()[]{},":
        stem = stem.replace(ch, " ")
    return stem


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), dim).astype(np.float32)


class Catalog:
    """An open index folder: the SQLite catalog plus the FAISS file derived from it."""

    def __init__(self, home: Path | Home, create: bool = True):
        self.layout = Home.at(home)
        self.home = self.layout.root
        self.db_path = self.layout.db
        self._label_vectors: tuple[str, tuple[list[int], np.ndarray]] | None = None  # see label_vectors
        if not self.db_path.exists():
            if not create:
                raise IndexMissing(f"no index at {self.home}; run `vsearch index FOLDER` first")
            self.home.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self.layout.adopt_renamed_spaces()
        except sqlite3.DatabaseError as exc:
            raise IndexUnusable(
                f"{self.db_path} is not a usable vsearch index ({exc}); it was left untouched. "
                "Move it aside and run `vsearch index` again to rebuild."
            ) from None

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        if "meta" not in self.db.table_names():
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = int(self.get_meta("schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise IndexUnusable(
                f"the index at {self.home} was written by a newer vsearch (schema {version}, this "
                f"vsearch knows {SCHEMA_VERSION}); upgrade vsearch. The index was left untouched."
            )
        self._run_migrations(MIGRATIONS, version, "schema_version", "migration")

    def ensure_part(self, part: str, migrations: Sequence[tuple[str, Callable[[sqlite_utils.Database], None]]]) -> None:
        """Create or upgrade the tables a kind of evidence keeps of its own, by its named migrations,
        counted apart from the core schema's (meta `part_<part>_version`). An index that a newer
        vsearch gave a newer version of them is refused, untouched."""
        key = f"part_{part}_version"
        version = int(self.get_meta(key) or 0)
        if version > len(migrations):
            raise IndexUnusable(f"the index at {self.home} holds {part} data from a newer vsearch (version {version}, "
                                f"this vsearch knows {len(migrations)}); upgrade vsearch. The index was left untouched.")
        self._run_migrations(migrations, version, key, f"part_{part}")

    def _run_migrations(self, migrations: Sequence[tuple[str, Callable[[sqlite_utils.Database], None]]],
                        version: int, version_key: str, name_prefix: str) -> None:
        """The steps after `version`, each in a transaction of its own with the version it reaches:
        a step that fails leaves the catalog as the one before left it."""
        for number, (name, step) in enumerate(migrations, start=1):
            if number <= version:
                continue
            with self.transaction():
                # Another process opening the same index (a watcher and a search) may have taken
                # this step since `version` was read; the write lock is ours now, so ask again.
                if int(self.get_meta(version_key) or 0) >= number:
                    continue
                step(self.db)
                self.set_meta(version_key, str(number))
                self.set_meta(f"{name_prefix}_{number:03d}", name)

    def has_part(self, part: str) -> bool:
        """Whether a kind of evidence has made its tables here (an index older than the kind has not)."""
        return self.get_meta(f"part_{part}_version") is not None

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One IMMEDIATE transaction: readers keep reading the last commit meanwhile (WAL)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- the model that made the vectors --------------------------------------------------

    @property
    def model(self) -> str | None:
        return self.get_meta("model")

    @property
    def dim(self) -> int:
        return int(self.get_meta("dim", "0") or 0)

    @property
    def sampling(self) -> tuple[float, int] | None:
        """(window seconds, max windows) of the last index run: a file embedded to compare with
        this index is cut the same way, or `--at` would pick a different span."""
        window, most = self.get_meta("window_seconds"), self.get_meta("max_windows")
        return (float(window), int(most)) if window and most else None

    def record_sampling(self, window_seconds: float, max_windows: int) -> None:
        with self.transaction():
            self.set_meta("window_seconds", repr(float(window_seconds)))
            self.set_meta("max_windows", str(int(max_windows)))

    # -- the model each kind of evidence was made with -------------------------------------
    # Keys `<prefix>_model`, `<prefix>_model_id`, `<prefix>_dim` and `<prefix>_off` (the prefix is
    # the kind's; "visual" for the image-text model). The video model keeps its own older keys.

    def kind_model(self, prefix: str) -> str | None:
        """The model a kind of evidence was made with here; None: that kind is not in this index."""
        return self.get_meta(f"{prefix}_model")

    def kind_off(self, prefix: str) -> bool:
        """The kind was turned off for this index on purpose (`--text-model none`): searches need not
        suggest turning it on."""
        return self.get_meta(f"{prefix}_off") == "1"

    def bind_kind_model(self, prefix: str, name: str, model_id: str, dim: int = 0) -> bool:
        """Record the model a kind of evidence is made with. Another one than before replaces it (Kind.bind
        then deletes what the old one stored, and its runs); True when that happened. Call inside a
        transaction."""
        if self.get_meta(f"{prefix}_model_id") == model_id:
            return False
        replaced = self.get_meta(f"{prefix}_model_id") is not None
        self.db.execute("DELETE FROM meta WHERE key = ?", [f"{prefix}_off"])
        self.set_meta(f"{prefix}_model", name)
        self.set_meta(f"{prefix}_model_id", model_id)
        if dim:
            self.set_meta(f"{prefix}_dim", str(dim))
        self._bump()
        return replaced

    def unbind_kind_model(self, prefix: str) -> None:
        """Turn a kind of evidence off for this index (the caller deletes what it stored). Call inside
        a transaction."""
        self.db.execute("DELETE FROM meta WHERE key IN (?, ?, ?)", [f"{prefix}_model", f"{prefix}_model_id",
                                                                     f"{prefix}_dim"])
        self.set_meta(f"{prefix}_off", "1")
        self._bump()

    @property
    def visual_model(self) -> str | None:
        """The image-text model whose vectors the index holds; None: no search by description."""
        return self.kind_model("visual")

    @property
    def visual_off(self) -> bool:
        return self.kind_off("visual")

    def add_visual_vectors(self, window_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store the visual vectors of these windows (a window's earlier one is replaced)."""
        self.db.conn.executemany("INSERT OR REPLACE INTO visual_vectors (window_id, vector) VALUES (?, ?)",
                                 [(i, to_blob(v)) for i, v in zip(window_ids, vectors)])
        self._bump()

    # -- which evidence ran on which video -------------------------------------------------

    def record_run(self, video_id: int, kind: str, model: str, found: int, error: str | None = None,
                   detail: str | None = None) -> None:
        """A kind of evidence ran on a video with this model (found: items stored, 0 for none), or
        could not (error); `detail` is what else it read as it was then. Call inside a transaction."""
        self.db.execute("INSERT OR REPLACE INTO evidence_runs (video_id, kind, model, found, error, detail, at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", [video_id, kind, model, found, error, detail, time.time()])

    def run_details(self, kind: str) -> list[tuple[int, str, str | None]]:
        """(video id, path, detail) of the finished videos this kind ran on."""
        return [tuple(r) for r in self.db.execute(
            "SELECT v.id, v.path, r.detail FROM evidence_runs r JOIN videos v ON v.id = r.video_id "
            "WHERE r.kind = ? AND v.status = 'ok'", [kind])]

    def runs_since(self, kind: str, since: float) -> list[int]:
        """The finished videos this kind ran on since `since` (seconds since the epoch)."""
        return [r[0] for r in self.db.execute(
            "SELECT r.video_id FROM evidence_runs r JOIN videos v ON v.id = r.video_id AND v.status = 'ok' "
            "WHERE r.kind = ? AND r.at >= ? ORDER BY r.video_id", [kind, since])]

    def forget_run(self, video_id: int, kind: str) -> None:
        """This video lacks this kind again (what it read beside the video changed)."""
        self.db.execute("DELETE FROM evidence_runs WHERE video_id = ? AND kind = ?", [video_id, kind])

    def changed(self) -> None:
        """A kind of evidence added or removed vectors outside the windows: FAISS files saved before are stale."""
        self._bump()

    def forget_runs(self, kind: str) -> None:
        """Every video lacks this kind again (its model changed, or it was turned off)."""
        self.db.execute("DELETE FROM evidence_runs WHERE kind = ?", [kind])

    def runs_of(self, video_id: int) -> dict[str, tuple[str, int, str | None]]:
        """kind -> (model, items found, error) of what ran on this video."""
        return {k: (m, n, e) for k, m, n, e in self.db.execute(
            "SELECT kind, model, found, error FROM evidence_runs WHERE video_id = ?", [video_id])}

    def runs_summary(self) -> dict[str, dict[str, int]]:
        """kind -> how many finished videos it ran on, the items it found in them, and how many it
        could not run on."""
        return {kind: {"videos": n, "found": found or 0, "failed": failed or 0} for kind, n, found, failed in self.db.execute(
            "SELECT r.kind, count(*), sum(r.found), sum(r.error IS NOT NULL) FROM evidence_runs r JOIN videos v "
            "ON v.id = r.video_id WHERE v.status = 'ok' GROUP BY r.kind")}

    def videos_missing(self, kind: str, model: str) -> list[VideoRow]:
        """Indexed videos this kind of evidence has not run on with this model: indexed before the kind
        (or this model of it) was chosen, and to be filled in without running the other models again."""
        rows = self.db.execute(
            "SELECT v.id, v.path, v.size, v.mtime, v.content_hash, v.status, v.error, v.duration FROM videos v "
            "WHERE v.status = 'ok' AND NOT EXISTS (SELECT 1 FROM evidence_runs r WHERE r.video_id = v.id "
            "AND r.kind = ? AND r.model = ?) ORDER BY v.id", [kind, model]).fetchall()
        return [VideoRow(*r) for r in rows]

    # -- vector spaces ---------------------------------------------------------------------

    def dim_of(self, space: VectorSpace) -> int:
        return int(self.get_meta(space.dim_key, "0") or 0)

    def vectors_of(self, space: VectorSpace, ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """(ids, vectors) in a vector space of those of these ids that have one, by id."""
        found: list[tuple[int, bytes]] = []
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            found += self.db.execute(f"SELECT r.id, r.vector FROM ({space.rows}) r WHERE r.id IN "
                                     f"({','.join('?' * len(part))})", part).fetchall()
        found.sort()
        return [r[0] for r in found], from_blobs([r[1] for r in found], self.dim_of(space))

    @property
    def generation(self) -> int:
        """Bumped by every commit that adds or removes windows; FAISS records the one it saw."""
        return int(self.get_meta("generation", "0") or 0)

    def _bump(self) -> None:
        self.set_meta("generation", str(self.generation + 1))

    def check_model(self, name: str) -> None:
        """Refuse, before it is loaded, a model other than the one this index was built with."""
        if self.model is not None and name != self.model:
            raise ModelMismatch(self._other_model(name))

    def bind_model(self, name: str, model_id: str, dim: int, labels: Sequence[str]) -> None:
        """Record the index's model on first use; refuse a different one afterwards.

        `model_id` identifies the vector space (name, weights, labels, dimension): a retrained
        model in the same folder has the same name and another id."""
        current = self.get_meta("model_id")
        duplicates = sorted({n for n in labels if list(labels).count(n) > 1})
        if duplicates:
            raise ModelMismatch(f"model {name!r} has several labels named {duplicates[0]!r}; "
                               "labels must be unique to be searched")
        if current is None:
            with self.transaction():
                self.set_meta("model", name)
                self.set_meta("model_id", model_id)
                self.set_meta("dim", str(dim))
                self.db.conn.executemany(
                    "INSERT OR IGNORE INTO labels (name) VALUES (?)", [(label,) for label in labels]
                )
            return
        if current != model_id:
            raise ModelMismatch(self._other_model(name))

    def _other_model(self, name: str) -> str:
        return (f"this index was built with model {self.model!r}; it cannot mix in vectors from "
                f"{name!r}. Use the same --model, or a separate index with --home.")

    # -- reading --------------------------------------------------------------------------

    def video(self, path: str) -> VideoRow | None:
        row = self.db.execute(
            "SELECT id, path, size, mtime, content_hash, status, error, duration FROM videos WHERE path = ?",
            [path],
        ).fetchone()
        return VideoRow(*row) if row else None

    def video_by_id(self, video_id: int) -> VideoRow | None:
        row = self.db.execute(
            "SELECT id, path, size, mtime, content_hash, status, error, duration FROM videos WHERE id = ?",
            [video_id],
        ).fetchone()
        return VideoRow(*row) if row else None

    def window_spans(self, video_id: int) -> list[tuple[int, float, float]]:
        """(window id, start, end) of every window of a video, in time order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT id, start, end FROM windows WHERE video_id = ? ORDER BY idx", [video_id])]

    def window_span(self, window_id: int) -> tuple[VideoRow, float, float] | None:
        """The video a window belongs to, and the window's span in seconds."""
        row = self.db.execute("SELECT video_id, start, end FROM windows WHERE id = ?", [window_id]).fetchone()
        video = self.video_by_id(row[0]) if row else None
        return (video, row[1], row[2]) if video else None

    def best_window(self, label: str) -> int | None:
        """The window of a finished video that shows this label most surely: a label's picture."""
        row = self.db.execute(
            "SELECT cl.window_id FROM labels l CROSS JOIN window_labels cl ON cl.label_id = l.id "
            "JOIN windows c ON c.id = cl.window_id JOIN videos v ON v.id = c.video_id AND v.status = 'ok' "
            "WHERE l.name = ? ORDER BY cl.score DESC LIMIT 1", [label]).fetchone()
        return row[0] if row else None

    def videos_with_content(self, content_hash: str) -> list[VideoRow]:
        """Indexed videos whose files had this content: the sources of moves and copies."""
        rows = self.db.execute(
            "SELECT id, path, size, mtime, content_hash, status, error, duration FROM videos "
            "WHERE content_hash = ? AND status = 'ok' ORDER BY id",
            [content_hash],
        ).fetchall()
        return [VideoRow(*r) for r in rows]

    def finished_videos(self, roots: Iterable[Path] | None = None) -> list[VideoRow]:
        """The searchable videos below `roots` (every one without), in path order, in one query."""
        where, args = _under(roots or [])
        rows = self.db.execute("SELECT id, path, size, mtime, content_hash, status, error, duration, fps FROM videos "
                               f"WHERE status = 'ok'{' AND ' + where if where else ''} ORDER BY path", args).fetchall()
        return [VideoRow(*r) for r in rows]

    def paths_under(self, roots: Iterable[Path]) -> dict[str, int]:
        """Indexed paths below any of these folders (or equal to these files)."""
        where, args = _under(roots)
        return {path: vid for vid, path in self.db.execute(f"SELECT id, path FROM videos WHERE {where}", args)} \
            if where else {}

    def window_vectors(self, video_id: int) -> tuple[list[int], np.ndarray, list[tuple[float, float]]]:
        rows = self.db.execute(
            "SELECT id, embedding, start, end FROM windows WHERE video_id = ? ORDER BY idx", [video_id]
        ).fetchall()
        return [r[0] for r in rows], from_blobs([r[1] for r in rows], self.dim), [(r[2], r[3]) for r in rows]

    def iter_vectors(self, space: VectorSpace = ACTIONS, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of a space's items in finished videos, in batches, for rebuilding FAISS."""
        last = 0
        while True:
            rows = self.db.execute(
                f"SELECT r.id, r.vector FROM ({space.rows}) r JOIN videos v ON v.id = r.video_id "
                "WHERE r.id > ? AND v.status = 'ok' ORDER BY r.id LIMIT ?", [last, batch]).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield np.array([r[0] for r in rows], dtype=np.int64), from_blobs([r[1] for r in rows], self.dim_of(space))

    def count(self, space: VectorSpace = ACTIONS) -> int:
        """Items of a space in finished videos (for ACTIONS: the searchable windows)."""
        return self.db.execute(f"SELECT count(*) FROM ({space.rows}) r JOIN videos v ON v.id = r.video_id "
                               "WHERE v.status = 'ok'").fetchone()[0]

    def window_count(self) -> int:
        """Windows of finished videos."""
        return self.count(ACTIONS)

    @property
    def precision(self) -> str | None:
        """The precisions the vectors were computed in, e.g. "int8" or "fp32, int8" when runs differed."""
        return self.get_meta("precision")

    def set_run_meta(self, key: str, value: str) -> None:
        """What the last index run used (e.g. its batch size), for `stats`."""
        with self.transaction():
            self.set_meta(key, value)

    def record_precision(self, precision: str) -> None:
        seen = [p for p in (self.precision or "").split(", ") if p]
        if precision not in seen:
            with self.transaction():
                self.set_meta("precision", ", ".join(sorted([*seen, precision])))

    def ok_windows(self) -> list[tuple[int, str, int, float, float, float]]:
        """(window id, video path, size, mtime, start, end) of every window of a finished video."""
        return [tuple(r) for r in self.db.execute(
            "SELECT c.id, v.path, v.size, v.mtime, c.start, c.end FROM windows c JOIN videos v ON v.id = c.video_id "
            "WHERE v.status = 'ok' ORDER BY v.id, c.idx")]

    def is_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM videos WHERE status = 'ok' LIMIT 1").fetchone() is None

    def stats(self) -> dict:
        q = self.db.execute
        return {
            "home": str(self.home),
            "videos": q("SELECT count(*) FROM videos WHERE status = 'ok'").fetchone()[0],
            "windows": self.window_count(),
            "failed": self.failed_count(),
            "incomplete": q("SELECT count(*) FROM videos WHERE status = 'indexing'").fetchone()[0],
            "hours": round((q("SELECT sum(duration) FROM videos WHERE status = 'ok'").fetchone()[0] or 0) / 3600, 3),
            "labels": q("SELECT count(DISTINCT label_id) FROM video_labels WHERE top_windows > 0").fetchone()[0],
            "model": self.model,
            "visual_model": self.visual_model,
            "visual_windows": self.count(VISUALS),
            "precision": self.precision,
            "batch_size": int(self.get_meta("batch_size", "0") or 0) or None,
            "schema_version": int(self.get_meta("schema_version", "0") or 0),
        }

    def labels(self) -> list[tuple[int, str]]:
        return [(i, n) for i, n in self.db.execute("SELECT id, name FROM labels ORDER BY id")]

    def label_vectors(self, sentence_model: str) -> tuple[list[int], np.ndarray] | None:
        """Sentence embeddings of every label name, or None if not (all) computed yet.

        Kept in memory once read: the vocabulary is fixed by the index's one model, and a query
        should not read 400 BLOBs each time."""
        if self._label_vectors is not None and self._label_vectors[0] == sentence_model:
            return self._label_vectors[1]
        rows = self.db.execute(
            "SELECT l.id, lv.vector FROM labels l LEFT JOIN label_vectors lv "
            "ON lv.label_id = l.id AND lv.sentence_model = ? ORDER BY l.id", [sentence_model]
        ).fetchall()
        if not rows or any(r[1] is None for r in rows):
            return None
        found = [r[0] for r in rows], np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        self._label_vectors = (sentence_model, found)
        return found

    def store_label_vectors(self, sentence_model: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Keep these for this open catalog and store them for the next one, unless an index run
        holds the write lock: then they are used from memory now and computed again next time."""
        self._label_vectors = (sentence_model, (list(ids), np.asarray(vectors, dtype=np.float32)))
        try:
            with self.transaction():
                self.db.conn.executemany(
                    "INSERT OR REPLACE INTO label_vectors (label_id, sentence_model, vector) VALUES (?, ?, ?)",
                    [(i, sentence_model, np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(ids, vectors)],
                )
        except sqlite3.OperationalError:
            pass

    def failed_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM videos WHERE status = 'failed'").fetchone()[0]

    def failures(self) -> list[tuple[str, str]]:
        return [
            (r[0], r[1] or "")
            for r in self.db.execute("SELECT path, error FROM videos WHERE status = 'failed' ORDER BY path")
        ]

    # -- writing (call inside `transaction()`) --------------------------------------------

    def forget(self, path: str) -> list[int]:
        """Remove the row for this path, if any; returns its window ids, for the vector index."""
        old = self.video(path)
        return self._delete_videos([old.id]) if old is not None else []

    def start_video(self, path: str, size: int, mtime: float, content_hash: str, info: dict) -> int:
        """Create or reset the row for a file about to be (re)indexed; its old windows go (callers
        that keep a vector index call `forget` first, to learn which)."""
        self.forget(path)
        self.db.execute(
            "INSERT INTO videos (path, name, size, mtime, content_hash, duration, fps, width, height, "
            "status, error, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'indexing', NULL, ?)",
            [path, searchable_name(path), size, mtime, content_hash, info.get("duration"), info.get("fps"),
             info.get("width"), info.get("height"), time.time()],
        )
        return self.db.execute("SELECT last_insert_rowid()").fetchone()[0]

    def add_windows(self, video_id: int, windows: Sequence[WindowResult]) -> list[int]:
        """Store windows; returns the ids of those stored. A window this video already has is skipped
        (at-least-once delivery from Ray): its first copy stays, and no id is returned for it."""
        ids = []
        label_ids = self._label_ids()
        for window in windows:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO windows (video_id, idx, start, end, embedding) VALUES (?, ?, ?, ?, ?)",
                [video_id, window.idx, window.start, window.end, to_blob(window.embedding)],
            )
            if cur.rowcount == 0:
                continue
            window_id = cur.lastrowid
            assert window_id is not None  # an INSERT that added a row always sets it
            ids.append(window_id)
            self.db.conn.executemany(
                "INSERT INTO window_labels (window_id, label_id, score) VALUES (?, ?, ?)",
                [(window_id, label_ids[name], float(score)) for name, score in window.labels],
            )
        return ids

    def finish_video(self, video_id: int) -> None:
        """All windows are stored: aggregate per-video labels and mark the video searchable."""
        self.db.execute("DELETE FROM video_labels WHERE video_id = ?", [video_id])
        self.db.execute(
            "INSERT INTO video_labels (video_id, label_id, score, windows, top_windows) "
            "SELECT c.video_id, cl.label_id, max(cl.score), count(*), "
            "sum(cl.score >= (SELECT max(x.score) FROM window_labels x WHERE x.window_id = cl.window_id)) "
            "FROM window_labels cl JOIN windows c ON c.id = cl.window_id WHERE c.video_id = ? GROUP BY cl.label_id",
            [video_id],
        )
        self.db.execute("UPDATE videos SET status = 'ok', error = NULL WHERE id = ?", [video_id])
        self._bump()

    def fail_video(self, path: str, size: int, mtime: float, content_hash: str, reason: str) -> list[int]:
        """Record why a file could not be indexed; returns the window ids of its earlier version."""
        gone = self.forget(path)
        self.db.execute(
            "INSERT INTO videos (path, name, size, mtime, content_hash, status, error, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, 'failed', ?, ?)",
            [path, searchable_name(path), size, mtime, content_hash, reason, time.time()],
        )
        return gone

    def touch_video(self, video_id: int, size: int, mtime: float) -> None:
        self.db.execute("UPDATE videos SET size = ?, mtime = ? WHERE id = ?", [size, mtime, video_id])

    def move_video(self, video_id: int, new_path: str, size: int, mtime: float) -> None:
        """A renamed file keeps its windows and labels; only its path changes."""
        self.db.execute(
            "UPDATE videos SET path = ?, name = ?, size = ?, mtime = ? WHERE id = ?",
            [new_path, searchable_name(new_path), size, mtime, video_id],
        )

    def copy_video(self, source_id: int, new_path: str, size: int, mtime: float) -> list[int]:
        """A copy of an indexed file reuses its results, every kind of evidence's; returns the new window ids."""
        self.forget(new_path)
        self.db.execute(
            "INSERT INTO videos (path, name, size, mtime, content_hash, duration, fps, width, height, language, status, "
            "indexed_at) SELECT ?, ?, ?, ?, content_hash, duration, fps, width, height, language, 'ok', ? FROM videos "
            "WHERE id = ?",
            [new_path, searchable_name(new_path), size, mtime, time.time(), source_id],
        )
        new_id = self.db.execute("SELECT last_insert_rowid()").fetchone()[0]
        ids: list[int] = []
        window_children = self._children("windows")  # the same for every window: read the schema once
        for window_id, idx, start, end, blob in self.db.execute(
            "SELECT id, idx, start, end, embedding FROM windows WHERE video_id = ? ORDER BY idx", [source_id]
        ).fetchall():
            new_window = self.db.execute(
                "INSERT INTO windows (video_id, idx, start, end, embedding) VALUES (?, ?, ?, ?, ?)",
                [new_id, idx, start, end, blob],
            ).lastrowid
            assert new_window is not None  # an INSERT always sets it
            self._copy_rows_of(window_children, window_id, new_window)
            ids.append(new_window)
        self._copy_rows_of([c for c in self._children("videos") if c[0] != "windows"], source_id, new_id)
        self.finish_video(new_id)
        return ids

    def _copy_rows_of(self, children: list[tuple[str, str, list[str]]], old: int, new: int) -> None:
        """Copy every row that belongs to row `old` of a parent table (a video, a window) to row `new`: the
        rows of its `children` (`_children`: every table whose foreign key points at it), so that each
        kind of evidence's own tables follow a copy without being named here."""
        for table, column, columns in children:
            rest = ", ".join(c for c in columns if c != column)
            self.db.execute(f"INSERT INTO [{table}] ([{column}], {rest}) SELECT ?, {rest} FROM [{table}] "
                            f"WHERE [{column}] = ?", [new, old])

    def _children(self, parent: str) -> list[tuple[str, str, list[str]]]:
        """(table, its column that points at `parent`, the columns to copy) of the tables that belong to it;
        an INTEGER PRIMARY KEY (a row's own id) is left for SQLite to give."""
        found = []
        for (table,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall():
            keys = [row[3] for row in self.db.execute(f"PRAGMA foreign_key_list([{table}])") if row[2] == parent]
            if not keys:
                continue
            info = self.db.execute(f"PRAGMA table_info([{table}])").fetchall()
            own_id = [r[1] for r in info if r[5] == 1 and r[2].upper() == "INTEGER" and sum(x[5] > 0 for x in info) == 1]
            found.append((table, keys[0], [r[1] for r in info if r[1] not in own_id]))
        return found

    def remove_videos(self, video_ids: Sequence[int]) -> list[int]:
        """Forget these videos; returns the window ids that left, for the vector index."""
        return self._delete_videos(video_ids)

    def _delete_videos(self, video_ids: Sequence[int]) -> list[int]:
        window_ids: list[int] = []
        for vid in video_ids:
            window_ids += [r[0] for r in self.db.execute("SELECT id FROM windows WHERE video_id = ?", [vid])]
            # window_labels, windows and video_labels go by ON DELETE CASCADE
            self.db.execute("DELETE FROM videos WHERE id = ?", [vid])
        if window_ids:
            self._bump()
        return window_ids

    def _label_ids(self) -> dict[str, int]:
        if not hasattr(self, "_labels_cache"):
            self._labels_cache = {name: i for i, name in self.db.execute("SELECT id, name FROM labels")}
        return self._labels_cache

    def drop_incomplete(self) -> list[int]:
        """Videos a killed run left half-stored: forget them so they are indexed again."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM videos WHERE status = 'indexing'")]
        with self.transaction():
            return self._delete_videos(ids)
