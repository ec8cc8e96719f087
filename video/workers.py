"""Decode workers: decoding runs ahead of the model, in processes a bad file cannot take down.

Each worker is a separate process with its own pipe, a memory ceiling and a time limit per
request. The parent asks a worker for one chunk of windows at a time, so that
  - at most `prefetch` decoded chunks wait in memory, whatever the size of the library;
  - the time limit measures decoding alone, never time spent waiting for the model;
  - a worker that hangs (decord's get_batch can spin forever) or crashes (a segfault in FFmpeg)
    is killed and replaced, and the run goes on.
A pipe per worker, rather than one shared queue, means killing a worker cannot corrupt the
channel the others use.

Whose fault a lost worker is. A file is recorded as failed only for a fault that follows it: the
decoder gave an error reading it, or it took down two workers in a row while workers are otherwise
healthy (other files decode, or a fresh worker decodes a tiny video made on the spot). Anything else
is no file's fault, and stops the run with a WorkerError that records nothing against any file:
workers that cannot start, workers stopped from outside (SIGTERM, SIGHUP), several killed at once
(the machine out of memory), workers that die whatever they are given (a broken install).

How a worker starts. It is `python -c <entry>` of the caller's own interpreter, handed its end of
a socket pair. Unlike multiprocessing's spawn it never re-imports the caller's main module, so
indexing works the same from a script, standard input, `python -c`, the interactive prompt, a
notebook or a web server's thread, with or without an `if __name__ == "__main__"` guard. A frozen
application (which has no interpreter to run) and Windows use multiprocessing's spawn, which
their `multiprocessing.freeze_support()` serves.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.spawn
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import IO

import numpy as np

from vsearch.core.errors import DecodeError, WorkerError
from vsearch.video.decode import Extras, FrameSpec, Sampling, VideoInfo, Window, read_windows

# read_windows' signature: a file, the model's frame spec and the sampling -> chunks of windows.
ReadWindows = Callable[..., Iterator[tuple[VideoInfo, list[Window], np.ndarray]]]

START_TIMEOUT = 60.0  # seconds a new worker may take to import and say it is ready (a loaded machine)
# Signals that come from outside (a shell's kill, a service manager, a closed terminal), never from
# a decoder's own fault: a worker they stop says nothing about the file it was reading.
OUTSIDE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT})


@dataclass(frozen=True)
class DecodeSettings:
    spec: FrameSpec | None = None  # the video model's frames; None for a pool that runs `work` only
    sampling: Sampling = field(default_factory=Sampling)
    workers: int = 1
    threads: int = 0  # FFmpeg threads per worker; 0: the worker's share of the cores
    timeout: float = 120.0  # seconds one chunk may take before the worker is judged hung
    memory_limit: int = 8 << 30  # bytes of address space per worker
    backend: str = "auto"
    chunk: int = 4  # windows per message
    prefetch: int = 4  # decoded chunks allowed to wait for the model
    thumbs: bool = False  # also a JPEG of each window's middle frame, from the frames decoded anyway
    # also each other kind of evidence's frames of each window, at its own size: (kind, spec) pairs
    sides: tuple[tuple[str, FrameSpec], ...] = ()
    # The decoder, a part passed in: a test hands the workers one that hangs or crashes. It goes to
    # the worker processes by name, so it must be a module-level function.
    read: ReadWindows = read_windows
    # Instead of decoding windows: a function of a file's path run whole in the worker (a kind of
    # evidence that reads the file itself: its audio, its subtitles), given a callable to say it is
    # still making progress; its answer comes back as Done. It must pickle.
    work: Callable[[str, Callable[[], None]], object] | None = None


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
class Call:
    """Run the settings' work on this file and send back what it returns."""

    key: int
    path: str


@dataclass(frozen=True)
class Canary:
    """Decode a tiny video made on the spot: can a fresh worker decode at all?"""


@dataclass(frozen=True)
class Stop:
    """Exit."""


Request = Open | Next | Call | Canary | Stop


@dataclass(frozen=True)
class Ready:
    """The first thing a worker sends: it started, and waits for requests."""

    pid: int


@dataclass(frozen=True)
class Healthy:
    """The answer to Canary: the tiny video decoded."""


