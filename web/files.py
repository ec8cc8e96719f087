"""The files the web page serves, by catalog id: only ever the file the catalog row names.

Every media route goes through `verified_file`: the row's path is opened, then the open file is
checked against what was indexed (a regular file, same size and mtime, same content hash). A file
replaced since indexing, or a link swapped to point elsewhere, is refused rather than served. The
hash is read from the descriptor that is then served, so there is no window between the check and
the read.
"""

from __future__ import annotations

import os
import stat
import threading

from vsearch.core.errors import NotIndexed
from vsearch.search.catalog import VideoRow
from vsearch.video.files import content_hash_fd


class FileRefused(NotIndexed):
    """The row's file is gone, or is no longer the file that was indexed (404)."""


_verified: dict[tuple[int, int, int, int], str] = {}  # (dev, inode, size, mtime_ns) -> content hash
_verified_lock = threading.Lock()


def verified_file(video: VideoRow) -> int:
    """A read-only descriptor of the video's file, if it is still what was indexed; the caller
    closes it. FileRefused (404) otherwise."""
    try:
        # O_NONBLOCK: a FIFO swapped in for the file must not hang the open
        fd = os.open(video.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise FileRefused(f"cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("not a regular file")
        if st.st_size != video.size or st.st_mtime != video.mtime:
            raise FileRefused("changed since it was indexed")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with _verified_lock:
            known = _verified.get(key)
        if known is None:
            known = content_hash_fd(fd, st.st_size)
            with _verified_lock:
                _verified[key] = known
        if known != video.content_hash:
            raise FileRefused("not the file that was indexed")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_file(video: VideoRow) -> None:
    """verified_file for a route that hands the path on (to FFmpeg) rather than serving bytes."""
    os.close(verified_file(video))
