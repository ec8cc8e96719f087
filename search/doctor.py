"""`vsearch doctor` as one call: check the whole index (SQLite, FAISS, files on disk) and
repair what can be repaired, holding the writer lock so no index run changes it meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vsearch.search.catalog import Catalog, Finding, check_integrity, check_sqlite, writer_lock
from vsearch.search.vectors import check_vectors


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


def doctor(home: Path, repair: bool = True,
           checks: Sequence[Callable[[Catalog, bool], Finding]] = ()) -> DoctorReport:
    """Check the index at `home`; with `repair`, fix what can be fixed. `checks` are more checks
    run on the sound catalog under the same lock: the indexer's (thumbnails) are passed in, as
    search/ never imports indexer/.

    Raises CatalogError when there is no index there, when an index run holds the writer lock,
    or when the file cannot be opened as an index at all (it is left untouched then too).
    """
    with writer_lock(home):
        catalog = Catalog(home, create=False)
        try:
            integrity = check_integrity(catalog)
            if not integrity.ok:  # do not read further, let alone write, into a damaged file
                return DoctorReport([integrity], sqlite_damaged=True)
            findings = [integrity, *check_sqlite(catalog, repair), check_vectors(catalog, repair)]
            findings += [check(catalog, repair) for check in checks]
        finally:
            catalog.close()
    return DoctorReport(findings, sqlite_damaged=False)
