"""`index --watch`: new files are indexed once they stop growing, deleted ones forgotten."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FakeEncoder
from tests.procs import Lines
from vsearch.indexer.pipeline import Indexer, IndexReport, IndexSettings
from vsearch.indexer.watch import WatchSettings, watch
from vsearch.search.catalog import Catalog


def status(home: Path) -> dict[str, str]:
    cat = Catalog(home)
    try:
        return {Path(p).name: s for p, s in cat.db.execute("SELECT path, status FROM videos")}
    finally:
        cat.close()


def wait_for(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["events", "rescan"])
def test_watch_indexes_settled_files_and_forgets_deleted_ones(
    mode: str, tmp_path: Path, vsearch_home: Path, motion_videos: dict[Path, str]
) -> None:
    if mode == "events":
        pytest.importorskip("watchfiles")
    sources = sorted(motion_videos)
    root = tmp_path / "watched"
    root.mkdir()
    shutil.copy2(sources[0], root / "before.mp4")  # there before the watch starts: caught up
    encoder = FakeEncoder()
    stop = threading.Event()
    reports: list[IndexReport] = []
    settings = WatchSettings(settle=1.0, tick=0.2, rescan=0.5 if mode == "rescan" else None)
    cat = Catalog(vsearch_home)
    indexer = Indexer(cat, lambda: encoder, IndexSettings(batch_size=4, workers=1, timeout=20),
                      should_stop=stop.is_set)
    thread = threading.Thread(target=watch, args=(indexer, [root], settings, stop.is_set, reports.append))
    thread.start()
    try:
        wait_for(lambda: status(vsearch_home).get("before.mp4") == "ok")
        shutil.copy2(sources[1], root / "new.mp4")
        wait_for(lambda: status(vsearch_home).get("new.mp4") == "ok")

        # A file still being written is left alone until it has stopped growing for `settle` s.
        data = sources[2].read_bytes()
        growing = root / "recording.mp4"
        step = len(data) // 8 + 1
        for i in range(0, len(data), step):
            with open(growing, "ab") as f:
                f.write(data[i : i + step])
            time.sleep(0.4)
            assert "recording.mp4" not in status(vsearch_home)
        wait_for(lambda: status(vsearch_home).get("recording.mp4") == "ok")

        clips = encoder.windows
        (root / "recording.mp4").rename(root / "renamed.mp4")  # a move keeps its results
        (root / "new.mp4").unlink()
        # the report arrives just after the run's last commit
        wait_for(lambda: sum(r.moved for r in reports) == 1 and sum(r.removed for r in reports) == 1)
        assert set(status(vsearch_home)) == {"before.mp4", "renamed.mp4"}
        assert encoder.windows == clips
    finally:
        stop.set()
        thread.join(10)
        cat.close()
    assert not thread.is_alive()


def test_watch_command_stops_cleanly_on_ctrl_c(tmp_path: Path, vsearch_home: Path, tiny_model: Path,
                                                motion_videos: dict[Path, str]) -> None:
    import os
    import signal
    import subprocess
    import sys

    root = tmp_path / "watched"
    root.mkdir()
    vsearch = Path(sys.executable).with_name("vsearch")
    proc = subprocess.Popen([str(vsearch), "index", str(root), "--watch", "--model", str(tiny_model)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "VSEARCH_HOME": str(vsearch_home)})
    try:
        lines = Lines(proc.stderr, "stderr")
        assert "watching 1 folder" in (lines.next(timeout=120) or "")
        shutil.copy2(sorted(motion_videos)[0], root / "a.mp4")
        # generous: a cold start of torch on a loaded machine takes a while
        wait_for(lambda: (vsearch_home / "vsearch.db").exists() and status(vsearch_home).get("a.mp4") == "ok", 300)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        err = "".join(lines.seen + lines.rest(timeout=10))
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "1 indexed (1 window)" in err and "stopped watching" in err
