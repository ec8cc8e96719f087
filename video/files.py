"""Finding videos on disk and telling whether they changed."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .wmv .flv .mpg .mpeg .ts .mts .m2ts .3gp .ogv .vob".split()
)
# Folders nobody wants indexed: NAS preview caches (Synology's @eaDir holds transcoded copies of
# every video, which would be indexed as copies), recycle bins, repositories and desktop
# thumbnail caches. Hidden folders are skipped anyway; the hidden ones are named for the docs.
DEFAULT_EXCLUDES = ("@eaDir", "#recycle", "node_modules", ".git", ".Trash-*", ".thumbnails")

_SAMPLE = 256 * 1024


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_excluded(path: str, patterns: Sequence[str]) -> bool:
    """Whether a folder or file matches one of the fnmatch patterns, by its name or its whole path."""
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, as stored in the catalog
    size: int
    mtime: float


def _sniff_video(path: str) -> bool:
    """Container magic bytes, for video files with an unknown or missing extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")  # MP4 / QuickTime
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska / WebM
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:3] == b"FLV"
        or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")  # MPEG program / video stream
    )


def find_videos(
    roots: list[Path],
    skipped: list[tuple[str, str]] | None = None,
    exclude: Sequence[str] = DEFAULT_EXCLUDES,
) -> Iterator[FoundFile]:
    """Walk folders recursively (following links, never twice into one folder); yield videos.

    Files with a video extension are taken as they are; a decode failure later says why they
    are not videos. Files with no extension are taken if their first bytes are a video
    container's. Hidden folders and files are skipped, and so are folders and files below a root
    that match an `exclude` pattern (the roots themselves are taken as asked). Problems are
    appended to `skipped` as (path, reason).
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def consider(path: str) -> FoundFile | None:
        if path in seen_files:
            return None
        try:
            st = os.stat(path)
        except OSError as exc:
            if skipped is not None:
                skipped.append((path, f"cannot read ({exc.strerror or exc})"))
            return None
        p = Path(path)
        if not stat.S_ISREG(st.st_mode):
            # a FIFO or device named like a video would block or never end when read
            if skipped is not None and is_video_name(p):
                skipped.append((path, "not a regular file"))
            return None
        if not (is_video_name(p) or (p.suffix == "" and _sniff_video(path))):
            return None
        seen_files.add(path)
        return FoundFile(path, st.st_size, st.st_mtime)

    for root in roots:
        root = Path(os.path.abspath(os.path.expanduser(root)))
        if root.is_file():
            found = consider(str(root))
            if found:
                yield found
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
            try:
                st = os.stat(dirpath)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:  # a symlink loop or a second link to a folder seen already
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not is_excluded(os.path.join(dirpath, d), exclude)
            )
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if name.startswith(".") or is_excluded(path, exclude):
                    continue
                found = consider(path)
                if found:
                    yield found


def content_hash(path: str, size: int) -> str:
    """A hash of the file's content that survives renames: size plus hashes of the head, middle and tail.

    Reading 768 KiB rather than the whole file keeps re-runs over large libraries fast; a
    file edited in place also changes its mtime, which is checked first.
    """
    with open(path, "rb") as f:
        return content_hash_fd(f.fileno(), size)


def content_hash_fd(fd: int, size: int) -> str:
    """`content_hash` of an open file: the web server checks the very descriptor it then serves."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    for offset in (0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)):
        os.lseek(fd, offset, os.SEEK_SET)
        data = b""
        while len(data) < _SAMPLE:  # os.read may return less than asked (as a buffered read would not)
            more = os.read(fd, _SAMPLE - len(data))
            if not more:
                break
            data += more
        h.update(data)
    return h.hexdigest()
