"""A decoder that misbehaves on cue, run inside the real decode workers.

Files whose names contain "hang", "crash" or "hog" make the worker hang forever, die of a
signal, or allocate past its memory ceiling; every other file decodes normally.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from vsearch.video.decode import read_windows as real_read_windows


def read_windows(path: str, *args, **kwargs):
    name = os.path.basename(path)
    if "hang" in name:
        while True:  # like decord's get_batch on a file that over-reports its frames
            time.sleep(1)
    if "crash" in name:
        ctypes.string_at(0)  # a segfault, as in a decoder bug
    if "hog" in name:
        hoard = []
        while True:  # memory growth without bound
            hoard.append(bytearray(256 << 20))
    return real_read_windows(path, *args, **kwargs)


def vanishing_read_windows(path: str, *args, **kwargs):
    """Files named *vanish* are deleted just before decoding starts, as a user might do."""
    if "vanish" in os.path.basename(path):
        os.unlink(path)
    return real_read_windows(path, *args, **kwargs)


def slow_read_windows(path: str, *args, **kwargs):
    """Decoding that costs 0.3 s per chunk, like 4K files with long keyframe intervals."""
    for chunk in real_read_windows(path, *args, **kwargs):
        time.sleep(0.3)
        yield chunk


def killed_once_read_windows(path: str, *args, **kwargs):
    """The first file any worker reads gets that worker killed (SIGKILL, as the kernel's OOM killer
    or a person would); the marker file VSEARCH_TEST_MARKER names remembers it across workers."""
    marker = os.environ["VSEARCH_TEST_MARKER"]
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return real_read_windows(path, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)


def signalled_read_windows(path: str, *args, **kwargs):
    """Every worker is stopped by the signal VSEARCH_TEST_SIGNAL names as it starts on a file, as
    when the whole run is killed from outside or memory runs out for everyone."""
    os.kill(os.getpid(), getattr(signal, os.environ["VSEARCH_TEST_SIGNAL"]))
    time.sleep(60)  # a signal that is handled late must not let the file decode meanwhile


def killed_after_first_chunk_read_windows(path: str, *args, **kwargs):
    """The first worker to read a file is killed after handing on its first chunk; the marker file
    VSEARCH_TEST_MARKER names lets the next worker read the file whole."""
    marker = os.environ["VSEARCH_TEST_MARKER"]
    for i, chunk in enumerate(real_read_windows(path, *args, **kwargs)):
        if i == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        yield chunk
