"""Live recognition: what is happening now, from a camera, a network stream, stdin or a file.

A reader thread decodes the source into a bounded ring of frames, already scaled and cropped to
the model's size exactly as indexing does. Results lie on a fixed grid of source time: window k
covers [k * every, k * every + window) from the first frame, and the model sees the frames inside
those bounds, sampled with the indexer's sampler, so a result names exactly the span it saw (and
says how many of the span's frames arrived). How a slow model is met depends on the source (see
Pace): a file read as fast as possible waits for it and every window is seen; a camera or a
network stream never waits, and windows are skipped, never queued, so latency stays bounded; stdin
waits while that keeps the loop within a window of real time. Each result carries its window's
own labels; events smooth over the last few results, with hysteresis.

Nothing here prints or exits: `LiveRunner.run` yields `Result`, `Event` and `Notice` objects and
raises `LiveError` with a one-line reason.
"""

from __future__ import annotations

import enum
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from vsearch.core.errors import LiveError, ResolutionChanged
from vsearch.model.encoder import Encoder
from vsearch.video.colour import frame_rgb
from vsearch.video.decode import FrameSpec, center_crop, sample_indices

if TYPE_CHECKING:
    import av.container

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
MAX_BACKOFF = 30.0  # seconds between reconnect attempts, at most
MAX_RING_FRAMES = 1024  # a window at 120 fps for 8 s; more is a mistake, not a need
# A live stream is probed for half a second, not FFmpeg's default five: the first result comes sooner.
LIVE_PROBE = {"analyzeduration": "500000"}
LATENCIES_KEPT = 100_000  # for the summary's percentiles: about a day at one result per second
STOP_POLL = 0.1  # seconds between checks whether the caller asked the loop to stop


@dataclass(frozen=True)
class Source:
    """Where frames come from: kind is "file", "camera", "network" or "stdin"."""

    kind: str
    target: str

    @property
    def can_reconnect(self) -> bool:
        return self.kind in ("network", "camera")

    def __str__(self) -> str:
        return "stdin" if self.kind == "stdin" else self.target


def parse_source(text: str) -> Source:
    """`-`, `camera:N`, `/dev/videoN`, a stream URL or a file path."""
    if text == "-":
        return Source("stdin", "-")
    camera = re.fullmatch(r"camera:(\d+)", text)
    if camera:
        index = camera.group(1)
        return Source("camera", index if sys.platform == "darwin" else f"/dev/video{index}")
    if text.startswith("/dev/video"):
        return Source("camera", text)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in NETWORK_SCHEMES:
            raise LiveError(f"unsupported stream {scheme}://; use {', '.join(NETWORK_SCHEMES)}, a camera, a file or -")
        return Source("network", text)
    if not Path(text).is_file():
        raise LiveError(f"{text}: no such file (use camera:0, a stream URL or - for stdin)")
    return Source("file", text)


@dataclass(frozen=True)
class LiveSettings:
    """How the loop samples, smooths, decides and recovers. Times are seconds."""

    window: float = 2.0  # source time covered by one result
    every: float = 1.0  # source time between results, at least
    smooth: int = 2  # results averaged for labels and events
    min_score: float = 0.6  # an event starts when a smoothed label reaches this...
    leave_score: float = 0.4  # ...and ends when it falls below this
    top: int = 5
    realtime: bool = False  # pace a file (or stdin) by its timestamps
    stall_timeout: float = 5.0  # no frame for this long: the source stalled
    reconnects: int = 3  # attempts after a stall or a dropped stream, with backoff
    open_timeout: float = 10.0  # connecting to a network stream or camera
    on_label: str | None = None  # run exec_argv when this label's event starts
    exec_argv: tuple[str, ...] = ()
    exec_timeout: float = 30.0

    def check(self, labels: Sequence[str]) -> None:
        if self.leave_score > self.min_score:
            raise LiveError(f"--leave-score {self.leave_score} is above --min-score {self.min_score}")
        if self.on_label is not None and self.on_label not in labels:
            raise LiveError(f"--on {self.on_label!r} is not a label of this model (e.g. {', '.join(labels[:5])})")
        if bool(self.on_label) != bool(self.exec_argv):
            raise LiveError("--on and --exec go together")


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Result:
    """One window of source time, [start, end): the labels of exactly the frames inside it."""

    start: float
    end: float
    label: str
    score: float
    labels: tuple[LabelScore, ...]
    latency: float  # wall seconds from the arrival of the window's last frame to this result
    model_seconds: float  # of which the model took this long
    dropped: int  # windows skipped just before this one because the model was busy
    frames: int = 0  # source frames inside [start, end) that the model's frames were sampled from
    missing: int = 0  # frames the span should hold at the stream's rate but did not arrive

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "label": self.label,
                "score": round(self.score, 4),
                "labels": [{"label": x.label, "score": round(x.score, 4)} for x in self.labels],
                "latency": round(self.latency, 4), "frames": self.frames, "missing": self.missing}


