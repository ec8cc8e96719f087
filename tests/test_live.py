"""Live recognition with the demo model on generated streams whose content is known: the strict
timing check on every kind of source (a file read losslessly or at its own speed, MPEG-TS on a
pipe faster than real time or at it, a TCP stream on loopback), the same with a model too slow
to keep up, a stream that drops frames, a stream that stalls, a sender killed mid-way, a hanging
--exec command, Ctrl-C, and the one-line errors."""

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

from tests.procs import Lines
from vsearch import data
from vsearch.bench.synthetic import motion_stream, write_video
from vsearch.live.loop import Event, LiveError, LiveRunner, LiveSettings, Notice, Result, parse_source

# Six known segments, one continuous shot each: what every window inside one of them must say.
SEGMENTS = ("moving up", "moving down", "growing", "moving left", "shrinking", "moving right")
SECONDS = 3.0  # per segment
FPS = 16
WINDOW, EVERY = 3.0, 1.0
SENDER = str(Path(__file__).parent / "live_sender.py")
VSEARCH = str(Path(sys.executable).parent / "vsearch")  # the installed command, as users run it
ENDED = "the stream ended; gave up after 0 reconnect attempts"  # a live network stream that ends


@pytest.fixture(scope="module")
def encoder():
    from vsearch.model.encoder import load_encoder

    return load_encoder(str(data.path("motion-model")), device="cpu")


class SlowEncoder:
    """The demo model, made slower than --every, so that a source which does not wait skips windows."""

    def __init__(self, encoder, seconds: float):
        self.encoder, self.seconds, self.labels = encoder, seconds, encoder.labels

    @property
    def frame_spec(self):
        return self.encoder.frame_spec

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.seconds)
        return self.encoder.encode(frames)


@pytest.fixture(scope="module")
def segments_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s each of six motions, one continuous shot per motion, 16 fps."""
    frames = motion_stream(SEGMENTS, SECONDS, np.random.default_rng(1), fps=FPS)
    return write_video(tmp_path_factory.mktemp("live") / "segments.mp4", frames, fps=FPS)


def collect(runner: LiveRunner, ends_with: str | None = None,
            seen: list[float] | None = None) -> tuple[list[Result], list[Event], list[Notice]]:
    """What the loop yields until the source ends; with `ends_with`, until the LiveError it must
    end with (a live network stream that ends is a dropped stream). `seen` gets the monotonic time
    at which each result came."""
    results, events, notices = [], [], []
    try:
        for item in runner.run():
            {Result: results, Event: events, Notice: notices}[type(item)].append(item)
            if seen is not None and isinstance(item, Result):
                seen.append(time.monotonic())
    except LiveError as exc:
        if ends_with is None or ends_with not in str(exc):
            raise
    else:
        assert ends_with is None, f"the loop ended without {ends_with!r}"
    return results, events, notices


def segment_of(result: Result) -> int | None:
    """The segment that holds at least 80% of the result's span, if one does."""
    for k in range(len(SEGMENTS)):
        inside = min(result.end, (k + 1) * SECONDS) - max(result.start, k * SECONDS)
        if inside >= 0.8 * (result.end - result.start):
            return k
    return None


def check_timeline(results: list[Result], every_segment: bool = True) -> None:
    """The strict check: each result names a window of the grid and the frames it saw; of the
    windows at least 80% inside one segment, at least 95% carry that segment's label; and (unless
    windows were skipped) every segment is recognised."""
    assert results
    for r in results:
        assert r.start == pytest.approx(round(r.start / EVERY) * EVERY, abs=1e-6), f"off the grid: {r}"
        assert r.end - r.start == pytest.approx(WINDOW)
        assert r.frames == round(WINDOW * FPS) and r.missing == 0, r  # the stream lost no frame
    judged = [(r, k) for r in results if (k := segment_of(r)) is not None]
    right = [r for r, k in judged if r.label == SEGMENTS[k]]
    assert len(right) >= 0.95 * len(judged), [(r.start, r.end, r.label, SEGMENTS[k]) for r, k in judged]
    if every_segment:
        assert {SEGMENTS[k] for r, k in judged if r.label == SEGMENTS[k]} == set(SEGMENTS)
        ends = [r.end for r in results]
        assert ends == pytest.approx([WINDOW + i * EVERY for i in range(len(ends))])  # no window skipped


def settings(**kw) -> LiveSettings:
    return LiveSettings(window=WINDOW, every=EVERY, **kw)


def test_file_read_losslessly_sees_every_window(encoder, segments_video: Path) -> None:
    results, events, _ = collect(LiveRunner(parse_source(str(segments_video)), encoder, settings()))
    assert len(results) == len(SEGMENTS) * SECONDS - WINDOW + 1 and not any(r.dropped for r in results)
    check_timeline(results)


