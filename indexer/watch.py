"""Stay current: index new and changed videos once they stop growing, forget deleted ones.

The watcher only decides *which paths* to look at and *when*; the indexing itself is an
ordinary `Indexer.run` on those paths, so moves, copies, failures and the single-writer rules
are the same as for `vsearch index`. Changes come from watchfiles (inotify, FSEvents...) when it
is installed, else from a periodic rescan, which is also the way for network shares, where
file systems send no events.

A file is indexed once its size and mtime have stayed the same for `settle` seconds: a video
still being copied or recorded is left alone until it is complete. A deleted path waits as
long too, so a rename (a delete and a create) reaches the indexer as one move and keeps its
results without running the model again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vsearch.indexer.pipeline import Indexer, IndexReport
from vsearch.video.files import find_videos


@dataclass(frozen=True)
class WatchSettings:
    settle: float = 3.0  # seconds a file's size and mtime must hold still before it is indexed
    rescan: float | None = None  # seconds between rescans; None: events when watchfiles is there
    tick: float = 1.0  # seconds between looks at the files waiting to settle


@dataclass
class _Pending:
    """Paths seen changing, each with the (size, mtime) last seen and since when it held."""

    files: dict[str, tuple[tuple[int, float], float]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)

    def saw(self, path: str, size: int, mtime: float, now: float) -> None:
        state = (size, mtime)
        if path not in self.files or self.files[path][0] != state:
            self.files[path] = (state, now)
        self.deleted.pop(path, None)

    def gone(self, path: str, now: float) -> None:
        self.files.pop(path, None)
        self.deleted.setdefault(path, now)

    def ready(self, settle: float, now: float) -> list[str]:
        """Paths that held still for `settle` seconds (re-checked on disk), removed from waiting."""
        done: list[str] = []
        for path, (state, since) in list(self.files.items()):
            try:
                st = os.stat(path)
            except OSError:
                self.gone(path, now)
                continue
            if (st.st_size, st.st_mtime) != state:
                self.files[path] = ((st.st_size, st.st_mtime), now)
            elif now - since >= settle:
                done.append(path)
                del self.files[path]
        for path, since in list(self.deleted.items()):
            if os.path.lexists(path):  # came back (an editor saving by replace)
                del self.deleted[path]
                self.files[path] = ((-1, 0.0), now)  # looked at again on the next tick
            elif now - since >= settle:
                done.append(path)
                del self.deleted[path]
        return done


def watch(
    indexer: Indexer,
    roots: Sequence[Path],
    settings: WatchSettings | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_report: Callable[[IndexReport], None] = lambda r: None,
) -> None:
    """Keep the index of `roots` current until `should_stop()` is true.

    Each batch of settled paths is one `indexer.run(paths)`; its report goes to `on_report`.
    The indexer's encoder loader is called once per batch that needs the model, so pass one that
    keeps the model loaded. The caller holds the writer lock for as long as this runs.
    """
    s = settings or WatchSettings()
    roots = [Path(os.path.abspath(r)) for r in roots]
    pending = _Pending()
    now = time.monotonic()
    exclude = indexer.settings.exclude
    snapshot = _scan(roots, exclude)
    for path, (size, mtime) in snapshot.items():  # catch up with what changed while not watching
        pending.saw(path, size, mtime, now - s.settle if _old(mtime, s.settle) else now)
    for path in indexer.catalog.paths_under(roots):
        if path not in snapshot:
            pending.gone(path, now - s.settle)
    for changed in _changes(roots, exclude, s, should_stop, snapshot):
        now = time.monotonic()
        for path, exists in changed:
            if not exists:
                pending.files.pop(path, None)
                if indexer.catalog.paths_under([Path(path)]):  # an indexed file, or a folder of them
                    pending.gone(path, now)
                continue
            for f in find_videos([Path(path)], exclude=exclude):  # a file, or every video in a folder moved in
                pending.saw(f.path, f.size, f.mtime, now)
        ready = pending.ready(s.settle, now)
        if ready and not should_stop():
            on_report(indexer.run([Path(p) for p in ready]))


def _old(mtime: float, settle: float) -> bool:
    """Not touched for `settle` seconds already: nothing is writing it (seen at start-up)."""
    return time.time() - mtime >= settle


def _scan(roots: Sequence[Path], exclude: Sequence[str]) -> dict[str, tuple[int, float]]:
    return {f.path: (f.size, f.mtime) for f in find_videos(list(roots), exclude=exclude)}


def _changes(
    roots: Sequence[Path], exclude: Sequence[str], s: WatchSettings, should_stop: Callable[[], bool],
    snapshot: dict[str, tuple[int, float]],
) -> Iterator[list[tuple[str, bool]]]:
    """(path, exists) changes, a list every tick (often empty), until should_stop()."""
    events = None
    if s.rescan is None:
        try:
            import watchfiles
        except ImportError:
            pass
        else:
            events = watchfiles.watch(*roots, yield_on_timeout=True, rust_timeout=int(s.tick * 1000),
                                      debounce=int(s.tick * 1000), raise_interrupt=False)
    if events is not None:
        for i, batch in enumerate(events):
            changed = [(path, change != watchfiles.Change.deleted) for change, path in batch]
            if i == 0:
                # The watcher is live only from its first tick: what arrived between the start-up
                # snapshot and then raised no event, so compare with a fresh scan once.
                changed += _diff(snapshot, _scan(roots, exclude))
            yield changed
            if should_stop():
                return
        return
    every = s.rescan or 30.0
    last = time.monotonic()
    while not should_stop():
        time.sleep(s.tick)
        if time.monotonic() - last < every:
            yield []
            continue
        last = time.monotonic()
        now = _scan(roots, exclude)
        changed = _diff(snapshot, now)
        snapshot = now
        yield changed


def _diff(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> list[tuple[str, bool]]:
    """(path, exists) for what two scans disagree on."""
    return [(p, True) for p, state in after.items() if before.get(p) != state] + [
        (p, False) for p in before if p not in after]