@dataclass(frozen=True)
class Event:
    """A label starts (kind "start") or stops (kind "end") holding; time in source seconds."""

    kind: str
    label: str
    score: float
    time: float
    duration: float = 0.0  # for "end": how long it held


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the loop (a reconnect, a failed command)."""

    message: str


@dataclass
class Summary:
    source: str
    results: int = 0
    dropped: int = 0
    events: int = 0
    reconnects: int = 0
    source_seconds: float = 0.0
    wall_seconds: float = 0.0
    model_seconds: float = 0.0
    ended: str = "running"
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    def latency(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self.latencies, float), q)) if self.latencies else math.nan


@dataclass(frozen=True)
class _Frame:
    time: float  # source seconds from the first frame
    arrival: float  # time.monotonic() when it was ready for the model
    image: np.ndarray  # (crop_h, crop_w, 3) uint8


class Pace(enum.Enum):
    """How the reader treats a model slower than the source."""

    EVERY_WINDOW = "every window"  # a file read as fast as possible: the reader waits for the model
    KEEP_UP = "keep up"  # a camera, a network stream, a file at its own speed: windows are skipped
    # stdin: a pipe holds its sender back, so the reader waits for the model and every window is
    # seen, until that puts the loop over one window behind real time (a live feed on the pipe):
    # then it keeps up instead.
    FOLLOW = "follow"


class FrameRing:
    """The source's recent frames, bounded; the reader thread puts, the model's thread takes windows.

    Windows lie on a fixed grid of source time: window k covers [origin + k * every, + window),
    origin being the first frame's time, and is taken by those bounds alone, however far the
    reader has run since. A window is complete once the frame that ends it has arrived. The ring
    holds one window and one step, so the newest complete window is always whole in it.
    """

    def __init__(self, window: float, every: float, num_frames: int, pace: Pace):
        self.window, self.every, self.num_frames, self.pace = window, every, num_frames, pace
        self._frames: deque[_Frame] = deque(maxlen=num_frames)
        self._cond = threading.Condition()
        self.ended = False
        self.error: BaseException | None = None
        self.endless = False  # a live network stream: its end is a dropped connection, not the end
        self.interval = 1 / 30  # seconds between frames: the stream's rate, then what the frames show
        self._gaps: deque[float] = deque(maxlen=64)  # the latest intervals between frames
        self.origin: float | None = None  # source time of the first frame: window 0 starts there
        self._origin_arrival = 0.0  # when it arrived: the wall clock's zero for "behind real time"
        self.opened = time.monotonic()
        self._next = 0  # the first window not yet taken: the reader waits past its end
        self._stopped = False

    def start(self, rate: float, endless: bool) -> None:
        """Size the ring for the stream's frame rate: a window and a step, with a margin."""
        with self._cond:
            self.endless = endless
            self._set_interval(1.0 / rate if rate > 0 else self.interval)

    def _set_interval(self, interval: float) -> None:
        self.interval = interval
        capacity = min(MAX_RING_FRAMES, int(math.ceil((self.window + self.every) / interval * 1.25)) + self.num_frames + 2)
        if capacity != self._frames.maxlen:
            self._frames = deque(self._frames, maxlen=capacity)

    def _observe(self, t: float) -> None:
        """Learn the interval from the frames themselves: a container's declared rate can be an
        average over gaps (variable frame rate, dropped frames) or missing altogether."""
        if self._frames:
            self._gaps.append(t - self._frames[-1].time)
        if len(self._gaps) >= 8 and len(self._gaps) % 8 == 0:
            typical = float(np.median(self._gaps))
            if typical > 0 and abs(typical - self.interval) > 0.1 * self.interval:
                self._set_interval(typical)

    def bounds(self, k: int) -> tuple[float, float]:
        """Source seconds [start, end) of window k."""
        start = (self.origin or 0.0) + k * self.every
        return start, start + self.window

    def _completes(self, t: float, k: int) -> bool:
        """A frame at `t` completes window k: it is the window's last frame (half an interval of
        jitter allowed) or later."""
        return t >= self.bounds(k)[1] - 1.5 * self.interval

    def put(self, frame: _Frame) -> bool:
        """Add a frame, waiting for the model as the pace says; False once the consumer stopped."""
        with self._cond:
            if self._stopped:
                return False
            if self.origin is None:
                self.origin, self._origin_arrival = frame.time, frame.arrival
            self._observe(frame.time)
            self._frames.append(frame)
            self._cond.notify_all()
            while not self._stopped and self._completes(frame.time, self._next):
                if self.pace is Pace.KEEP_UP:
                    break
                if self.pace is Pace.FOLLOW:
                    # Past this many seconds from now the frame is a window behind real time.
                    slack = self._origin_arrival + (frame.time - self.origin) + self.window - time.monotonic()
                    if slack <= 0:
                        break
                    self._cond.wait(slack)
                else:
                    self._cond.wait()
            return not self._stopped

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.ended, self.error = True, error
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def wait(self, k: int, stall_timeout: float, should_stop: Callable[[], bool]) -> str:
        """Block until window k is complete: "ready", "ended", "stalled" or "stopped"."""
        with self._cond:
            began = time.monotonic()
            while True:
                if should_stop():
                    return "stopped"
                if self._frames and self._completes(self._frames[-1].time, k):
                    return "ready"
                if self.ended:
                    return "ended"
                # Since the last frame, or since the model last asked: a slow model is not a stall.
                last = max(self._frames[-1].arrival if self._frames else self.opened, began)
                left = last + stall_timeout - time.monotonic()
                if left <= 0:
                    return "stalled"
                self._cond.wait(min(left, STOP_POLL))

    def take(self, k: int) -> tuple[int, list[_Frame]]:
        """The newest complete window from k on (k itself unless the reader ran ahead, keeping up)
        and the frames inside its bounds, oldest first. The reader may go on to the next window."""
        with self._cond:
            newest = self._frames[-1].time
            j = k
            while self._completes(newest, j + 1):
                j += 1
            start, end = self.bounds(j)
            half = self.interval / 2  # a frame at t shows [t, t + interval): inside if it starts inside
            frames = [f for f in self._frames if start - half <= f.time < end - half]
            self._next = j + 1
            self._cond.notify_all()
            return j, frames

    def all_frames(self) -> list[_Frame]:
        """Every frame held: a source shorter than one window gives a single result over these."""
        with self._cond:
            return list(self._frames)

    def expected(self, start: float, end: float) -> int:
        """Frames a span holds at the stream's rate."""
        return max(1, round((end - start) / self.interval))


