"""Small images: the JPEG encoder and the thumbnail size, shared by the decoder (which makes
thumbnails from the frames it decodes anyway) and the thumbnail store. Nothing here imports torch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

THUMB_WIDTH = 320  # px; about what a result card shows, ~10-20 KB as JPEG


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
    codec.thread_count = 1  # one small picture: threads would cost more to start than they save
    codec.options = {"qmin": str(quality), "qmax": str(quality)}
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)
