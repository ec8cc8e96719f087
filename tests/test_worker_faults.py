"""The library wherever it is called from, and no good file blamed for a fault that is not its own.

The README's Python example runs from a file, standard input, `python -c` and a Jupyter kernel;
decode workers that cannot start, are killed on their first file, are stopped from outside or die
together stop the run (or recover) without recording any file as failed; files that really break
the decoder are still recorded."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import faulty
from tests.conftest import FakeEncoder, as_schema_8
from vsearch.core.errors import WorkerError
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search.catalog import Catalog
from vsearch.video.decode import FrameSpec, Sampling
from vsearch.video.workers import DecodePool, DecodeSettings, Failed, Finished

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The README's Python example, and the line the issue's user added to see what it did."""
    text = (ROOT / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    assert 'idx.index(["data/samples"]' in code
    return code + "print('RESULT', report.indexed, len(report.failed))\n"


def run_python(args: list[str], home: Path, stdin: str | None = None) -> str:
    env = {**os.environ, "VSEARCH_HOME": str(home)}
    done = subprocess.run([sys.executable, *args], input=stdin, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("how", ["file", "stdin", "-c"])
def test_the_readme_example_indexes_the_good_files_however_python_runs_it(how: str, tmp_path: Path) -> None:
    code = readme_example()
    if how == "file":
        script = tmp_path / "example.py"
        script.write_text(code)  # no `if __name__ == "__main__"` guard, as people write scripts
        out = run_python([str(script)], tmp_path / "home")
    elif how == "stdin":
        out = run_python(["-"], tmp_path / "home", stdin=code)
    else:
        out = run_python(["-c", code], tmp_path / "home")
    assert "RESULT 12 1" in out  # every sample clip; only not-a-video.mp4 failed
    cat = Catalog(tmp_path / "home")
    assert [Path(p).name for p, _ in cat.failures()] == ["not-a-video.mp4"]


def test_the_readme_example_in_a_jupyter_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("VSEARCH_HOME", str(tmp_path / "home"))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(readme_example())])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}},
                            ).execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.get("name") == "stdout")
    assert "RESULT 12 1" in printed


def index(home: Path, root: Path, read=faulty.read_windows, **settings) -> tuple:
    cat = Catalog(home)
    try:
        report = Indexer(cat, FakeEncoder, IndexSettings(**{"workers": 1, "timeout": 20, **settings}), read=read).run([root])
        return report, cat.failures(), ok_names(cat)
    finally:
        cat.close()


def ok_names(cat: Catalog) -> set[str]:
    return {Path(r[0]).name for r in cat.db.execute("SELECT path FROM videos WHERE status = 'ok'")}


def good_library(tmp_path: Path, motion_videos: dict[Path, str], count: int = 4) -> Path:
    root = tmp_path / "lib"
    root.mkdir()
    for src in list(motion_videos)[:count]:
        shutil.copy2(src, root / src.name)
    return root


