"""Thumbnails: one small JPEG per clip window, named by clip id, under the index home.

The indexer writes them from frames its decode workers already hold (no second decode of the
file); an index made before thumbnails existed gets them lazily, one seek per window, on first
view. Both paths go through `encode_jpeg` and `thumb_path`, so a thumbnail looks the same
whichever made it. Nothing here imports torch.
"""

from __future__ import annotations

import os
import stat
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vsearch.search.catalog import Catalog

THUMB_DIR = "thumbs"
THUMB_WIDTH = 320  # px; about what a result card shows, ~10-20 KB as JPEG
_PER_FOLDER = 1000  # clips per sub-folder, so no folder grows to millions of entries


def thumb_path(home: Path, clip_id: int) -> Path:
    """Where the thumbnail of clip `clip_id` lives (it may not exist yet)."""
    return Path(home) / THUMB_DIR / str(clip_id // _PER_FOLDER) / f"{clip_id}.jpg"


def thumb_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a thumbnail for a frame of this size: THUMB_WIDTH wide, even sides."""
    w = min(THUMB_WIDTH, width)
    h = max(2, int(round(height * w / max(width, 1) / 2)) * 2)
    return max(2, w // 2 * 2), h


def encode_jpeg(rgb: np.ndarray, quality: int = 5) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes, with PyAV's MJPEG encoder (no extra dependency).

    `quality` is FFmpeg's qscale: 2 (best) to 31; 5 keeps faces and text readable at ~15 KB.
    """
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": str(quality), "qmax": str(quality)}
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def write_thumb(home: Path, clip_id: int, jpeg: bytes) -> Path:
    """Store a thumbnail atomically: a reader never sees half a file."""
    path = thumb_path(home, clip_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(jpeg)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ThumbError(Exception):
    """No thumbnail can be made for this clip; the message says why."""


def ensure_thumb(catalog: Catalog, clip_id: int) -> Path:
    """The clip's thumbnail, made on first request for an index older than thumbnails.

    One seek to the middle frame of the window, with the same PyAV reader the indexer uses;
    the model never runs. The file must still be the one that was indexed (same size and
    mtime): a file replaced since, or a link swapped to another file, gets no thumbnail.
    """
    from vsearch.indexer.decode import DecodeError, Reader, probe

    path = thumb_path(catalog.home, clip_id)
    if path.is_file():
        return path
    found = catalog.clip_span(clip_id)
    if found is None:
        raise ThumbError(f"no clip {clip_id} in the index")
    video, start, end = found
    try:
        st = os.stat(video.path)
    except OSError as exc:
        raise ThumbError(f"{video.path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size != video.size or st.st_mtime != video.mtime:
        raise ThumbError(f"{video.path} changed since it was indexed")
    try:
        info = probe(video.path)
        reader = Reader(video.path, info, thumb_size(info.width, info.height), "pyav", threads=1)
        try:
            middle = int((start + end) / 2 * info.fps)
            frame = reader.read([min(middle, info.frames - 1)])[0]
        finally:
            reader.close()
    except DecodeError as exc:
        raise ThumbError(f"{video.path}: {exc}") from None
    return write_thumb(catalog.home, clip_id, encode_jpeg(frame))
