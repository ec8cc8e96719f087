"""HTTP Range for the media routes: parse the header (RFC 9110) and answer an open file with a 200,
206 (one range, or several as multipart/byteranges) or 416. The routes only hand over a file
descriptor that web.files verified."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import Response, StreamingResponse

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


def ranged(fd: int, size: int, mime: str, header: str | None) -> Response:
    """A 200, 206 or 416 answer for an open file; the body closes the descriptor when done."""
    common = {"Accept-Ranges": "bytes"}
    try:
        ranges = parse_range(header, size)
    except Unsatisfiable:
        os.close(fd)
        return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{size}"})
    if ranges is None:
        return StreamingResponse(_body(fd, [(0, size - 1)]), media_type=mime,
                                 headers={**common, "Content-Length": str(size)})
    if len(ranges) == 1:
        a, b = ranges[0]
        return StreamingResponse(_body(fd, ranges), status_code=206, media_type=mime,
                                 headers={**common, "Content-Range": f"bytes {a}-{b}/{size}",
                                          "Content-Length": str(b - a + 1)})
    boundary = os.urandom(12).hex()
    heads = [f"--{boundary}\r\nContent-Type: {mime}\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n".encode()
             for a, b in ranges]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(h) + b - a + 1 for h, (a, b) in zip(heads, ranges)) + 2 * (len(ranges) - 1) + len(tail)
    return StreamingResponse(_multipart(fd, ranges, heads, tail), status_code=206,
                             media_type=f"multipart/byteranges; boundary={boundary}",
                             headers={**common, "Content-Length": str(length)})


def _body(fd: int, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
    try:
        for a, b in ranges:
            yield from read_span(fd, a, b)
    finally:
        os.close(fd)


def _multipart(fd: int, ranges: list[tuple[int, int]], heads: list[bytes], tail: bytes) -> Iterator[bytes]:
    try:
        for i, ((a, b), head) in enumerate(zip(ranges, heads)):
            yield (b"\r\n" if i else b"") + head
            yield from read_span(fd, a, b)
        yield tail
    finally:
        os.close(fd)


def mime_type(path: str) -> str:
    ext = Path(path).suffix.lower()
    return {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
            ".mkv": "video/x-matroska", ".ogv": "video/ogg"}.get(ext, "application/octet-stream")
