"""Video bytes by catalog id: HTTP Range, and only ever the file the catalog row names.

A row's path is opened, then the open file is checked against what was indexed (a regular
file, same size and mtime, same content hash): a file replaced since indexing, or a
link swapped to point elsewhere, is refused rather than served. The hash is read from
the descriptor that is then served, so there is no window between the check and the read.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Iterator

from vsearch.search.catalog import VideoRow
from vsearch.video.files import content_hash_fd

MAX_RANGES = 8  # more in one request is not a player seeking; RFC 9110 lets a server refuse
CHUNK = 256 * 1024


_SPEC = re.compile(r"([0-9]*)-([0-9]*)")  # ASCII digits only: no signs, spaces or other scripts' digits


def _int(digits: str) -> int:
    """Past any file size, a number's exact value does not matter (and 5000 digits would not parse)."""
    return int(digits) if len(digits) <= 18 else 10**18


class Unsatisfiable(Exception):
    """The Range header names no byte of the file, or too many ranges (416)."""


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """Byte ranges (first, last inclusive) a Range header asks for; None: serve the whole file.

    Per RFC 9110 a header that does not parse (or another unit) is ignored, so None; a header
    that parses but names no byte of this file, or more than MAX_RANGES ranges, raises.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        raise Unsatisfiable(f"more than {MAX_RANGES} ranges")
    ranges = []
    for part in parts:
        m = _SPEC.fullmatch(part.strip())
        if m is None or not (m[1] or m[2]):
            return None
        if not m[1]:  # "-N": the last N bytes
            n = _int(m[2])
            if n > 0 and size > 0:
                ranges.append((max(0, size - n), size - 1))
            continue
        a, b = _int(m[1]), _int(m[2]) if m[2] else size - 1
        if m[2] and b < a:
            return None  # "5-3" is invalid syntax, not an unsatisfiable range
        if a < size:
            ranges.append((a, min(b, size - 1)))
    if not ranges:
        raise Unsatisfiable("no byte of the file in range")
    return ranges


class MediaRefused(Exception):
    """The catalog row's file is gone, or is no longer the file that was indexed."""


_verified: dict[tuple[int, int, int, int], str] = {}  # (dev, inode, size, mtime_ns) -> content hash
_verified_lock = threading.Lock()


def open_indexed(video: VideoRow) -> int:
    """A read-only descriptor of the video's file, if it is still what was indexed."""
    try:
        # O_NONBLOCK: a FIFO swapped in for the file must not hang the open
        fd = os.open(video.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise MediaRefused(f"cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MediaRefused("not a regular file")
        if st.st_size != video.size or st.st_mtime != video.mtime:
            raise MediaRefused("changed since it was indexed")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with _verified_lock:
            known = _verified.get(key)
        if known is None:
            known = content_hash_fd(fd, st.st_size)
            with _verified_lock:
                _verified[key] = known
        if known != video.content_hash:
            raise MediaRefused("not the file that was indexed")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_span(fd: int, first: int, last: int) -> Iterator[bytes]:
    """Bytes first..last (inclusive) of an open file, in chunks (each response has its own descriptor)."""
    pos = first
    os.lseek(fd, first, os.SEEK_SET)
    while pos <= last:
        data = os.read(fd, min(CHUNK, last - pos + 1))
        if not data:
            return  # the file shrank under us: end the body early rather than loop
        pos += len(data)
        yield data
