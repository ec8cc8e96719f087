"""Live recognition with the demo model on generated streams whose content is known: a file at
its own speed, MPEG-TS from a sender process on a pipe, a TCP stream that stalls, a sender killed
mid-way, a hanging --exec command, and the one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vsearch import data
from vsearch.bench.synthetic import motion_stream, write_video
from vsearch.indexer.live import Event, LiveError, LiveRunner, LiveSettings, Notice, Result, parse_source

SEGMENTS = ("moving left", "growing", "moving down")
SECONDS = 4.0  # per segment
WINDOW, EVERY = 2.0, 1.0
SENDER = str(Path(__file__).parent / "live_sender.py")
VSEARCH = str(Path(sys.executable).parent / "vsearch")  # the installed command, as users run it


@pytest.fixture(scope="module")
def encoder():
    from vsearch.indexer.model import load_encoder

    return load_encoder(str(data.path("motion-model")), device="cpu")


@pytest.fixture(scope="module")
def segments_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s each of three motions, one continuous shot per motion, 16 fps."""
    frames = motion_stream(SEGMENTS, SECONDS, np.random.default_rng(1))
    return write_video(tmp_path_factory.mktemp("live") / "segments.mp4", frames)


def collect(runner: LiveRunner) -> tuple[list[Result], list[Event], list[Notice]]:
    results, events, notices = [], [], []
    for item in runner.run():
        {Result: results, Event: events, Notice: notices}[type(item)].append(item)
    return results, events, notices


def check_segments(results: list[Result], events: list[Event]) -> None:
    """Each segment's label is the result of the first window wholly inside it (one window after
    its start) and starts an event by the next result at the latest; no label holds an event for
    longer than one window outside the segments that show it."""
    for k, label in enumerate(SEGMENTS):
        due = k * SECONDS + WINDOW
        # The first window wholly inside the segment: on time unless the model was busy when its
        # last frame came (the machine is shared), and then late by the steps it skipped.
        first = next(r for r in results if r.end >= due - 1e-6 and r.end <= (k + 1) * SECONDS + 1e-6)
        assert first.end - due < 0.01 + (first.dropped + 1) * EVERY and first.label == label, (label, first)
        assert 0 < first.latency < 5.0, f"{label}: reported {first.latency:.3f} s after its window's last frame"
        starts = [e for e in events if e.kind == "start" and e.label == label and e.time >= k * SECONDS - WINDOW]
        assert starts and starts[0].time <= first.start + EVERY + 1e-6, (label, events)
    open_since: dict[str, float] = {}
    spans = []
    for e in events:
        if e.kind == "start":
            open_since[e.label] = e.time
        else:
            spans.append((e.label, open_since.pop(e.label), e.time))
    spans += [(label, since, results[-1].end) for label, since in open_since.items()]
    for label, t0, t1 in spans:
        inside = sum(max(0.0, min(t1, (k + 1) * SECONDS) - max(t0, k * SECONDS))
                     for k, m in enumerate(SEGMENTS) if m == label)
        assert t1 - t0 - inside <= WINDOW + 1e-6, f"{label} held {t1 - t0 - inside:.1f} s outside its segments"


def test_file_at_its_own_speed(encoder, segments_video: Path) -> None:
    runner = LiveRunner(parse_source(str(segments_video)), encoder, LiveSettings(realtime=True))
    started = time.monotonic()
    results, events, notices = collect(runner)
    assert time.monotonic() - started >= len(SEGMENTS) * SECONDS - 1  # paced, not as fast as possible
    check_segments(results, events)
    assert [r.end for r in results] == pytest.approx([2 + i for i in range(len(results))], abs=0.01)
    assert runner.summary.ended == "the source ended" and not notices


