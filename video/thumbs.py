"""Thumbnails: one small JPEG per window, named by window id, under the index home.

The indexer writes them from frames its decode workers already hold (no second decode of the
file); an index made before thumbnails existed gets them lazily, one seek per window, on first
view. Both paths go through `encode_jpeg` and `thumb_path`, so a thumbnail looks the same
whichever made it. Nothing here imports torch.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vsearch.core.errors import DecodeError, ThumbError
from vsearch.core.home import Home
from vsearch.video.decode import Reader, probe
from vsearch.video.images import encode_jpeg, thumb_size

if TYPE_CHECKING:
    from vsearch.search.catalog import Catalog
    from vsearch.search.doctor import Finding

_PER_FOLDER = 1000  # windows per sub-folder, so no folder grows to millions of entries


def thumb_path(home: Path | Home, window_id: int) -> Path:
    """Where the thumbnail of window `window_id` lives (it may not exist yet)."""
    return Home.at(home).thumbs / str(window_id // _PER_FOLDER) / f"{window_id}.jpg"


def write_thumb(home: Path, window_id: int, jpeg: bytes) -> Path:
    """Store a thumbnail atomically: a reader never sees half a file."""
    path = thumb_path(home, window_id)
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


def delete_thumbs(home: Path, window_ids: Iterable[int]) -> None:
    """Remove the thumbnails of windows that left the catalog (missing ones are fine)."""
    for window_id in window_ids:
        thumb_path(home, window_id).unlink(missing_ok=True)


def copy_thumbs(home: Path, sources: Sequence[int], targets: Sequence[int]) -> None:
    """A copied video's windows get the thumbnails of the windows they were copied from."""
    for src, dst in zip(sources, targets):
        old, new = thumb_path(home, src), thumb_path(home, dst)
        if old.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(old, new)  # same bytes, no extra disk; each name can go on its own
            except OSError:
                write_thumb(home, dst, old.read_bytes())


def _middle_frames(path: str, size: int, mtime: float, spans: list[tuple[int, float, float]]) -> np.ndarray:
    """The middle frame of each (window id, start, end) window at thumbnail size: one open, one seek
    per window, no model. Raises ThumbError when the file is gone, changed since it was indexed
    (size or mtime: a replaced file or a swapped link), or cannot be decoded."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ThumbError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mtime != mtime:
        raise ThumbError(f"{path} changed since it was indexed")
    try:
        info = probe(path)
        reader = Reader(path, info, thumb_size(info.width, info.height), "pyav", threads=1)
        middles = [min(int((s + e) / 2 * info.fps), info.frames - 1) for _, s, e in spans]
        reader.plan(middles)  # on the way to each, frames nothing is decoded from are not decoded
        try:
            return reader.read(middles)
        finally:
            reader.close()
    except DecodeError as exc:
        raise ThumbError(f"{path}: {exc}") from None


def make_thumbs(home: Path, path: str, size: int, mtime: float, spans: list[tuple[int, float, float]]) -> int:
    """Thumbnails for (window id, start, end) windows of one video, from the middle of each window.
    The file must still be the one indexed, else nothing is made. Returns how many were written."""
    try:
        frames = _middle_frames(path, size, mtime, spans)
    except Exception:  # ThumbError or any FFmpeg failure: this video keeps no thumbnails
        return 0
    for (window_id, _, _), frame in zip(spans, frames):
        write_thumb(home, window_id, encode_jpeg(frame))
    return len(spans)


def check_thumbs(catalog: Catalog, repair: bool = True) -> Finding:
    """Doctor's check: thumbnails missing for windows of finished videos, and files left by windows
    that are gone. Repair deletes the orphans and makes the missing ones from the videos."""
    from vsearch.search.doctor import Finding

    windows = catalog.ok_windows()
    known = {c[0] for c in windows}
    files = list(_thumb_files(catalog.home))
    on_disk = {window_id for window_id, _ in files}
    orphans = [p for window_id, p in files if window_id not in known]
    missing = [c for c in windows if c[0] not in on_disk]
    if not orphans and not missing:
        return Finding("thumbnails", True, f"{len(known)} present")
    detail = f"{len(missing)} missing, {len(orphans)} left by removed windows"
    if not repair:
        return Finding("thumbnails", False, detail)
    for p in orphans:
        p.unlink(missing_ok=True)
    made = 0
    for (path, size, mtime), group in groupby(missing, key=lambda c: (c[1], c[2], c[3])):
        made += make_thumbs(catalog.home, path, size, mtime, [(c[0], c[4], c[5]) for c in group])
    if made < len(missing):
        detail += f"; {len(missing) - made} could not be made (file changed or unreadable: run vsearch index)"
    return Finding("thumbnails", False, detail, repaired=made == len(missing))


def _thumb_files(home: Path) -> Iterator[tuple[int, Path]]:
    """(window id, file) of every thumbnail on disk; half-written temporary files count as id -1."""
    for p in Home.at(home).thumbs.glob("*/*"):
        yield (int(p.stem) if p.suffix == ".jpg" and p.stem.isdigit() else -1), p


def ensure_thumb(catalog: Catalog, window_id: int) -> Path:
    """The window's thumbnail, made on first request for an index older than thumbnails.

    One seek to the middle frame of the window, with the same PyAV reader the indexer uses;
    the model never runs. The file must still be the one that was indexed (same size and
    mtime): a file replaced since, or a link swapped to another file, gets no thumbnail.
    """
    path = thumb_path(catalog.home, window_id)
    if path.is_file():
        return path
    found = catalog.window_span(window_id)
    if found is None:
        raise ThumbError(f"no window {window_id} in the index")
    video, start, end = found
    frame = _middle_frames(video.path, video.size, video.mtime, [(window_id, start, end)])[0]
    return write_thumb(catalog.home, window_id, encode_jpeg(frame))
