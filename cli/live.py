"""`vsearch live SOURCE`: recognise activity as it happens. Parses options, runs the library's
LiveRunner and presents what it yields: events (or JSON lines) on stdout, notices on stderr."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from vsearch.cli.app import Device, Home, Model, Precision, Runtime, app, fail, info, reported, safe
from vsearch.search.timecode import seconds_label

if TYPE_CHECKING:
    from vsearch.live.loop import Event, Summary


@app.command()
def live(
    source: Annotated[str, typer.Argument(help="A file, camera:0 or /dev/video0, a stream URL (rtsp, http(s), "
                                          "udp, srt, tcp), or - for a stream on stdin.", show_default=False)],
    model: Model = None,
    home: Home = None,
    device: Device = "auto",
    precision: Precision = "auto",
    runtime: Runtime = "auto",
    window: Annotated[float, typer.Option("--window", min=0.1, help="Seconds of video per result.")] = 2.0,
    every: Annotated[float, typer.Option("--every", min=0.05, help="Seconds between results, at least; when "
                                         "the model is slower, windows are skipped.")] = 1.0,
    realtime: Annotated[bool, typer.Option("--realtime", help="Play a file at its own speed, skipping windows "
                                           "when the model is slower (default: as fast as possible, every window); "
                                           "on stdin, keep up with the sender from the start.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result per line.")] = False,
    min_score: Annotated[float, typer.Option("--min-score", min=0.0, max=1.0, help="An event starts when a "
                                             "label's smoothed score reaches this.")] = 0.6,
    leave_score: Annotated[float, typer.Option("--leave-score", min=0.0, max=1.0, help="...and ends when it "
                                               "falls below this.")] = 0.4,
    smooth: Annotated[int, typer.Option("--smooth", min=1, help="Results averaged for events (each result's own "
                                        "labels are its window's alone).")] = 2,
    on: Annotated[str | None, typer.Option("--on", help="Run --exec when this label starts.")] = None,
    exec_cmd: Annotated[str | None, typer.Option("--exec", help="Command to run, split like a shell line but "
                                                 "never run by one; gets VSEARCH_LABEL, VSEARCH_SCORE, "
                                                 "VSEARCH_TIME.")] = None,
    exec_timeout: Annotated[float, typer.Option("--exec-timeout", min=0.1, help="Seconds before the command is "
                                                "stopped.")] = 30.0,
    stall_timeout: Annotated[float, typer.Option("--stall-timeout", min=0.1, help="Seconds without a frame "
                                                 "before the stream counts as stalled.")] = 5.0,
    reconnects: Annotated[int, typer.Option("--reconnects", min=0, help="Reconnect attempts after a stall.")] = 3,
) -> None:
    """Recognise activity as it happens, from a camera, a stream, stdin or a file.

    Prints a line as each event starts and ends; --json prints every result: the span of source time
    it covers, its labels, the frames it saw and its latency.
    Example: vsearch live camera:0 --on "push up" --exec "notify-send push-up"
    """
    from vsearch.library import load_model
    from vsearch.live.loop import Event, LiveError, LiveRunner, LiveSettings, Notice, Result, parse_source

    argv: tuple[str, ...] = ()
    if exec_cmd is not None:
        try:
            argv = tuple(shlex.split(exec_cmd))
        except ValueError as exc:
            fail(f"--exec: {exc}", 2)
        if not argv or shutil.which(argv[0]) is None:
            fail(f"--exec: no such command {argv[0] if argv else ''!r}", 2)
    try:
        src = parse_source(source)
    except LiveError as exc:
        fail(str(exc), 2)
    settings = LiveSettings(window=window, every=every, smooth=smooth, min_score=min_score, leave_score=leave_score,
                            realtime=realtime, stall_timeout=stall_timeout, reconnects=reconnects, on_label=on,
                            exec_argv=argv, exec_timeout=exec_timeout)
    with ctrl_c() as stop:
        try:
            with reported():
                encoder = load_model(model, device=device, runtime=runtime, precision=precision, home=home, log=info)
            runner = LiveRunner(src, encoder, settings, should_stop=stop.is_set)
        except LiveError as exc:
            fail(str(exc), 2)
        except KeyboardInterrupt:
            info("stopped (Ctrl-C) before the first result")
            raise typer.Exit(130) from None
        info(f"live: {safe(src)}, {window:g} s windows, a result every {every:g} s at most (Ctrl-C stops)")
        items = runner.run()
        try:
            for item in items:
                if isinstance(item, Result):
                    if as_json:
                        sys.stdout.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
                        sys.stdout.flush()
                elif isinstance(item, Event):
                    if not as_json:
                        _print_event(item)
                elif isinstance(item, Notice):
                    info(f"vsearch: {safe(item.message)}")
        except LiveError as exc:
            if runner.summary.results:
                _print_summary(runner.summary)
            fail(str(exc))
        except KeyboardInterrupt:
            items.close()  # stops the reader and any --exec commands now
        except BrokenPipeError:  # the program reading our output went away: nothing left to say
            items.close()
            sys.stderr.close()
            raise typer.Exit(0) from None
    if stop.is_set():
        runner.summary.ended = "stopped (Ctrl-C)"
    _print_summary(runner.summary)
    raise typer.Exit(130 if stop.is_set() else 0)


@contextmanager
def ctrl_c() -> Iterator[threading.Event]:
    """Ctrl-C stops the loop at once: it interrupts whatever runs (a model load, a wait), and it
    also sets the event the loop checks between steps, so one swallowed by a library on the way
    still stops it. A SIGINT that the caller ignores (a background job of a script) stays ignored."""
    stop = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield stop
        return
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _print_event(event: Event) -> None:
    if event.kind == "start":
        typer.echo(f"{seconds_label(event.time)}  {safe(event.label)}  {event.score:.2f}")
    else:
        typer.echo(f"{seconds_label(event.time)}  {safe(event.label)}  ended after {event.duration:.1f} s")
    sys.stdout.flush()


def _print_summary(s: Summary) -> None:
    per_window = s.model_seconds / s.results if s.results else 0.0
    info(f"{s.ended}: {s.source_seconds:.1f} s of video in {s.wall_seconds:.1f} s, {s.results} results, "
         f"{s.dropped} windows skipped, {s.events} events, {s.reconnects} reconnects")
    if s.results:
        info(f"latency p50 {s.latency(50):.3f} s, p95 {s.latency(95):.3f} s; model {per_window:.3f} s per window")