@dataclass(frozen=True)
class Alive:
    """Work still in progress (a long file being transcribed): the time limit starts again."""


# Replies about files, worker -> parent; the pool hands them on as they are.
@dataclass
class Chunk:
    key: int
    info: VideoInfo
    windows: list[Window]
    frames: np.ndarray  # (n, T, H, W, 3) uint8
    decode_seconds: float
    thumbs: list[bytes | None] = field(default_factory=list)  # JPEG per window, when asked for
    # by kind of evidence: (n, frames, H, W, 3) at its own size, when asked for
    sides: dict[str, np.ndarray] = field(default_factory=dict)

    def from_window(self, index: int) -> Chunk | None:
        """This chunk without its windows before `index` (None if nothing is left): a file decoded
        again after its worker was lost must not deliver a window twice."""
        keep = [i for i, w in enumerate(self.windows) if w.index >= index]
        if len(keep) == len(self.windows):
            return self
        if not keep:
            return None
        return replace(self, windows=[self.windows[i] for i in keep], frames=self.frames[keep],
                       thumbs=[self.thumbs[i] for i in keep] if self.thumbs else [],
                       sides={name: frames[keep] for name, frames in self.sides.items()})


@dataclass
class Finished:
    key: int


@dataclass
class Failed:
    key: int
    reason: str


@dataclass
class Done:
    """What the settings' work returned for a file."""

    key: int
    result: object
    seconds: float


Event = Chunk | Finished | Failed | Done


def worker_main(conn: Connection, settings: DecodeSettings) -> None:
    """A decode worker process: says Ready, then answers requests on `conn` until told to stop."""
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
    extras = Extras(settings.thumbs, dict(settings.sides)) if settings.thumbs or settings.sides else None
    try:
        conn.send(Ready(os.getpid()))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            request: Request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if isinstance(request, Stop):
            return
        started = time.perf_counter()
        reply: Event | Healthy
        try:
            if isinstance(request, Canary):
                stream = None
                _decode_canary(settings)
                reply = Healthy()
            elif isinstance(request, Call):
                assert settings.work is not None  # a pool sends Call only when it has work
                key, stream = request.key, None
                reply = Done(key, settings.work(request.path, _alive(conn)), 0.0)
                reply.seconds = time.perf_counter() - started
            else:
                if isinstance(request, Open):
                    key, stream = request.key, None
                    if extras is not None:
                        extras.clear()
                    assert settings.spec is not None  # a pool sends Open only with the model's frame spec
                    stream = read(request.path, settings.spec, settings.sampling, backend=settings.backend,
                                  threads=settings.threads, chunk=settings.chunk, extras=extras)
                if stream is None:
                    continue
                info, windows, frames = next(stream)
                reply = Chunk(key, info, windows, frames, time.perf_counter() - started)
                if extras is not None:
                    reply.thumbs = extras.jpegs[:] if settings.thumbs else []
                    reply.sides = {name: np.stack(frames) for name, frames in extras.frames.items()}
                    extras.clear()
        except StopIteration:
            stream, reply = None, Finished(key)
        except Exception as exc:  # any decoder failure is a property of this file
            stream, reply = None, Failed(key, _failure_reason(exc, settings))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _alive(conn: Connection, every: float = 5.0) -> Callable[[], None]:
    """What work calls as it goes: an Alive to the parent now and then, so that a long file is not
    taken for a hung one."""
    last = [time.monotonic()]

    def alive() -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            conn.send(Alive())

    return alive


def child_main(fd: int) -> None:
    """The entry of a worker started as `python -c`: its settings are the first message on `fd`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        settings = conn.recv()
    except (EOFError, OSError):
        return
    worker_main(conn, settings)


def _decode_canary(settings: DecodeSettings) -> None:
    """Write a second of a small moving picture and read it back with the workers' own decoder."""
    import av

    with tempfile.TemporaryDirectory(prefix="vsearch-canary-") as folder:
        path = os.path.join(folder, "canary.mkv")
        with av.open(path, "w") as container:
            stream = container.add_stream("mpeg4", rate=8)  # FFmpeg's own encoder: in every build
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for i in range(8):
                image = np.full((48, 64, 3), 30 * i, np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode(None))
        if settings.work is not None:
            settings.work(path, lambda: None)
            return
        for _ in settings.read(path, settings.spec, settings.sampling, backend=settings.backend, threads=1,
                               chunk=settings.chunk):
            pass


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