class _PipeReader:
    """A pipe as PyAV's file object: return whatever bytes have arrived instead of waiting
    until a whole buffer fills, which on a low-bitrate stream would add seconds of latency."""

    def __init__(self, fd: int):
        self.fd = fd

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)


def open_source(source: Source, timeout: float, stdin: BinaryIO | int | None = None,
                read_timeout: float | None = None) -> av.container.InputContainer:
    """Open the source with PyAV; LiveError with the reason when it cannot be read as video.

    Network reads give up after `read_timeout`, so the reader of a stalled stream ends by itself.
    """
    import av

    where = str(source)
    try:
        if source.kind == "stdin":
            fd = stdin if isinstance(stdin, int) else (stdin or sys.stdin.buffer).fileno()
            container = av.open(_PipeReader(fd), mode="r", options=LIVE_PROBE)
        elif source.kind == "camera":
            fmt = "avfoundation" if sys.platform == "darwin" else "v4l2"
            container = av.open(source.target, format=fmt, timeout=timeout)
        elif source.kind == "network":
            container = av.open(source.target, timeout=(timeout, read_timeout or timeout), options=LIVE_PROBE)
        else:
            container = av.open(source.target)
    except av.FFmpegError as exc:
        raise LiveError(f"{where}: {_open_reason(source, exc)}") from None
    except (OSError, ValueError) as exc:
        raise LiveError(f"{where}: {getattr(exc, 'strerror', None) or exc}") from None
    if not container.streams.video:
        container.close()
        raise LiveError(f"{where}: no video stream")
    return container