@pytest.mark.parametrize("realtime", [False, True])
def test_events_follow_the_results(encoder, tmp_path: Path, realtime: bool) -> None:
    """Events smooth over two results: each label starts an event inside its own segment (4 s of
    each motion, 2-s windows), at the start of a result, and no event outlasts its segment by more
    than a window."""
    motions, seconds = ("moving left", "growing", "moving down"), 4.0
    video = write_video(tmp_path / "three.mp4", motion_stream(motions, seconds, np.random.default_rng(1), fps=FPS))
    results, events, _ = collect(LiveRunner(parse_source(str(video)), encoder,
                                            LiveSettings(window=2.0, every=1.0, realtime=realtime)))
    starts = {r.start for r in results}
    for k, label in enumerate(motions):
        assert any(e.kind == "start" and e.label == label and k * seconds <= e.time < (k + 1) * seconds
                   for e in events), (label, events)
    assert all(e.time in starts for e in events)
    open_since: dict[str, float] = {}
    spans = []
    for e in events:
        if e.kind == "start":
            open_since[e.label] = e.time
        else:
            spans.append((e.label, open_since.pop(e.label), e.time))
    spans += [(label, since, results[-1].end) for label, since in open_since.items()]
    for label, t0, t1 in spans:
        inside = sum(max(0.0, min(t1, (k + 1) * seconds) - max(t0, k * seconds))
                     for k, m in enumerate(motions) if m == label)
        assert t1 - t0 - inside <= 2.0 + 1e-6, f"{label} held {t1 - t0 - inside:.1f} s outside its segments"


def test_file_at_its_own_speed(encoder, segments_video: Path) -> None:
    runner = LiveRunner(parse_source(str(segments_video)), encoder, settings(realtime=True))
    seen: list[float] = []
    started = time.monotonic()
    results, _, notices = collect(runner, seen=seen)
    assert time.monotonic() - started >= len(SEGMENTS) * SECONDS - 1  # paced, not as fast as possible
    check_timeline(results)
    assert runner.summary.ended == "the source ended" and not notices
    # A result's latency runs from the arrival of its window's last frame, which (paced by its
    # timestamp, one frame before the window's end) came no sooner than `end - 1/FPS` seconds after
    # the start; and it includes the model's own time.
    for r, t in zip(results, seen):
        assert r.model_seconds <= r.latency <= t - started - r.end + 1.5 / FPS, (r, t - started)


def sender(video: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SENDER, str(video), *args], stdout=subprocess.PIPE)


def run_on_pipe(encoder, video: Path, *args: str, seen: list[float] | None = None) -> tuple[list[Result], LiveRunner]:
    proc = sender(video, *args)
    try:
        runner = LiveRunner(parse_source("-"), encoder, settings(), stdin=proc.stdout.fileno())
        results, _, _ = collect(runner, seen=seen)
    finally:
        proc.kill()
        proc.wait()
    return results, runner


def test_mpegts_on_a_pipe_faster_than_real_time(encoder, segments_video: Path) -> None:
    """A recording piped in: the pipe holds the sender back, so no window is lost."""
    seen: list[float] = []
    results, _ = run_on_pipe(encoder, segments_video, "--fast", seen=seen)
    check_timeline(results)
    # not paced to real time: the results came at least twice as fast as the stream's own clock runs
    # (paced, the last would come no sooner than the stream time between them after the first)
    assert seen[-1] - seen[0] < (results[-1].end - results[0].end) / 2