# -- starting a worker ---------------------------------------------------------------------

# Ctrl-C reaches the whole process group: a worker ignores it from its first line, imports included.
_ENTRY = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
          "from vsearch.video.workers import child_main; child_main(int(sys.argv[1]))")


class _Child:
    """A worker started as `python -c`: its process, and a file with what it printed (the cause
    when it cannot start)."""

    def __init__(self, settings: DecodeSettings):
        executable = mp.spawn.get_executable()  # honours multiprocessing.set_executable, as spawn does
        ours, theirs = socket.socketpair()
        self.output: IO[bytes] | None = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [executable, "-c", _ENTRY, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=self.output, stderr=self.output, env=_child_env())
        except OSError as exc:
            ours.close()
            self.close()
            raise WorkerError(f"decode workers cannot start: {executable}: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        try:
            self.conn.send(settings)
        except (BrokenPipeError, OSError):
            pass  # it died at once: the wait for Ready says why

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def join(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def said(self) -> str:
        """The last line the process printed (a traceback's last line names the cause)."""
        if self.output is None:
            return ""
        self.output.seek(0)
        lines = [line for line in self.output.read()[-4000:].decode(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else ""

    def close(self) -> None:
        if self.output is not None:
            self.output.close()
            self.output = None


class _SpawnedChild:
    """A worker started by multiprocessing's spawn: frozen applications and Windows."""

    def __init__(self, settings: DecodeSettings):
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(theirs, settings), daemon=True)
        try:
            self.process.start()
        except OSError as exc:
            raise WorkerError(f"decode workers cannot start: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        self.conn = ours

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def join(self, timeout: float) -> None:
        self.process.join(timeout)

    def said(self) -> str:
        return ""  # its output went to the parent's own stderr

    def close(self) -> None:
        pass


def _child_env() -> dict[str, str]:
    """The caller's environment, with the folders its imports come from: a worker must import what
    the caller imported (a vsearch found through sys.path, a test's decoder) however it was started."""
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    seen = [p for i, p in enumerate(paths) if os.path.isdir(p) and p not in paths[:i]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(seen)}


def through_multiprocessing() -> bool:
    """Whether workers start through multiprocessing's spawn: in a frozen application, which has no
    interpreter to run `-c` with, and on Windows, which has no socket pairs to hand down."""
    return bool(getattr(sys, "frozen", False)) or sys.platform == "win32"


def _start_child(settings: DecodeSettings) -> _Child | _SpawnedChild:
    return _SpawnedChild(settings) if through_multiprocessing() else _Child(settings)


class _Worker:
    def __init__(self, settings: DecodeSettings):
        self.child = _start_child(settings)
        self.conn = self.child.conn
        self.ready = False
        self.started_at = time.monotonic()
        self.key: int | None = None
        self.path = ""
        self.asked_at: float | None = None  # when the outstanding request was sent

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the worker says it is ready; WorkerError (nothing blamed) if it cannot start."""
        deadline = self.started_at + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            reply: object = None
            try:
                if self.conn.poll(max(0.0, left)):
                    reply = self.conn.recv()
            except (EOFError, OSError):
                pass
            if isinstance(reply, Ready):
                self.ready = True
                return
            self.child.join(1 if reply is None and left > 0 else 0)
            code = self.child.exitcode
            said = self.child.said()
            self.kill()
            if code is None:
                why = f"no answer within {timeout:g} s"
            else:
                why = _exit_words(code) + (f": {said}" if said else "")
            raise WorkerError(f"decode workers cannot start ({why}); no file was recorded as failed")

    def ask(self, request: Request) -> None:
        self.conn.send(request)
        self.asked_at = time.monotonic()

    def kill(self) -> None:
        self.child.kill()
        self.child.join(5)
        self.conn.close()
        self.child.close()


def _exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Faults:
    """What lost workers say about the files they were reading.

    A file whose worker was lost is read again by another worker; lost a second time, it is a
    suspect, blamed once a worker answers about another file (or decodes the canary), which shows
    that workers in general are fine."""

    strikes: dict[int, int] = field(default_factory=dict)
    suspects: dict[int, tuple[str, int]] = field(default_factory=dict)  # key -> (reason, answers when suspected)
    answers: int = 0  # replies from workers about files: each shows a worker alive and reading
    lost_in_a_row: int = 0  # workers lost since the last answer

    def lost(self, key: int, reason: str) -> bool:
        """Count a worker lost on this file; True when the file should be read again."""
        self.lost_in_a_row += 1
        self.strikes[key] = self.strikes.get(key, 0) + 1
        if self.strikes[key] < 2:
            return True
        self.suspects[key] = (f"{reason}, again in a second worker", self.answers)
        return False

    def answered(self) -> list[Failed]:
        """A worker answered about a file: the suspects lost before it are to blame."""
        self.answers += 1
        self.lost_in_a_row = 0
        return self.blame(lambda at: at < self.answers)

    def blame(self, when: Callable[[int], bool] = lambda at: True) -> list[Failed]:
        blamed = [Failed(key, reason) for key, (reason, at) in self.suspects.items() if when(at)]
        for failed in blamed:
            del self.suspects[failed.key]
        return blamed


class DecodePool:
    """Decode many files in worker processes; iterate `run(jobs)` for Chunk/Finished/Failed.

    Raises WorkerError when the workers themselves fail (see the module's docstring); files that
    failed before that are reported, and no other file is."""

    def __init__(self, settings: DecodeSettings):
        self.settings = settings  # threads 0: each worker gets its share of the cores (see _worker_settings)
        self._workers: list[_Worker] = []
        self.target = max(1, settings.workers)

    def _worker_settings(self) -> DecodeSettings:
        """A worker's settings: its FFmpeg frame threads, unless the settings fix them, are its share of
        the cores (one worker decodes on every core, which 4K HEVC needs; many split them)."""
        s = self.settings
        return replace(s, threads=s.threads or max(1, (os.cpu_count() or 1) // self.target))

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
            w.child.join(max(0.0, deadline - time.monotonic()))
            w.kill()
        self._workers = []

    def run(self, jobs: Iterable[tuple[int, str]]) -> Iterator[Event]:
        """Decode (key, path) jobs; events of different files interleave, a file's chunks are in order."""
        s = self.settings
        pending = iter(jobs)
        exhausted = False
        ready: deque[Event] = deque()
        again: deque[tuple[int, str]] = deque()  # files whose worker was lost, to be read by another
        delivered: dict[int, int] = {}  # windows handed on per file: a file read again skips them
        faults = _Faults()
        while True:
            self._start_workers()
            for i, w in enumerate(self._workers):
                if w.key is None:
                    job = again.popleft() if again else None
                    if job is None and not exhausted:
                        job = next(pending, None)
                        exhausted = job is None
                    if job is not None:
                        w.key, w.path = job
                        self._send(i, Call(*job) if s.work is not None else Open(*job), faults, again)
                elif w.asked_at is None and len(ready) < s.prefetch:
                    self._send(i, Next(), faults, again)
            if ready:
                yield ready.popleft()
                continue
            busy = [w for w in self._workers if w.asked_at is not None]
            if not busy:
                if again or not exhausted:
                    continue
                if faults.suspects:  # nothing else left to show that workers are fine
                    ready.extend(self._canary(faults))
                    continue
                return
            if faults.lost_in_a_row > 2 * len(self._workers) + 2:  # lost on every file: are workers fine?
                ready.extend(self._canary(faults))
                faults.lost_in_a_row = 0
            oldest = min(w.asked_at for w in busy if w.asked_at is not None)
            wait([w.conn for w in busy], timeout=max(0.0, oldest + s.timeout - time.monotonic()))
            killed_at_once = 0
            for i, w in enumerate(self._workers):
                if w.asked_at is None:
                    continue
                reply: object = None
                gone = False
                if w.conn.poll():
                    try:
                        reply = w.conn.recv()
                    except (EOFError, OSError):
                        gone = True
                if isinstance(reply, Alive):
                    w.asked_at = time.monotonic()
                    continue
                if isinstance(reply, (Chunk, Finished, Failed, Done)):
                    w.asked_at = None
                    ready.extend(faults.answered())
                    self._handle(i, reply, ready, delivered)
                    continue
                if gone or w.child.exitcode is not None:
                    reason = _death_reason(w)
                    killed_at_once += _killed(w)
                elif time.monotonic() - w.asked_at > s.timeout:
                    reason = f"decoder hung (no progress in {s.timeout:g}s); killed"
                else:
                    continue  # still decoding
                self._lose(i, reason, faults, again)
            if killed_at_once > 1:
                raise WorkerError(f"{killed_at_once} decode workers were killed at once (SIGKILL): the machine may be "
                                  "out of memory; no file was recorded as failed")

    def _start_workers(self) -> None:
        started = []
        while len(self._workers) < self.target:
            self._workers.append(_Worker(self._worker_settings()))
            started.append(self._workers[-1])
        for w in started:
            w.wait_ready()

    def _send(self, i: int, request: Request, faults: _Faults, again: deque[tuple[int, str]]) -> None:
        w = self._workers[i]
        try:
            w.ask(request)
        except (BrokenPipeError, OSError):
            self._lose(i, _death_reason(w), faults, again)

    def _handle(self, i: int, reply: Event, ready: deque[Event], delivered: dict[int, int]) -> None:
        if isinstance(reply, Chunk):
            kept = reply.from_window(delivered.get(reply.key, 0))
            if kept is not None:
                delivered[reply.key] = kept.windows[-1].index + 1
                ready.append(kept)
            return
        ready.append(reply)
        self._workers[i].key = None  # the file is done with: the worker is free

    def _lose(self, i: int, reason: str, faults: _Faults, again: deque[tuple[int, str]]) -> None:
        """Worker i is gone or hung: kill it, start another in its place, and read its file again
        (or hold it as a suspect); a worker stopped from outside stops the run."""
        w = self._workers[i]
        w.kill()
        code = w.child.exitcode
        if code is not None and code < 0 and -code in OUTSIDE_SIGNALS:
            raise WorkerError(f"a decode worker was stopped from outside vsearch ({_exit_words(code)}); "
                              "no file was recorded as failed: run again to finish")
        self._workers[i] = _Worker(self._worker_settings())
        self._workers[i].wait_ready()
        if w.key is not None and faults.lost(w.key, reason):
            again.append((w.key, w.path))

    def _canary(self, faults: _Faults) -> list[Failed]:
        """A fresh worker decodes a tiny video made on the spot: the suspect files are blamed (returned
        as failed) only if it can; if it cannot, the workers are at fault and the run stops."""
        w = _Worker(self._worker_settings())
        try:
            w.wait_ready()
            w.ask(Canary())
            reply: object = None
            try:
                if w.conn.poll(self.settings.timeout):
                    reply = w.conn.recv()
            except (EOFError, OSError):
                pass
            if not isinstance(reply, Healthy):
                why = reply.reason if isinstance(reply, Failed) else _death_reason(w) if w.child.exitcode is not None \
                    else f"no answer in {self.settings.timeout:g}s"
                raise WorkerError(f"decode workers fail whatever they read, even a tiny test video ({why}); "
                                  "no file was recorded as failed")
        finally:
            w.kill()
        return faults.blame()


def _death_reason(w: _Worker) -> str:
    w.child.join(1)
    code = w.child.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"decoder crashed ({name})"
    return f"decoder exited unexpectedly (exit code {code})"


def _killed(w: _Worker) -> int:
    """1 if the worker was killed by SIGKILL, which is how the kernel ends a process when memory runs out."""
    return int(w.child.exitcode == -signal.SIGKILL)


def default_workers(device: str = "cpu") -> int:
    """How many decode processes keep the model busy without starving it of cores.

    On a GPU the model is fast and decoding is the bottleneck: all cores but one decode. On the
    CPU one decoder per 8 cores, and torch keeps its threads on every core: each decoder's FFmpeg
    frame threads (see DecodePool) take what the model leaves, which on small files is little
    (VideoMAE-base: ~0.3-1.4 s per window on 2 cores, against ~0.1-0.15 s to decode a 720p window)
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