def test_file_as_fast_as_possible_sees_every_window(encoder, segments_video: Path) -> None:
    results, events, _ = collect(LiveRunner(parse_source(str(segments_video)), encoder, LiveSettings()))
    assert len(results) == len(SEGMENTS) * SECONDS - WINDOW + 1 and not any(r.dropped for r in results)
    check_segments(results, events)


def sender(video: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SENDER, str(video), *args], stdout=subprocess.PIPE)


def test_mpegts_on_a_pipe(encoder, segments_video: Path) -> None:
    proc = sender(segments_video)
    try:
        runner = LiveRunner(parse_source("-"), encoder, LiveSettings(), stdin=proc.stdout.fileno())
        results, events, notices = collect(runner)
    finally:
        proc.kill()
        proc.wait()
    check_segments(results, events)
    print("latency of each segment's first result:",
          [round(next(r for r in results if r.end >= k * SECONDS + WINDOW - 1e-6).latency, 3)
           for k in range(len(SEGMENTS))])


def test_cli_follows_stdin_and_sender_killed_midway(segments_video: Path, tmp_path: Path) -> None:
    """`sender | vsearch live - --json`: lines arrive while the stream runs; killing the sender
    ends the stream, and vsearch prints its summary and exits 0, without a traceback."""
    read, write = os.pipe()
    live = subprocess.Popen([VSEARCH, "live", "-", "--json", "-m", str(data.path("motion-model")), "--device", "cpu"],
                            stdin=read, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(read)
    while not live.stderr.readline().startswith("live:"):  # the model is loaded: start the stream
        pass
    proc = subprocess.Popen([sys.executable, SENDER, str(segments_video)], stdout=write)
    os.close(write)  # only the sender holds the pipe now: its death reaches vsearch as EOF
    first = json.loads(live.stdout.readline())
    proc.kill()
    out, err = live.communicate(timeout=30)
    lines = [first] + [json.loads(line) for line in out.splitlines()]
    assert live.returncode == 0, err
    assert set(first) == {"start", "end", "label", "score", "labels", "latency"}
    assert first["label"] == SEGMENTS[0] and len(first["labels"]) == 5
    assert lines[-1]["end"] < len(SEGMENTS) * SECONDS  # it stopped with the sender, before the end
    assert "the source ended" in err and "Traceback" not in err


class StallingServer:
    """A TCP stream that sends a few seconds of video, then goes silent; later clients are
    accepted and get nothing, like a server that hangs."""

    def __init__(self, payload: bytes):
        self.payload, self.connections = payload, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._clients.append(client)
            if self.connections == 1:
                client.sendall(self.payload)

    def close(self) -> None:
        self.sock.close()
        for c in self._clients:
            c.close()


@pytest.fixture
def short_ts(tmp_path: Path) -> bytes:
    frames = motion_stream(("moving right",), 3.0, np.random.default_rng(5))
    return write_video(tmp_path / "short.ts", frames).read_bytes()


def test_stalled_stream_reconnects_then_gives_up(encoder, short_ts: bytes) -> None:
    server = StallingServer(short_ts)
    settings = LiveSettings(stall_timeout=1.0, reconnects=2)
    runner = LiveRunner(parse_source(server.url), encoder, settings)
    seen: list[Result | Event | Notice] = []
    started = time.monotonic()
    try:
        with pytest.raises(LiveError, match="no frames for 1 s.*gave up after 2 reconnect attempts"):
            for item in runner.run():
                seen.append(item)
    finally:
        server.close()
    notices = [x.message for x in seen if isinstance(x, Notice)]
    assert len(notices) == 2 and "reconnecting in 1 s (attempt 1 of 2)" in notices[0]
    assert "reconnecting in 2 s (attempt 2 of 2)" in notices[1]
    assert server.connections == 3 and runner.summary.reconnects == 2
    assert any(isinstance(x, Result) for x in seen)  # it did recognise what came before the stall
    assert time.monotonic() - started < 20


def test_hanging_exec_command_does_not_stop_the_loop(encoder, tmp_path: Path) -> None:
    video = write_video(tmp_path / "left.mp4", motion_stream(("moving left",), 4.0, np.random.default_rng(1)))
    marker = tmp_path / "env.txt"
    # The label reaches the command through the environment only; sh -c gets a fixed script.
    script = f'echo "$VSEARCH_LABEL|$VSEARCH_SCORE|$VSEARCH_TIME" > {marker}; exec sleep 600'
    settings = LiveSettings(realtime=True, on_label="moving left", exec_argv=("sh", "-c", script),
                            exec_timeout=0.5)
    runner = LiveRunner(parse_source(str(video)), encoder, settings)
    results, events, notices = collect(runner)
    assert [e.label for e in events if e.kind == "start"] == ["moving left"]
    assert any("stopped 'sh' after 0.5 s" in n.message for n in notices), notices
    assert results[-1].end == pytest.approx(4.0)  # the loop went on to the end of the video
    label, score, at = marker.read_text().strip().split("|")
    assert label == "moving left" and float(score) >= 0.6 and float(at) == pytest.approx(0.0)


def test_failing_exec_command_is_reported(encoder, segments_video: Path) -> None:
    settings = LiveSettings(realtime=False, on_label="moving left", exec_argv=("false",))
    runner = LiveRunner(parse_source(str(segments_video)), encoder, settings)
    results, _, notices = collect(runner)
    assert any("'false' exited with status 1" in n.message for n in notices)
    assert results[-1].end == pytest.approx(len(SEGMENTS) * SECONDS)


def pipe_of(payload: bytes) -> int:
    """The read end of a pipe that a thread fills with `payload`, then closes."""
    read, write = os.pipe()

    def fill() -> None:
        with os.fdopen(write, "wb") as f:
            try:
                f.write(payload)
            except BrokenPipeError:
                pass

    threading.Thread(target=fill, daemon=True).start()
    return read


def run_to_error(encoder, source: str, stdin: int | None = None) -> str:
    runner = LiveRunner(parse_source(source), encoder, LiveSettings(stall_timeout=2.0), stdin=stdin)
    with pytest.raises(LiveError) as info:
        for _ in runner.run():
            pass
    return str(info.value)


def test_one_line_errors(encoder, tmp_path: Path, short_ts: bytes) -> None:
    assert run_to_error(encoder, "camera:9") == "/dev/video9: no such camera"
    assert "not a video stream" in run_to_error(encoder, "-", pipe_of(np.random.default_rng(0).bytes(200_000)))
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert "cannot reach the stream (Connection refused)" in run_to_error(encoder, f"tcp://127.0.0.1:{port}")
    bigger = write_video(tmp_path / "big.ts", motion_stream(("growing",), 2.0, np.random.default_rng(2))
                         .repeat(2, axis=1).repeat(2, axis=2)).read_bytes()
    message = run_to_error(encoder, "-", pipe_of(short_ts + bigger))
    assert "resolution changed mid-stream, from 64x48 to 128x96" in message
    for bad in ("ftp://example.com/a.ts", str(tmp_path / "missing.mp4")):
        with pytest.raises(LiveError):
            parse_source(bad)


def test_ctrl_c_stops_at_once_with_the_summary(segments_video: Path) -> None:
    live = subprocess.Popen([VSEARCH, "live", str(segments_video), "--realtime", "--json",
                             "-m", str(data.path("motion-model")), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    live.stdout.readline()
    live.send_signal(signal.SIGINT)
    sent = time.monotonic()
    lines = []
    for line in live.stderr:  # the summary comes at once; the interpreter's exit may take longer
        lines.append(line)
        if line.startswith("stopped (Ctrl-C)"):
            assert time.monotonic() - sent < 2.0
    assert live.wait(timeout=30) == 130
    err = "".join(lines)
    assert "stopped (Ctrl-C)" in err and "latency p50" in err and "Traceback" not in err
