"""End to end through the installed `vsearch` command, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

VSEARCH = Path(sys.executable).with_name("vsearch")
pytestmark = pytest.mark.skipif(not VSEARCH.exists(), reason="vsearch is not installed in this environment")


def vsearch(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(VSEARCH), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_index_search_similar_and_a_second_run(library: Path, tiny_model: Path) -> None:
    first = vsearch("index", library, "--model", tiny_model)
    assert "12 indexed" in first.stderr and "4 failed" in first.stderr
    stats = json.loads(vsearch("stats", "--json").stdout)
    assert (stats["videos"], stats["failed"]) == (12, 4)
    label = json.loads(vsearch("labels", "--json").stdout)[0]["label"]
    hits = json.loads(vsearch("search", label, "--json").stdout)
    assert hits and hits[0]["label"] == label
    query = sorted(library.glob("*.mp4"))[0]
    similar = json.loads(vsearch("similar", query, "--json").stdout)
    assert similar and str(query) not in {h["path"] for h in similar}
    second = vsearch("index", library)
    assert "0 indexed" in second.stderr and "model:" not in second.stderr


def test_sigkill_midway_then_rerun_indexes_every_good_video_exactly_once(
    library: Path, tiny_model: Path, vsearch_home: Path
) -> None:
    proc = subprocess.Popen(
        [str(VSEARCH), "index", str(library), "--model", str(tiny_model), "--batch-size", "1", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    db = vsearch_home / "vsearch.db"
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    stored = conn.execute("SELECT count(*) FROM videos WHERE status = 'ok'").fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
            if stored >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= stored < 12, "the run should have been killed partway"
    rerun = vsearch("index", library)
    stats = json.loads(vsearch("stats", "--json").stdout)
    assert stats["videos"] == 12 and stats["incomplete"] == 0
    with sqlite3.connect(db) as conn:
        paths = [r[0] for r in conn.execute("SELECT path FROM videos WHERE status = 'ok'")]
    assert len(paths) == len(set(paths)) == 12
    assert sorted(paths) == sorted(str(p) for p in library.glob("*.mp4"))
    assert "indexed" in rerun.stderr


def test_search_reads_while_an_index_run_writes(library: Path, tiny_model: Path) -> None:
    vsearch("index", next(library.glob("*.mp4")), "--model", tiny_model)
    proc = subprocess.Popen([str(VSEARCH), "index", str(library), "--batch-size", "1", "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    answers, refused = 0, None
    while proc.poll() is None:
        result = vsearch("stats", "--json", check=False)
        assert result.returncode == 0, result.stderr
        answers += 1
        if refused is None:
            refused = vsearch("index", library, check=False)  # a second writer, meanwhile
    assert proc.wait() == 0 and answers >= 1
    assert refused is not None and refused.returncode == 1
    assert "another `vsearch index`" in refused.stderr


def listening_sockets(pid: int) -> set[str]:
    """Inodes of LISTEN sockets (TCP/UDP, v4/v6) that process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/net/{table}")
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] in ("0A", "07") and fields[9] in inodes:  # LISTEN, or a bound UDP socket
                    listening.add(f"{table}:{fields[1]}")
    return listening


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_nothing_listens_on_a_network_port(library: Path, tiny_model: Path) -> None:
    proc = subprocess.Popen([str(VSEARCH), "index", str(library), "--model", str(tiny_model), "--batch-size", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: set[str] = set()
    checks = 0
    while proc.poll() is None:
        try:
            seen |= listening_sockets(proc.pid)
            checks += 1
        except FileNotFoundError:
            break
        time.sleep(0.05)
    assert proc.wait() == 0 and checks > 0
    assert seen == set()


def test_ctrl_c_stops_after_the_batch_in_flight_and_says_what_was_saved(
    library: Path, tiny_model: Path, vsearch_home: Path
) -> None:
    proc = subprocess.Popen(
        [str(VSEARCH), "index", str(library), "--model", str(tiny_model), "--batch-size", "1", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    db = vsearch_home / "vsearch.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    if conn.execute("SELECT count(*) FROM videos WHERE status = 'ok'").fetchone()[0] >= 2:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping after the batch in flight" in err and "stopped early" in err
    assert "Traceback" not in err
    saved = int(err.split(" videos found: ")[1].split(" indexed")[0])
    assert 2 <= saved < 12
    stats = json.loads(vsearch("stats", "--json").stdout)
    assert stats["videos"] == saved and stats["incomplete"] == 0
    rest = vsearch("index", library)
    assert f"{12 - saved} indexed" in rest.stderr
