"""Thumbnails: one small JPEG per clip window, named by clip id, under the index home.

The indexer writes them from frames its decode workers already hold (no second decode of the
file); an index made before thumbnails existed gets them lazily, one seek per window, on first
view. Both paths go through `encode_jpeg` and `thumb_path`, so a thumbnail looks the same
whichever made it. Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
import tempfile
from pathlib import Path

import numpy as np

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


def delete_thumbs(home: Path, clip_ids: Iterable[int]) -> None:
    """Remove the thumbnails of clips that left the catalog (missing ones are fine)."""
    for clip_id in clip_ids:
        thumb_path(home, clip_id).unlink(missing_ok=True)
