"""Where an index lives, and where each thing in it lives.

An index is one folder, its home: $VSEARCH_HOME, else the OS user data folder. Everything vsearch
keeps is inside it, and every module asks `Home` for a path rather than building one, so the
layout is written down once, here:

    vsearch.db            the catalog (SQLite, WAL): the source of truth, embeddings included
    vectors.json          which vectors-*.faiss file is current (derived from the catalog)
    visuals.json          which visuals-*.faiss file is current (the visual model's vectors, derived too;
                          scenes.json and scenes-*.faiss before, taken over on first open)
    index.lock            held by the one index run that writes
    calibration.json      the runtime, precision and batch measured fastest, per machine and model
    thumbs/               a JPEG per window
    openvino/             the model converted for OpenVINO, and its compile cache
    transcodes/           moments a browser cannot play as they are, made playable
    cache/clips/          moments cut as files for download from the web page
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vsearch.core.errors import IndexBusy

ENV = "VSEARCH_HOME"

# Vector spaces renamed since an index could be made: new name -> old. An index folder that still
# has the old pointer and FAISS file has them moved to the new names when it is opened.
RENAMED_SPACES = {"visuals": "scenes"}


def default_home() -> Path:
    """$VSEARCH_HOME, else the OS user data directory."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "vsearch"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "vsearch"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vsearch"


@dataclass(frozen=True)
class Home:
    """An index folder and its layout. `Home.at(None)` is the default home."""

    root: Path

    @classmethod
    def at(cls, path: str | Path | Home | None = None) -> Home:
        if isinstance(path, Home):
            return path
        return cls(Path(path).expanduser() if path else default_home())

    @property
    def db(self) -> Path:
        return self.root / "vsearch.db"

    def vectors_meta_of(self, space: str) -> Path:
        """The pointer to the current FAISS file of a vector space ("actions" or "visuals")."""
        return self.root / ("vectors.json" if space == "actions" else f"{space}.json")

    def vectors_prefix_of(self, space: str) -> str:
        """How that space's FAISS files are named: vectors-<generation>-<random>.faiss."""
        return "vectors" if space == "actions" else space

    def adopt_renamed_spaces(self) -> None:
        """Move the FAISS file and pointer of a renamed vector space to its new name (the catalog's
        migration renamed its vectors; the file is in step with them still), so it is not rebuilt.
        Never fails: a folder that cannot be written, or a move half done by another process, leaves
        the space without a pointer, and its index is rebuilt from SQLite when next needed."""
        for new, old in RENAMED_SPACES.items():
            old_pointer, new_pointer = self.root / f"{old}.json", self.vectors_meta_of(new)
            if not old_pointer.exists():
                continue
            try:
                if not new_pointer.exists():
                    meta = json.loads(old_pointer.read_text())
                    file = str(meta["file"])
                    if file.startswith(f"{old}-"):
                        moved = f"{new}-{file[len(old) + 1:]}"
                        os.replace(self.root / file, self.root / moved)
                        meta["file"] = moved
                    write_json_atomic(new_pointer, meta)
                old_pointer.unlink()
                for stale in self.root.glob(f"{old}-*.faiss"):
                    stale.unlink()
            except (OSError, ValueError, KeyError, TypeError):
                pass

    @property
    def lock(self) -> Path:
        return self.root / "index.lock"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    @property
    def openvino(self) -> Path:
        return self.root / "openvino"

    @property
    def transcodes(self) -> Path:
        return self.root / "transcodes"

    @property
    def clips(self) -> Path:
        return self.root / "cache" / "clips"

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Only one index run writes to an index at a time; a second is refused (IndexBusy), not
        interleaved. The lock goes with the process, however it ends."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock, "a+") as f:
            try:
                import fcntl
            except ImportError:  # Windows: SQLite's own locking still keeps the data consistent
                yield
                return
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                pid = f.read().strip() or "?"
                raise IndexBusy(f"another `vsearch index` (pid {pid}) is writing to {self.root}; "
                                "wait for it to finish") from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def writer_lock_if_free(self) -> Iterator[bool]:
        """The writer lock if it is free right now (True), else carry on without it (False)."""
        lock = self.writer_lock()
        try:
            lock.__enter__()
        except IndexBusy:  # only the acquisition may fail here; errors in the body propagate
            yield False
            return
        try:
            yield True
        finally:
            lock.__exit__(None, None, None)


def read_measurements(path: Path) -> dict:
    """A JSON file of measurements by key (the calibration cache); {} when missing or damaged,
    which means: measure again."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_measurement(path: Path, key: str, entry: dict) -> None:
    """Write one key of such a file, stamped with when it was measured, keeping the others; a reader
    never sees half a file."""
    data = read_measurements(path)
    data[key] = {**entry, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data, indent=2)


def write_json_atomic(path: Path, data: dict, indent: int | None = None) -> None:
    """Replace a JSON file in one step, through a temporary file of its own: a reader sees the old
    file or the new one, and two processes writing at once cannot mix their halves."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
