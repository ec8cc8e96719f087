"""`vsearch index --watch`: wires the library's watch loop to the terminal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vsearch.cli.app import info, safe
from vsearch.search.catalog import counted

if TYPE_CHECKING:
    from vsearch.indexer.pipeline import Indexer, IndexReport


def watch_folders(indexer: Indexer, roots: list[Path], rescan: float | None, should_stop: Callable[[], bool]) -> None:
    """Run until Ctrl-C, a line per batch of changes."""
    from vsearch.indexer.watch import WatchSettings, watch

    how = f"rescanning every {rescan:g}s" if rescan else "on file events (or a rescan every 30s without watchfiles)"
    info(f"watching {counted(len(roots), 'folder')}, {how}; Ctrl-C stops")

    def on_report(r: IndexReport) -> None:
        parts = [f"{n} {what}" for n, what in ((r.indexed, "indexed"), (r.moved, "moved"), (r.copied, "copied"),
                                                (r.removed, "removed"), (len(r.failed), "failed")) if n]
        if parts:
            info(", ".join(parts) + (f" ({counted(r.clips, 'clip')})" if r.clips else ""))
        for path, reason in r.failed:
            info(f"skipped {safe(path)}: {safe(reason)}")

    watch(indexer, roots, WatchSettings(rescan=rescan), should_stop=should_stop, on_report=on_report)
    info("stopped watching; the index is saved")