def test_mpegts_on_a_pipe_at_real_time(encoder, segments_video: Path) -> None:
    results, _ = run_on_pipe(encoder, segments_video)
    check_timeline(results)


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, found without connecting (a connection would
    be the sender's one client)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows):
            return True
    return False


def served(video: Path) -> tuple[subprocess.Popen, str]:
    """The video as MPEG-TS over TCP at its own speed, from FFmpeg's own listener on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, SENDER, str(video), "--serve", str(port)])
    deadline = time.monotonic() + 20
    while not listening(port):
        assert proc.poll() is None and time.monotonic() < deadline, "the sender did not start listening"
        time.sleep(0.05)
    return proc, f"tcp://127.0.0.1:{port}"


def test_network_stream_on_loopback(encoder, segments_video: Path) -> None:
    proc, url = served(segments_video)
    try:
        results, _, _ = collect(LiveRunner(parse_source(url), encoder, settings(reconnects=0)), ENDED)
    finally:
        proc.kill()
        proc.wait()
    check_timeline(results)


@pytest.mark.parametrize("source", ["file at its own speed", "pipe at real time", "network"])
def test_a_model_slower_than_the_source_skips_windows_and_names_the_ones_it_saw(
        encoder, segments_video: Path, source: str) -> None:
    slow = SlowEncoder(encoder, 1.6 * EVERY)
    proc = None
    try:
        if source == "network":
            proc, url = served(segments_video)
            runner = LiveRunner(parse_source(url), slow, settings(reconnects=0))
        elif source == "pipe at real time":
            proc = sender(segments_video)
            runner = LiveRunner(parse_source("-"), slow, settings(), stdin=proc.stdout.fileno())
        else:
            runner = LiveRunner(parse_source(str(segments_video)), slow, settings(realtime=True))
        results, _, _ = collect(runner, ENDED if source == "network" else None)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    assert sum(r.dropped for r in results) > 0 and runner.summary.dropped == sum(r.dropped for r in results)
    check_timeline(results, every_segment=False)
    starts = [r.start for r in results]
    assert all(b - a == pytest.approx((r.dropped + 1) * EVERY) for a, b, r in zip(starts, starts[1:], results[1:]))


def test_frames_the_stream_lost_are_counted(encoder, tmp_path: Path) -> None:
    """A stream with 1 s of frames missing (a congested camera): the window over the gap still
    names its own span, and says how many of its frames never came."""
    frames = motion_stream(("moving left",), 6.0, np.random.default_rng(3), fps=FPS)
    keep = [i for i in range(len(frames)) if not 3 * FPS <= i < 4 * FPS]
    video = write_video(tmp_path / "gap.mp4", frames[keep], pts_ms=[round(i * 1000 / FPS) for i in keep])
    results, _, _ = collect(LiveRunner(parse_source(str(video)), encoder, LiveSettings(window=2.0, every=1.0)))
    by_start = {round(r.start): r for r in results}
    assert sorted(by_start) == [0, 1, 2, 3, 4]
    assert [by_start[s].missing for s in range(5)] == [0, 0, FPS, FPS, 0]
    assert all(r.frames + r.missing == 2 * FPS for r in results)


def test_cli_follows_stdin_and_sender_killed_midway(segments_video: Path, tmp_path: Path) -> None:
    """`sender | vsearch live - --json`: lines arrive while the stream runs; killing the sender
    ends the stream, and vsearch prints its summary and exits 0, without a traceback."""
    read, write = os.pipe()
    live = subprocess.Popen([VSEARCH, "live", "-", "--json", "-m", str(data.path("motion-model")), "--device", "cpu",
                             "--window", str(WINDOW)],
                            stdin=read, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(read)
    out, err = Lines(live.stdout, "stdout"), Lines(live.stderr, "stderr")
    try:
        err.until(lambda line: line.startswith("live:"), timeout=120)  # the model is loaded: start the stream
        proc = subprocess.Popen([sys.executable, SENDER, str(segments_video)], stdout=write)
        os.close(write)  # only the sender holds the pipe now: its death reaches vsearch as EOF
        first = json.loads(out.next(timeout=30) or "null")
        proc.kill()
        proc.wait()
        lines = [first] + [json.loads(line) for line in out.rest(timeout=30)]
        assert live.wait(timeout=30) == 0, "".join(err.seen)
    finally:
        live.kill()
    text = "".join(err.rest(timeout=5))
    assert set(first) == {"start", "end", "label", "score", "labels", "latency", "frames", "missing"}
    assert first["label"] == SEGMENTS[0] and len(first["labels"]) == 5
    assert (first["start"], first["end"], first["frames"]) == (0.0, WINDOW, WINDOW * FPS)
    assert lines[-1]["end"] < len(SEGMENTS) * SECONDS  # it stopped with the sender, before the end
    assert "the source ended" in text and "Traceback" not in text


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
    """A stream that stalls after its first seconds, with a stall timeout far beyond the test's
    deadlines: nothing but the Ctrl-C can end the run, and it does, with the summary and exit 130."""
    feed = subprocess.Popen([sys.executable, SENDER, str(segments_video), "--stall-after", "4"], stdout=subprocess.PIPE)
    live = subprocess.Popen([VSEARCH, "live", "-", "--json", "-m", str(data.path("motion-model")), "--device", "cpu",
                             "--stall-timeout", "3600"],
                            stdin=feed.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    feed.stdout.close()  # vsearch holds the pipe's read end now
    out, err = Lines(live.stdout, "stdout"), Lines(live.stderr, "stderr")
    try:
        json.loads(out.next(timeout=120) or "null")  # a result: the loop runs
        live.send_signal(signal.SIGINT)
        err.until(lambda line: line.startswith("stopped (Ctrl-C)"), timeout=60)
        assert live.wait(timeout=60) == 130
    finally:
        live.kill()
        feed.kill()
        feed.wait()
    text = "".join(err.seen + err.rest(timeout=5))
    assert "latency p50" in text and "Traceback" not in text


@pytest.mark.parametrize("after", [1.0, 3.0])
def test_ctrl_c_while_starting_stops_at_once(segments_video: Path, after: float) -> None:
    """Ctrl-C while modules and the model load: no traceback, exit 130, within a second or two."""
    live = subprocess.Popen([VSEARCH, "live", str(segments_video), "--json", "-m", str(data.path("motion-model")),
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(after)
        live.send_signal(signal.SIGINT)
        sent = time.monotonic()
        code = live.wait(timeout=30)
        assert time.monotonic() - sent < 5.0
    finally:
        live.kill()
    out, err = live.communicate(timeout=5)
    assert code == 130 and "Traceback" not in err, err
    assert out == ""  # stopped before its first result
