"""Child processes in tests: lines read with a deadline, so a test can fail but never hang."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import IO


class Lines:
    """The lines of a child's text stream, read by a thread of its own; each take has a deadline.

    A child that dies, hangs or prints something else fails the test with what it did print,
    instead of leaving a `readline()` blocked forever."""

    def __init__(self, stream: IO[str], name: str = "output"):
        self.name = name
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        except ValueError:  # the stream was closed under us
            pass
        self._queue.put(None)

    def next(self, timeout: float) -> str | None:
        """The next line, or None at the end of the stream; AssertionError after `timeout` seconds."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line on {self.name} within {timeout:g} s; so far: {self.seen[-5:]}") from None
        if line is None:
            self._queue.put(None)  # the end stays the end for later calls
        else:
            self.seen.append(line)
        return line

    def until(self, wanted: Callable[[str], bool], timeout: float) -> str:
        """The first line that `wanted` accepts, within `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"{self.name} ended without the line wanted; it printed: {self.seen[-5:]}")
            if wanted(line):
                return line

    def rest(self, timeout: float) -> list[str]:
        """Every line until the stream ends, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        lines = []
        while (line := self.next(max(0.0, deadline - time.monotonic()))) is not None:
            lines.append(line)
        return lines