def _open_reason(source: Source, exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    errno = getattr(exc, "errno", None)
    if source.kind == "camera":
        if errno == 2:
            return "no such camera"
        if errno == 16:
            return "camera is busy (another program is using it)"
        if errno == 13:
            return "permission denied (is this user in the video group?)"
        if errno == 25:
            return "not a camera"
    if source.kind == "stdin" and ("Invalid data" in text or errno == 1094995529):
        return "the bytes on stdin are not a video stream (send e.g. MPEG-TS: ffmpeg ... -f mpegts -)"
    if source.kind == "network":
        return f"cannot reach the stream ({text})"
    return f"not a readable video ({text})"


def _read_frames(source: Source, stdin: BinaryIO | int | None, spec: FrameSpec, ring: FrameRing,
                 settings: LiveSettings, offset: float) -> None:
    """Open the source and decode into the ring until it ends, fails or the ring is stopped.

    This runs in the reader thread, opening included: a sender that never sends must not block
    the loop, which notices the stall and gives up or reconnects.
    """
    try:
        container = open_source(source, settings.open_timeout, stdin, settings.stall_timeout)
    except LiveError as exc:
        ring.finish(exc)
        return
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ring.start(float(stream.average_rate or stream.guessed_rate or 0),
                   endless=source.kind == "network" and not container.duration)
        size: tuple[int, int] | None = None
        shape: tuple[int, int] = (0, 0)
        rotation = 0
        first_pts: float | None = None
        last = -math.inf
        wall0 = time.monotonic()
        for frame in container.decode(stream):
            if ring.stopped:
                return
            if size is None:
                rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                rotation = rotation if rotation in (90, 180, 270) else 0
                shape = (frame.width, frame.height)
                w, h = shape if rotation in (0, 180) else shape[::-1]
                size = spec.scaled_size(w, h)
            elif (frame.width, frame.height) != shape:
                raise ResolutionChanged(f"{source}: the resolution changed mid-stream, from {shape[0]}x{shape[1]} to "
                                f"{frame.width}x{frame.height}; start vsearch live again")
            pts = float(frame.time) if frame.time is not None else time.monotonic() - wall0
            if first_pts is None:
                first_pts = pts
            t = offset + pts - first_pts
            if t <= last:  # a timestamp that goes backwards or repeats: keep time moving forward
                t = last + ring.interval
            last = t
            if settings.realtime:
                ahead = wall0 + (t - offset) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            # A copy of its own: the ring keeps frames while the decoder goes on, and a frame that
            # needs no conversion could share the decoder's buffers.
            image = np.array(center_crop(frame_rgb(frame, size, rotation), spec.crop), order="C", copy=True)
            if not ring.put(_Frame(t, time.monotonic(), image)):
                return
    except Exception as exc:  # the source broke mid-way: FFmpeg, OS or timeout errors, or ours
        ring.finish(exc)
    else:
        ring.finish()
    finally:
        container.close()


class CommandHooks:
    """Runs the user's --exec command, as an argument list, when the --on label starts.

    Commands run in the background with a time limit; one that hangs is killed, one that fails
    is reported, and neither stops the loop. At most `max_running` run at once.
    """

    def __init__(self, label: str, argv: Sequence[str], timeout: float, max_running: int = 4):
        self.label, self.argv, self.timeout, self.max_running = label, tuple(argv), timeout, max_running
        self._running: list[tuple[subprocess.Popen, float]] = []

    def fire(self, event: Event) -> list[Notice]:
        if event.kind != "start" or event.label != self.label:
            return []
        if len(self._running) >= self.max_running:
            return [Notice(f"--exec: {len(self._running)} commands still running; not starting another")]
        env = dict(os.environ, VSEARCH_LABEL=event.label, VSEARCH_SCORE=f"{event.score:.4f}",
                   VSEARCH_TIME=f"{event.time:.3f}")
        try:
            # Its output goes to stderr: stdout carries the results, which another program may parse.
            proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=2,
                                    start_new_session=True)
        except OSError as exc:
            return [Notice(f"--exec: cannot run {self.argv[0]!r}: {exc.strerror or exc}")]
        self._running.append((proc, time.monotonic()))
        return []

    def poll(self) -> list[Notice]:
        notices, still = [], []
        for proc, started in self._running:
            code = proc.poll()
            if code is None and time.monotonic() - started > self.timeout:
                _kill(proc)
                notices.append(Notice(f"--exec: stopped {self.argv[0]!r} after {self.timeout:g} s"))
            elif code is None:
                still.append((proc, started))
            elif code != 0:
                notices.append(Notice(f"--exec: {self.argv[0]!r} exited with status {code}"))
        self._running = still
        return notices

    def close(self) -> None:
        """Stop what is still running: a command must not outlive the loop that started it."""
        for proc, _ in self._running:
            _kill(proc)
        self._running = []


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: children of a script go too
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class LiveRunner:
    """The live loop over one source and one encoder; `run()` yields what happens.

    `should_stop` is asked between windows and while waiting for frames: the loop then ends at
    once with its summary, as it does at the end of the source."""

    def __init__(self, source: Source, encoder: Encoder, settings: LiveSettings,
                 stdin: BinaryIO | int | None = None, should_stop: Callable[[], bool] | None = None):
        settings.check(encoder.labels)
        self.source, self.encoder, self.settings, self.stdin = source, encoder, settings, stdin
        self.should_stop = should_stop or (lambda: False)
        self.summary = Summary(str(source))
        self._history: deque[np.ndarray] = deque(maxlen=max(1, settings.smooth))
        self._current: tuple[str, float] | None = None  # label holding now, and since when
        self._hooks = (CommandHooks(settings.on_label, settings.exec_argv, settings.exec_timeout)
                       if settings.on_label else None)

    @property
    def pace(self) -> Pace:
        if self.source.kind == "file":
            return Pace.KEEP_UP if self.settings.realtime else Pace.EVERY_WINDOW
        return Pace.FOLLOW if self.source.kind == "stdin" and not self.settings.realtime else Pace.KEEP_UP

    def run(self) -> Generator[Result | Event | Notice, None, None]:
        """Results, events and notices until the source ends; LiveError when it cannot go on."""
        s = self.settings
        wall0 = time.monotonic()
        ring = self._connect(0.0)
        k = 0  # the next window on the ring's grid
        skipped = 0  # windows passed over since the last result
        attempts = 0
        try:
            while True:
                state = ring.wait(k, s.stall_timeout, self.should_stop)
                yield from self._poll_hooks()
                if state == "stopped":
                    self.summary.ended = "stopped"
                    return
                if state == "ready":
                    attempts = 0
                    j, frames = ring.take(k)
                    skipped += j - k
                    k = j + 1
                    if not frames:  # the stream sent nothing for this span (a gap in its timestamps)
                        skipped += 1
                        continue
                    result, smoothed = self._infer(ring, *ring.bounds(j), frames, skipped)
                    skipped = 0
                    yield result
                    yield from self._events(result, smoothed)
                    continue
                if state == "ended" and ring.error is None and not ring.endless:
                    frames = ring.all_frames()
                    if self.summary.results == 0 and frames:  # shorter than a window: one result
                        result, smoothed = self._infer(ring, frames[0].time, frames[-1].time + ring.interval,
                                                       frames, 0)
                        yield result
                        yield from self._events(result, smoothed)
                    self.summary.ended = "the source ended"
                    return
                reason = self._why(ring, state)
                first_open = self.summary.results == 0 and not ring.all_frames() and attempts == 0
                if not self.source.can_reconnect or first_open or isinstance(ring.error, ResolutionChanged):
                    raise LiveError(reason)
                attempts += 1
                if attempts > s.reconnects:
                    raise LiveError(f"{reason}; gave up after {s.reconnects} reconnect attempts")
                delay = min(2.0 ** (attempts - 1), MAX_BACKOFF)
                yield Notice(f"{reason}; reconnecting in {delay:g} s (attempt {attempts} of {s.reconnects})")
                ring.stop()
                time.sleep(delay)
                self.summary.reconnects += 1
                self._history.clear()  # a window never spans the gap
                ring = self._connect(self.summary.source_seconds + delay)
                k = 0
        except LiveError as exc:
            self.summary.ended = str(exc)
            raise
        finally:
            ring.stop()
            if self._hooks:
                self._hooks.close()
            self.summary.wall_seconds = time.monotonic() - wall0

    def _connect(self, offset: float) -> FrameRing:
        s = self.settings
        spec = self.encoder.frame_spec
        ring = FrameRing(s.window, s.every, spec.num_frames, self.pace)
        threading.Thread(target=_read_frames, name="vsearch-live-reader", daemon=True,
                         args=(self.source, self.stdin, spec, ring, s, offset)).start()
        return ring

    def _why(self, ring: FrameRing, state: str) -> str:
        if state == "stalled":
            return f"{self.source}: no frames for {self.settings.stall_timeout:g} s (the stream stalled)"
        if isinstance(ring.error, LiveError):
            return str(ring.error)
        if ring.error is not None:
            return f"{self.source}: the stream broke ({_error_text(ring.error)})"
        return f"{self.source}: the stream ended"

    def _infer(self, ring: FrameRing, start: float, end: float, frames: list[_Frame],
               dropped: int) -> tuple[Result, np.ndarray]:
        """The model on the frames of [start, end): the result names that span and its own labels;
        the smoothed labels (this window and the ones before it) drive the events."""
        s = self.settings
        picks = sample_indices(len(frames), self.encoder.frame_spec.num_frames)
        window = np.stack([frames[i].image for i in picks])
        started = time.monotonic()
        probs, _ = self.encoder.encode(window[None])
        done = time.monotonic()
        own = probs[0]
        self._history.append(own)
        smoothed = np.mean(self._history, axis=0)
        order = np.argsort(own)[::-1][: s.top]
        labels = tuple(LabelScore(self.encoder.labels[i], float(own[i])) for i in order)
        result = Result(start=start, end=end, label=labels[0].label, score=labels[0].score, labels=labels,
                        latency=done - frames[-1].arrival, model_seconds=done - started, dropped=dropped,
                        frames=len(frames), missing=max(0, ring.expected(start, end) - len(frames)))
        sm = self.summary
        sm.results += 1
        sm.dropped += result.dropped
        sm.model_seconds += result.model_seconds
        sm.latencies.append(result.latency)
        sm.source_seconds = max(sm.source_seconds, end)
        return result, smoothed

    def _events(self, result: Result, smoothed: np.ndarray) -> Iterator[Event | Notice]:
        """Hysteresis over the smoothed labels: a label enters at min_score and holds until it
        falls below leave_score or another label enters."""
        s = self.settings
        best = int(np.argmax(smoothed))
        label, score = self.encoder.labels[best], float(smoothed[best])
        if self._current is not None:
            held, since = self._current
            held_score = float(smoothed[self.encoder.labels.index(held)])
            if held_score < s.leave_score or (label != held and score >= s.min_score):
                at = max(since, result.start)
                self._current = None
                self.summary.events += 1
                yield Event("end", held, held_score, at, at - since)
        if self._current is None and score >= s.min_score:
            self._current = (label, result.start)
            event = Event("start", label, score, result.start)
            self.summary.events += 1
            yield event
            if self._hooks:
                yield from self._hooks.fire(event)

    def _poll_hooks(self) -> list[Notice]:
        return self._hooks.poll() if self._hooks else []


def _error_text(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return str(text).splitlines()[0][:200]
