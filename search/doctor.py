"""`vsearch doctor` as one call: check the whole index (SQLite, FAISS, files on disk) and
repair what can be repaired, holding the writer lock so no index run changes it meanwhile.

The checks of the catalog's own rows are here; FAISS's (search.vectors) and the thumbnails'
(video.thumbs) are passed in as checks of the same shape, since storage never imports the parts
above it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vsearch.core.home import Home
from vsearch.core.words import counted
from vsearch.search.catalog import SCHEMA_VERSION, Catalog


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    repaired: bool = False


def check_integrity(catalog: Catalog) -> Finding:
    """SQLite's own check of the file; when it fails, nothing else in it can be trusted."""
    try:
        result = catalog.db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:  # damage can stop the check itself
        return Finding("sqlite integrity", False, str(exc))
    return Finding("sqlite integrity", result == "ok", result)


def check_sqlite(catalog: Catalog, repair: bool = True) -> list[Finding]:
    """Check what the SQLite side holds; repair what can be repaired. Only for a file that
    passed check_integrity: never write to a damaged one (search.doctor runs the whole check)."""
    db = catalog.db
    found: list[Finding] = []
    found.append(Finding("schema version", True, f"{catalog.get_meta('schema_version')} (this vsearch: {SCHEMA_VERSION})"))
    # (check, what one of them is, what was done, ids)
    problems: list[tuple[str, str, str, list[int]]] = []
    redo = "removed for the next index to redo"
    half = [r[0] for r in db.execute("SELECT id FROM videos WHERE status = 'indexing'")]
    problems.append(("half-stored videos", "video left by a killed run", redo, half))
    dim = catalog.dim
    bad = [r[0] for r in db.execute(
        "SELECT DISTINCT video_id FROM windows WHERE length(embedding) != ?", [dim * 2])] if dim else []
    problems.append(("embedding sizes", "video with damaged vectors", redo, bad))
    empty = [r[0] for r in db.execute(
        "SELECT v.id FROM videos v WHERE v.status = 'ok' AND NOT EXISTS (SELECT 1 FROM windows c WHERE c.video_id = v.id)")]
    problems.append(("videos without windows", "video without windows", redo, empty))
    missing = [vid for vid, path in db.execute("SELECT id, path FROM videos") if not os.path.exists(path)]
    problems.append(("files still on disk", "indexed file gone from disk", "removed from the index", missing))
    for check, what, done, ids in problems:
        if not ids:
            found.append(Finding(check, True, "none"))
            continue
        if repair:
            with catalog.transaction():
                catalog.remove_videos(ids)
        found.append(Finding(check, False, f"{counted(len(ids), what)}; {done}", repaired=repair))
    orphans = db.execute(
        "SELECT count(*) FROM window_labels cl WHERE NOT EXISTS (SELECT 1 FROM windows c WHERE c.id = cl.window_id)"
    ).fetchone()[0]
    if orphans and repair:
        with catalog.transaction():
            db.execute("DELETE FROM window_labels WHERE window_id NOT IN (SELECT id FROM windows)")
    found.append(Finding("orphan labels", orphans == 0, counted(orphans, "row") if orphans else "none", bool(orphans) and repair))
    failed = catalog.failed_count()
    found.append(Finding("failed files", True,
                         f"{counted(failed, 'file')} recorded with reasons (vsearch stats; index --retry-failed)"))
    return found



@dataclass
class DoctorReport:
    findings: list[Finding]
    # The SQLite file failed its integrity check: it was left untouched and nothing else was
    # checked; the way out is to move it aside and index again.
    sqlite_damaged: bool

    @property
    def clean(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok and not f.repaired]


Check = Callable[[Catalog, bool], "Finding"]


def doctor(home: Path | Home, repair: bool = True, checks: Sequence[Check] = ()) -> DoctorReport:
    """Check the index at `home`; with `repair`, fix what can be fixed. `checks` are more checks
    run on the sound catalog under the same lock (FAISS, thumbnails).

    Raises IndexMissing when there is no index there, IndexBusy when an index run holds the
    writer lock, IndexUnusable when the file cannot be opened as an index at all (it is left
    untouched then too).
    """
    with Home.at(home).writer_lock():
        catalog = Catalog(home, create=False)
        try:
            integrity = check_integrity(catalog)
            if not integrity.ok:  # do not read further, let alone write, into a damaged file
                return DoctorReport([integrity], sqlite_damaged=True)
            findings = [integrity, *check_sqlite(catalog, repair)]
            findings += [check(catalog, repair) for check in checks]
        finally:
            catalog.close()
    return DoctorReport(findings, sqlite_damaged=False)
