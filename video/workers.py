"""Decode workers: decoding runs ahead of the model, in processes a bad file cannot take down.

Each worker is a separate process with its own pipe, a memory ceiling and a time limit per
request. The parent asks a worker for one chunk of windows at a time, so that
  - at most `prefetch` decoded chunks wait in memory, whatever the size of the library;
  - the time limit measures decoding alone, never time spent waiting for the model;
  - a worker that hangs (decord's get_batch can spin forever) or crashes (a segfault in FFmpeg)
    is killed or replaced, its file is reported as failed, and the run goes on.
A pipe per worker, rather than one shared queue, means killing a worker cannot corrupt the
channel the others use.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait

import numpy as np

from vsearch.core.errors import DecodeError
from vsearch.video.decode import Extras, FrameSpec, Sampling, VideoInfo, Window, read_windows

# read_windows' signature: a file, the model's frame spec and the sampling -> chunks of windows.
ReadWindows = Callable[..., Iterator[tuple[VideoInfo, list[Window], np.ndarray]]]


@dataclass(frozen=True)
class DecodeSettings:
    spec: FrameSpec
    sampling: Sampling = field(default_factory=Sampling)
    workers: int = 1
    threads: int = 0  # FFmpeg threads per worker; 0: the worker's share of the cores
    timeout: float = 120.0  # seconds one chunk may take before the worker is judged hung
    memory_limit: int = 8 << 30  # bytes of address space per worker
    backend: str = "auto"
    chunk: int = 4  # windows per message
    prefetch: int = 4  # decoded chunks allowed to wait for the model
    thumbs: bool = False  # also a JPEG of each window's middle frame, from the frames decoded anyway
    scene: FrameSpec | None = None  # also the scene model's frames of each window, at its own size
    # The decoder, a part passed in: a test hands the workers one that hangs or crashes. It goes to
    # the worker processes by name, so it must be a module-level function.
    read: ReadWindows = read_windows


# Requests, parent -> worker.
@dataclass(frozen=True)
class Open:
    """Start on this file and send its first chunk."""

    key: int
    path: str


@dataclass(frozen=True)
class Next:
    """Send the next chunk of the open file."""


@dataclass(frozen=True)
class Stop:
    """Exit."""


Request = Open | Next | Stop


# Replies, worker -> parent; the pool hands them on as they are.
@dataclass
class Chunk:
    key: int
    info: VideoInfo
    windows: list[Window]
    frames: np.ndarray  # (n, T, H, W, 3) uint8
    decode_seconds: float
    thumbs: list[bytes | None] = field(default_factory=list)  # JPEG per window, when asked for
    scenes: np.ndarray | None = None  # (n, frames, H, W, 3) at the scene model's size, when asked for


@dataclass
class Finished:
    key: int


@dataclass
class Failed:
    key: int
    reason: str


Event = Chunk | Finished | Failed


def worker_main(conn: Connection, settings: DecodeSettings) -> None:
    """A decode worker process: answers Open, Next and Stop requests on `conn` until told to stop."""
    # Ctrl-C reaches the whole process group; the parent decides when to stop, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if settings.memory_limit > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (settings.memory_limit, settings.memory_limit))
        except (ImportError, ValueError, OSError):
            pass  # not on this OS; the time limit still guards us
    read = settings.read
    stream = None
    key = -1
    extras = Extras(settings.thumbs, settings.scene) if settings.thumbs or settings.scene else None
    while True:
        try:
            request: Request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if isinstance(request, Stop):
            return
        started = time.perf_counter()
        reply: Event
        try:
            if isinstance(request, Open):
                key, stream = request.key, None
                if extras is not None:
                    extras.clear()
                stream = read(request.path, settings.spec, settings.sampling, backend=settings.backend,
                              threads=settings.threads, chunk=settings.chunk, extras=extras)
            if stream is None:
                continue
            info, windows, frames = next(stream)
            reply = Chunk(key, info, windows, frames, time.perf_counter() - started)
            if extras is not None:
                reply.thumbs = extras.jpegs[:] if settings.thumbs else []
                reply.scenes = np.stack(extras.scene_frames) if extras.scene_frames else None
                extras.clear()
        except StopIteration:
            stream, reply = None, Finished(key)
        except Exception as exc:  # any decoder failure is a property of this file
            stream, reply = None, Failed(key, _failure_reason(exc, settings))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _failure_reason(exc: Exception, settings: DecodeSettings) -> str:
    if isinstance(exc, DecodeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"decoder ran out of memory (limit {settings.memory_limit / (1 << 30):.1f} GiB)"
    if isinstance(exc, FileNotFoundError):
        return "file disappeared while indexing"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"decoder error: {type(exc).__name__}: {exc}"[:300]


class _Worker:
    def __init__(self, ctx: mp.context.SpawnContext, settings: DecodeSettings):
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, settings), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        self.key: int | None = None
        self.path = ""
        self.asked_at: float | None = None  # when the outstanding request was sent

    def ask(self, request: Request) -> None:
        self.conn.send(request)
        self.asked_at = time.monotonic()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class DecodePool:
    """Decode many files in worker processes; iterate `run(jobs)` for Chunk/Finished/Failed."""

    def __init__(self, settings: DecodeSettings):
        self.settings = settings  # threads 0: each worker gets its share of the cores (see _start)
        # spawn, not fork: the parent holds torch's thread pools, which do not survive a fork.
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self.target = max(1, settings.workers)

    def _start(self) -> _Worker:
        """A worker whose FFmpeg frame threads, unless the settings fix them, are its share of the
        cores: one worker decodes on every core (4K HEVC needs them), many split them."""
        s = self.settings
        threads = s.threads or max(1, (os.cpu_count() or 1) // self.target)
        return _Worker(self._ctx, replace(s, threads=threads))

    def grow(self, limit: int) -> bool:
        """One more decode worker, up to `limit`: the caller saw the model waiting for frames."""
        if self.target >= limit:
            return False
        self.target += 1
        return True

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(Stop())
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 2
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            w.kill()
        self._workers = []

    def run(self, jobs: Iterable[tuple[int, str]]) -> Iterator[Event]:
        """Decode (key, path) jobs; events of different files interleave, a file's chunks are in order."""
        s = self.settings
        pending = iter(jobs)
        exhausted = False
        ready: deque[Event] = deque()
        while True:
            while len(self._workers) < self.target:
                self._workers.append(self._start())
            for i, w in enumerate(self._workers):
                if w.key is None and not exhausted:
                    job = next(pending, None)
                    if job is None:
                        exhausted = True
                    else:
                        w.key, w.path = job
                        self._send(i, Open(w.key, w.path), ready)
                elif w.key is not None and w.asked_at is None and len(ready) < s.prefetch:
                    self._send(i, Next(), ready)
            if ready:
                yield ready.popleft()
                continue
            busy = [w for w in self._workers if w.asked_at is not None]
            if not busy:
                if exhausted:
                    return
                continue
            oldest = min(w.asked_at for w in busy if w.asked_at is not None)
            timeout = max(0.0, oldest + s.timeout - time.monotonic())
            handles = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            wait(handles, timeout=timeout)
            for i, w in enumerate(self._workers):
                if w.asked_at is None:
                    continue
                if w.conn.poll():
                    try:
                        reply = w.conn.recv()
                    except (EOFError, OSError):
                        self._replace(i, ready, _death_reason(w))
                        continue
                    w.asked_at = None
                    self._handle(i, reply, ready)
                elif not w.process.is_alive():
                    self._replace(i, ready, _death_reason(w))
                elif time.monotonic() - w.asked_at > s.timeout:
                    self._replace(i, ready, f"decoder hung (no progress in {s.timeout:g}s); killed")

    def _send(self, i: int, request: Request, ready: deque[Event]) -> None:
        w = self._workers[i]
        try:
            w.ask(request)
        except (BrokenPipeError, OSError):
            self._replace(i, ready, _death_reason(w))

    def _handle(self, i: int, reply: Event, ready: deque[Event]) -> None:
        ready.append(reply)
        if not isinstance(reply, Chunk):  # the file is done with: the worker is free
            self._workers[i].key = None

    def _replace(self, i: int, ready: deque[Event], reason: str) -> None:
        """Kill worker i, report its file as failed, and start a fresh worker in its place."""
        w = self._workers[i]
        if w.key is not None:
            ready.append(Failed(w.key, reason))
        w.kill()
        self._workers[i] = self._start()


