"""A decoder that misbehaves on cue, run inside the real decode workers.

Files whose names contain "hang", "crash" or "hog" make the worker hang forever, die of a
signal, or allocate past its memory ceiling; every other file decodes normally.
"""

from __future__ import annotations

import ctypes
import os
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