def test_a_worker_killed_on_its_first_file_costs_that_file_nothing(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = good_library(tmp_path, motion_videos)
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("VSEARCH_TEST_MARKER", str(marker))
    report, failures, ok = index(vsearch_home, root, read=faulty.killed_once_read_windows)
    assert marker.exists()  # a worker really was killed
    assert failures == [] and report.failed == []
    assert report.indexed == 4 and ok == {p.name for p in root.iterdir()}


@pytest.mark.parametrize("executable", ["/nonexistent/python3", "broken"])
def test_workers_that_cannot_start_stop_the_run_and_blame_no_file(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path, executable: str
) -> None:
    root = good_library(tmp_path, motion_videos, 2)
    if executable == "broken":  # an interpreter that starts but cannot import vsearch
        fake = tmp_path / "python-broken"
        fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named vsearch' >&2\nexit 1\n")
        fake.chmod(0o755)
        executable = str(fake)
    multiprocessing.set_executable(executable)
    try:
        with pytest.raises(WorkerError, match="cannot start") as caught:
            index(vsearch_home, root, read=faulty.read_windows)
    finally:
        multiprocessing.set_executable(sys.executable)
    why = str(caught.value)
    assert ("No such file or directory" in why) if executable.startswith("/nonexistent") else \
        ("No module named vsearch" in why and "exited with code 1" in why)
    cat = Catalog(vsearch_home)
    assert cat.failures() == [] and ok_names(cat) == set()
    assert cat.db.execute("SELECT count(*) FROM videos").fetchone()[0] == 0  # nothing recorded at all
    # the same index, workers fixed: every file is indexed, none was quarantined
    report, failures, ok = index(vsearch_home, root)
    assert report.indexed == 2 and failures == []


@pytest.mark.parametrize("signal_name, words", [("SIGTERM", "stopped from outside"), ("SIGKILL", "killed at once|even a tiny")])
def test_workers_stopped_whatever_they_read_stop_the_run_and_blame_no_file(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path, monkeypatch: pytest.MonkeyPatch,
    signal_name: str, words: str
) -> None:
    """SIGTERM: the run killed from outside. SIGKILL on every file: memory gone for everyone, or
    a broken install; a fresh worker cannot even decode a tiny test video, so no file is to blame."""
    root = good_library(tmp_path, motion_videos, 3)
    monkeypatch.setenv("VSEARCH_TEST_SIGNAL", signal_name)
    with pytest.raises(WorkerError, match=words) as caught:
        index(vsearch_home, root, read=faulty.signalled_read_windows, workers=2)
    assert "no file was recorded as failed" in str(caught.value)
    cat = Catalog(vsearch_home)
    assert cat.failures() == []


def test_a_file_that_crashes_every_worker_is_still_recorded_with_its_reason(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path
) -> None:
    root = good_library(tmp_path, motion_videos, 3)
    shutil.copy2(next(root.iterdir()), root / "crash.mp4")
    report, failures, ok = index(vsearch_home, root)
    assert [(Path(p).name, r) for p, r in failures] == [("crash.mp4", "decoder crashed (SIGSEGV), again in a second worker")]
    assert report.indexed == 3


def test_a_lone_crashing_file_is_blamed_once_a_fresh_worker_decodes_a_test_video(tmp_path: Path) -> None:
    """No other file shows that workers are fine: the canary does."""
    crash = tmp_path / "crash.mp4"
    crash.write_bytes(b"\0" * 100)
    settings = DecodeSettings(spec=FrameSpec(4, ("shortest_edge", 16), (16, 16)), sampling=Sampling(1.0),
                              read=faulty.read_windows)
    with DecodePool(settings) as pool:
        events = list(pool.run([(5, str(crash))]))
    assert [type(e) for e in events] == [Failed] and events[0].key == 5
    assert "decoder crashed (SIGSEGV)" in events[0].reason


def test_the_pool_delivers_each_window_once_when_a_file_is_read_again(
    tmp_path: Path, motion_videos: dict[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker lost part-way: the file is read again from its start, and the windows already
    handed on are not handed on twice."""
    video = next(iter(motion_videos))
    monkeypatch.setenv("VSEARCH_TEST_MARKER", str(tmp_path / "marker"))
    settings = DecodeSettings(spec=FrameSpec(4, ("shortest_edge", 16), (16, 16)), sampling=Sampling(0.5), chunk=1,
                              read=faulty.killed_after_first_chunk_read_windows)
    with DecodePool(settings) as pool:
        events = list(pool.run([(0, str(video))]))
    windows = [w.index for e in events if hasattr(e, "windows") for w in e.windows]
    assert (tmp_path / "marker").exists()
    assert windows == list(range(len(windows))) and len(windows) > 2
    assert isinstance(events[-1], Finished)


def test_files_an_earlier_version_blamed_for_lost_workers_are_tried_once_more(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path
) -> None:
    root = good_library(tmp_path, motion_videos, 3)
    truly_bad = root / "notes.mp4"
    truly_bad.write_text("not a video")
    index(vsearch_home, root)
    # As an earlier version left it: two good files quarantined for workers that never started,
    # one for a crash, and a real decode error; its schema before this version's migration.
    cat = Catalog(vsearch_home)
    names = sorted(p.name for p in root.iterdir() if p.suffix == ".mp4" and p != truly_bad)
    reasons = ["decoder exited unexpectedly (exit code 1)", "decoder crashed (SIGKILL)",
               "decoder hung (no progress in 120s); killed"]
    with cat.transaction():
        for name, reason in zip(names, reasons):
            cat.db.execute("UPDATE videos SET status = 'failed', error = ? WHERE path = ?", [reason, str(root / name)])
        cat.db.execute("DELETE FROM windows")
        cat.db.execute("DROP TABLE evidence_runs")  # as schema 5 was: what later migrations add was not there
        cat.db.execute("ALTER TABLE videos DROP COLUMN language")
        cat.db.execute("ALTER TABLE visual_vectors RENAME TO scene_vectors")  # its name until schema 8
        as_schema_8(cat.db)  # and the names windows and the sentence model took since
        cat.set_meta("schema_version", "5")
    cat.close()
    report, failures, ok = index(vsearch_home, root)
    assert report.indexed == 3 and ok == set(names)
    assert [Path(p).name for p, _ in failures] == ["notes.mp4"]  # a real decode error stays recorded
    report, _, _ = index(vsearch_home, root)
    assert report.indexed == 0 and report.failed_before == 1  # once: a file that fails again stays failed


def test_one_index_shared_by_threads_searching_while_another_indexes(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path
) -> None:
    import vsearch

    root = good_library(tmp_path, motion_videos, 6)
    idx = vsearch.Index(vsearch_home)
    first = sorted(root.iterdir())[:2]
    idx.index([str(p) for p in first], model=str(ROOT / "data" / "motion-model"), window=2.0)
    errors: list[BaseException] = []
    answers: list[int] = []
    indexing_done = threading.Event()

    def search() -> None:
        try:
            while not indexing_done.is_set() or len(answers) < 8:
                answers.append(len(idx.search("moving", limit=50).hits))
                idx.stats()
                idx.overview()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    readers = [threading.Thread(target=search) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        report = idx.index([str(root)], model=str(ROOT / "data" / "motion-model"), window=2.0)
    finally:
        indexing_done.set()
        for t in readers:
            t.join(timeout=120)
    assert not errors, errors
    assert report.indexed == 4 and report.unchanged == 2
    assert len(answers) >= 8 and min(answers) >= 1  # every search while it indexed found the first videos
    assert idx.stats()["videos"] == 6
    with pytest.raises(vsearch.IndexBusy):  # a second writer, even in this process, waits its turn
        with idx.home.writer_lock():
            idx.index([str(root)], model=str(ROOT / "data" / "motion-model"))


def test_a_frozen_application_starts_workers_through_multiprocessing(
    tmp_path: Path, motion_videos: dict[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyInstaller and the like have no interpreter to run `-c` with; their freeze_support serves
    multiprocessing's spawn, which this path uses."""
    from vsearch.video import workers

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert workers.through_multiprocessing()
    monkeypatch.setattr(sys, "frozen", False)  # this interpreter is not frozen: spawn must not think so
    monkeypatch.setattr(workers, "through_multiprocessing", lambda: True)
    spawned: list[object] = []
    real = workers._SpawnedChild
    monkeypatch.setattr(workers, "_SpawnedChild", lambda settings: spawned.append(real(settings)) or spawned[-1])
    video = next(iter(motion_videos))
    settings = DecodeSettings(spec=FrameSpec(4, ("shortest_edge", 16), (16, 16)), sampling=Sampling(1.0))
    with DecodePool(settings) as pool:
        events = list(pool.run([(0, str(video))]))
    assert len(spawned) == 1
    assert isinstance(events[-1], Finished) and len(events) > 1


def test_the_command_line_says_why_in_one_line_and_exits_1(
    tmp_path: Path, motion_videos: dict[Path, str], vsearch_home: Path
) -> None:
    from typer.testing import CliRunner

    from vsearch.cli.main import app

    root = good_library(tmp_path, motion_videos, 2)
    multiprocessing.set_executable(str(tmp_path / "no-such-python"))
    try:
        result = CliRunner().invoke(app, ["index", str(root), "--model", str(ROOT / "data" / "motion-model"), "-q"])
    finally:
        multiprocessing.set_executable(sys.executable)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("vsearch: decode workers cannot start") and "no-such-python" in lines[-1]
    assert "failed" not in " ".join(lines[:-1])  # no per-file "skipped ..." lines before it
    assert Catalog(vsearch_home).failures() == []