def _death_reason(w: _Worker) -> str:
    w.process.join(timeout=1)
    code = w.process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"decoder crashed ({name})"
    return f"decoder exited unexpectedly (exit code {code})"


def default_workers(device: str = "cpu") -> int:
    """How many decode processes keep the model busy without starving it of cores.

    On a GPU the model is fast and decoding is the bottleneck: all cores but one decode. On the
    CPU one decoder per 8 cores, and torch keeps its threads on every core: each decoder's FFmpeg
    frame threads (see DecodePool) take what the model leaves, which on small files is little
    (VideoMAE-base: ~0.3-1.4 s per clip on 2 cores, against ~0.1-0.15 s to decode a 720p window)
    and on 4K HEVC is most of the machine (~4 s of 2 cores per 4-s window).
    """
    cores = os.cpu_count() or 2
    if device.startswith("cuda"):
        return max(1, cores - 1)
    return max(1, cores // 8)


class Ahead:
    """A pool's events, decoded ahead by a thread of their own while the caller runs the model.

    The pool only sends its workers new requests while someone iterates it; iterated by the model's
    thread, it would wait each time the model runs, and the model would then wait for frames at
    every batch. Here a thread keeps the workers busy until `windows` decoded windows wait (the
    model's next batch or two), so decoding overlaps the model and memory stays bounded. The model
    releases the interpreter while it computes (torch and OpenVINO both do), so the thread runs.
    """

    def __init__(self, events: Iterator[Event], windows: int):
        self._events, self._limit = events, max(1, windows)
        self._queue: deque[Event] = deque()
        self._held = 0  # windows in the queue
        self._cond = threading.Condition()
        self._done = self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vsearch-decode-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._events:
                with self._cond:
                    while self._held >= self._limit and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        break
                    self._queue.append(event)
                    self._held += _windows(event)
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the caller, who sees it on its next call
            self._error = exc
        finally:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self) -> Ahead:
        return self

    def __next__(self) -> Event:
        with self._cond:
            while not self._queue and not self._done:
                self._cond.wait()
            if self._queue:
                event = self._queue.popleft()
                self._held -= _windows(event)
                self._cond.notify_all()
                return event
        if self._error is not None:
            raise self._error
        raise StopIteration

    def close(self) -> None:
        """Stop decoding ahead; returns once the thread has let go of the pool."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()


def _windows(event: Event) -> int:
    return len(event.windows) if isinstance(event, Chunk) else 0
