"""Subtitles: the timed lines of text a video carries, read from its streams and from files beside it;
and subtitle files written from timed lines.

Read. Text subtitle streams inside the file (SubRip, ASS/SSA, mov_text, WebVTT) are decoded by
FFmpeg, which gives every text format as one ASS dialogue line; sidecar files next to the video
(`clip.srt`, `clip.en.srt`, `clip.vtt`, `clip.ass`, ...) are decoded to text first (their
encoding detected, see `decode_text`) and then parsed by FFmpeg's own demuxers, so both paths give
the same lines. Markup is stripped to plain text: HTML-like tags, ASS override blocks (`{\\i1}`,
`{\\pos(..)}`), drawing commands, `\\N` line breaks. Bitmap subtitles (PGS, VobSub, DVB) are
pictures of text: they are listed as `Skipped`, with the reason, and not read.

A sidecar belongs to the video whose file name it starts with: `clip.mp4` owns `clip.srt` and
`clip.en.forced.srt`, the words between the name and the extension saying its language and flags
(Jellyfin's, Plex's and mpv's convention); `clip.part2.srt` belongs to `clip.part2.mp4` when that
video exists beside it.

Write. `write_subtitles` writes SRT or WebVTT atomically (a temporary file in the same folder,
fsync, rename) and never replaces a file vsearch did not write: it returns the SHA-256 of what it
wrote, which the caller records, and it replaces an existing file only when given that record and
the file still hashes to it. A file that vsearch never wrote, or that someone edited since, is left
alone (SidecarError). SRT has no comment syntax that every player skips, so the record, not a mark
inside the file, is what makes a file vsearch's.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsearch.core.errors import SidecarError
from vsearch.video.audio import stream_language, timeline_origin
from vsearch.video.decode import error_reason
from vsearch.video.files import VIDEO_EXTENSIONS

# FFmpeg decoder names of the text formats read, and of the bitmap ones reported and skipped
TEXT_CODECS = frozenset({"subrip", "ass", "ssa", "mov_text", "webvtt", "text"})
BITMAP_CODECS = {"hdmv_pgs_subtitle": "PGS", "dvd_subtitle": "VobSub", "dvb_subtitle": "DVB", "xsub": "XSUB"}
# Sidecar extensions: text ones with the FFmpeg demuxer that parses them, bitmap ones with their name
SIDECAR_FORMATS = {".srt": "srt", ".vtt": "webvtt", ".ass": "ass", ".ssa": "ass"}
BITMAP_SIDECARS = {".sup": "PGS", ".idx": "VobSub"}
# Words in a sidecar's name that are flags, not a language (clip.en.forced.srt, clip.en.sdh.srt)
NAME_FLAGS = frozenset({"forced", "sdh", "cc", "hi", "default", "foreign"})
DEFAULT_CUE_SECONDS = 4.0  # how long a cue without a duration shows (a few text-in-TS muxers leave it out)


@dataclass(frozen=True)
class Cue:
    """A line of text shown (or said) from `start` to `end` seconds on the video's timeline."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Track:
    """The lines of one subtitle track: a stream inside the video, or a sidecar file."""

    path: str  # the video (a stream) or the sidecar file
    codec: str  # FFmpeg's name of the format: "subrip", "ass", "mov_text", "webvtt"
    cues: tuple[Cue, ...]
    language: str | None = None  # the stream's tag or the sidecar name's ("en", "eng", "pt-br")
    stream: int | None = None  # the stream's index in the video; None for a sidecar
    title: str | None = None
    forced: bool = False  # shown only where the dialogue is in another language
    encoding: str | None = None  # a sidecar's text encoding, as detected


@dataclass(frozen=True)
class Skipped:
    """A subtitle track that was not read, and why."""

    path: str
    codec: str
    reason: str
    stream: int | None = None
    language: str | None = None


def read_streams(video_path: str | Path) -> tuple[list[Track], list[Skipped]]:
    """The text subtitle streams inside a video, and the subtitle streams skipped (bitmap ones, or
    ones that cannot be decoded). A file with no subtitle streams gives ([], []) without reading more
    than its header; one with text streams is read through once (the subtitle packets are spread over
    the whole file)."""
    import av

    path = str(video_path)
    container: Any  # PyAV's types do not know a subtitle stream's decode
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        return [], [Skipped(path, "unknown", f"not a readable media file ({error_reason(exc)})")]
    with container:
        wanted, skipped = [], []
        for stream in container.streams.subtitles:
            codec = _codec_name(stream)
            language = stream_language(stream)
            if codec in BITMAP_CODECS:
                skipped.append(Skipped(path, codec, f"bitmap subtitles ({BITMAP_CODECS[codec]}): pictures of text, "
                                                    "not text", stream.index, language))
            elif codec not in TEXT_CODECS:
                skipped.append(Skipped(path, codec, "not a text subtitle format vsearch reads", stream.index, language))
            else:
                wanted.append(stream)
        if not wanted:
            return [], skipped
        origin = timeline_origin(container)
        raw: dict[int, list[tuple[float, float, bytes]]] = {s.index: [] for s in wanted}
        failed: dict[int, str] = {}
        for packet in container.demux(wanted):
            index = packet.stream.index
            if packet.size == 0 or packet.pts is None or index in failed:
                continue
            try:
                subtitles = packet.stream.codec_context.decode(packet)
            except (av.FFmpegError, ValueError) as exc:
                failed[index] = f"cannot decode its lines ({error_reason(exc)})"
                continue
            start = float(packet.pts * packet.stream.time_base) - origin
            seconds = float(packet.duration * packet.stream.time_base) if packet.duration else DEFAULT_CUE_SECONDS
            raw[index].extend((start, start + seconds, bytes(s.dialogue)) for s in subtitles if hasattr(s, "dialogue"))
        tracks = []
        for stream in wanted:
            if stream.index in failed:
                skipped.append(Skipped(path, _codec_name(stream), failed[stream.index], stream.index, stream_language(stream)))
                continue
            lines = _stream_text([text for _, _, text in raw[stream.index]], stream_language(stream))
            cues = _cues((start, end, line) for (start, end, _), line in zip(raw[stream.index], lines))
            metadata = stream.metadata or {}
            tracks.append(Track(path, _codec_name(stream), cues, stream_language(stream), stream.index, metadata.get("title"),
                                bool(stream.disposition & av.stream.Disposition.forced)))
        return tracks, skipped


def sidecar_paths(video_path: str | Path) -> list[Path]:
    """The subtitle files beside a video that belong to it (text and bitmap), sorted by name: what
    `read_sidecars` reads, and what an index run checks for changes."""
    video = Path(video_path)
    stem = video.stem
    try:
        names = os.listdir(video.parent)
    except OSError:
        return []
    other_videos = {Path(n).stem for n in names if Path(n).suffix.lower() in VIDEO_EXTENSIONS and n != video.name}
    found = []
    for name in names:
        suffix = Path(name).suffix.lower()
        if suffix not in SIDECAR_FORMATS and suffix not in BITMAP_SIDECARS:
            continue
        if name[: len(stem)] != stem or name[len(stem): len(stem) + 1] != ".":
            continue
        words = name[len(stem) + 1: len(name) - len(suffix)].split(".") if len(name) > len(stem) + len(suffix) + 1 else []
        # clip.part2.srt is clip.part2.mp4's when that video is here, not clip.mp4's
        if any(".".join([stem, *words[:k]]) in other_videos for k in range(1, len(words) + 1)):
            continue
        found.append(video.parent / name)
    return sorted(found)


def read_sidecars(video_path: str | Path) -> tuple[list[Track], list[Skipped]]:
    """The subtitle files beside a video (see `sidecar_paths`), read as tracks; bitmap and unreadable
    ones are listed as skipped with the reason."""
    stem = Path(video_path).stem
    tracks, skipped = [], []
    for file in sidecar_paths(video_path):
        suffix = file.suffix.lower()
        language, forced = _name_tags(file.name[len(stem) + 1: len(file.name) - len(suffix)])
        if suffix in BITMAP_SIDECARS:
            skipped.append(Skipped(str(file), suffix[1:], f"bitmap subtitles ({BITMAP_SIDECARS[suffix]}): pictures of "
                                                          "text, not text", language=language))
            continue
        try:
            data = file.read_bytes()
        except OSError as exc:
            skipped.append(Skipped(str(file), suffix[1:], f"cannot read it ({exc.strerror or exc})", language=language))
            continue
        text, encoding = decode_text(data, language)
        try:
            codec, cues = _parse(text, SIDECAR_FORMATS[suffix])
            if not cues:
                raise SidecarError(f"no subtitle lines in it (not a {suffix[1:]} file?)")
        except SidecarError as exc:
            skipped.append(Skipped(str(file), suffix[1:], str(exc), language=language))
            continue
        tracks.append(Track(str(file), codec, cues, language, None, None, forced, encoding))
    return tracks, skipped


def plain_text(dialogue: str) -> str:
    """A subtitle line without its markup: ASS override blocks and drawings, HTML-like tags, entities;
    line breaks (`\\N`, `\\n`, newlines) kept as newlines, spaces collapsed."""
    out = []
    drawing = False
    for part in re.split(r"(\{[^}]*\})", dialogue):
        if part.startswith("{") and part.endswith("}"):
            # {\p1} starts a vector drawing, {\p0} ends it: its "text" is path commands
            for level in re.findall(r"\\p(\d+)", part):
                drawing = int(level) > 0
            continue
        if not drawing:
            out.append(part)
    text = "".join(out).replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    text = html.unescape(re.sub(r"</?[A-Za-z][^<>]*>", "", text))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def decode_text(data: bytes, language: str | None = None) -> tuple[str, str]:
    """Bytes of a subtitle file as text, and the encoding they were read in.

    In order: a byte-order mark (UTF-8, UTF-16 and UTF-32, either byte order); UTF-16 without a mark
    (every other byte zero); UTF-8; the legacy code page of the language the file's name gives
    (cp1251 for Russian, cp1250 for Polish, ...); else charset-normalizer's guess, except that cp1252
    (Western Europe, the most common legacy subtitle encoding) is preferred when it reads nearly as
    well: on a few lines of French its statistics put cp1257 ahead of it, turning "très" into "trčs".
    """
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                          (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace"), encoding + "-bom"
    if len(data) >= 4 and data.count(0) >= len(data) // 3:
        encoding = "utf-16-le" if data[1::2].count(0) > data[0::2].count(0) else "utf-16-be"
        return data.decode(encoding, errors="replace"), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    page = _code_page(language)
    if page:
        try:
            return data.decode(page), page
        except UnicodeDecodeError:
            pass
    return _guess(data)


def render_subtitles(cues: Sequence[Cue], fmt: str) -> str:
    """Cues as the text of an SRT ("srt") or WebVTT ("vtt") file, in time order."""
    if fmt not in ("srt", "vtt"):
        raise SidecarError(f"subtitles are written as srt or vtt, not {fmt!r}")
    blocks = ["WEBVTT\n"] if fmt == "vtt" else []
    n = 0
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        # "-->" in a line would read as a timing line to some players
        lines = [line.replace("-->", "->") for line in cue.text.splitlines() if line.strip()]
        if not lines:
            continue
        n += 1
        start, end = max(0.0, cue.start), max(cue.end, cue.start + 0.001)
        if fmt == "vtt":
            lines = [html.escape(line, quote=False) for line in lines]  # WebVTT cue text is markup
            blocks.append(f"{_stamp(start, '.')} --> {_stamp(end, '.')}\n" + "\n".join(lines) + "\n")
        else:
            blocks.append(f"{n}\n{_stamp(start, ',')} --> {_stamp(end, ',')}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes (what `write_subtitles` returns and checks), or None if there is none."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def write_subtitles(path: str | Path, cues: Sequence[Cue], fmt: str | None = None, replaces: str | None = None) -> str:
    """Write cues to `path` as SRT or WebVTT (`fmt`, else from the extension), atomically; returns the
    SHA-256 of the bytes written, for the caller to record.

    A file already at `path` is replaced only when `replaces` is the digest vsearch recorded when
    it wrote it and the file still has it; otherwise SidecarError, and nothing is written (see the
    module docstring)."""
    target = Path(path)
    fmt = fmt or target.suffix.lower().lstrip(".")
    data = render_subtitles(cues, fmt).encode("utf-8")
    _check_ours(target, replaces)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.vsearch-tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replaces is None:
            _publish_new(tmp, target)
        else:
            _check_ours(target, replaces)
            os.replace(tmp, target)
        _sync_folder(target.parent)
    except OSError as exc:
        raise SidecarError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def _check_ours(target: Path, replaces: str | None) -> None:
    current = file_digest(target)
    if current is None:
        return
    if replaces is None:
        raise SidecarError(f"{target} exists and vsearch did not write it; left alone")
    if current != replaces:
        raise SidecarError(f"{target} is not the file vsearch wrote there (changed since, or never vsearch's); left alone")


def _publish_new(tmp: Path, target: Path) -> None:
    """Put `tmp` at `target` only if nothing is there: a hard link fails if the name is taken, so a
    file someone creates meanwhile is never replaced. Where the file system has no hard links (FAT,
    some network shares), the check is repeated just before the rename."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise SidecarError(f"{target} exists and vsearch did not write it; left alone") from None
    except OSError:
        _check_ours(target, None)
        os.replace(tmp, target)


def _sync_folder(folder: Path) -> None:
    """The rename itself survives a power cut once the folder is synced (POSIX; not possible on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stamp(seconds: float, comma: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{comma}{ms % 1000:03d}"


def _parse(text: str, fmt: str) -> tuple[str, tuple[Cue, ...]]:
    """A subtitle file's text through FFmpeg's demuxer and decoder for `fmt`: (codec, cues)."""
    import av

    try:
        source: Any = av.open(io.BytesIO(text.encode("utf-8")), format=fmt)
        with source as container:
            if not container.streams.subtitles:
                raise SidecarError("no subtitle lines in it")
            stream = container.streams.subtitles[0]
            found = []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                start = float(packet.pts * stream.time_base)
                seconds = float(packet.duration * stream.time_base) if packet.duration else DEFAULT_CUE_SECONDS
                for sub in stream.codec_context.decode(packet):
                    if hasattr(sub, "dialogue"):
                        found.append((start, start + seconds, bytes(sub.dialogue).decode("utf-8", errors="replace")))
            return _codec_name(stream), _cues(found)
    except (av.FFmpegError, ValueError) as exc:
        raise SidecarError(f"not a readable {fmt} file ({error_reason(exc)})") from None


def _cues(lines: Iterable[tuple[float, float, str]]) -> tuple[Cue, ...]:
    """Plain-text cues in time order, empty ones dropped, repeats (ASS draws one line in several
    layers for outlines and shadows) kept once."""
    seen, cues = set(), []
    for start, end, line in lines:
        cue = Cue(round(start, 3), round(max(end, start), 3), plain_text(line))
        if cue.text and cue not in seen:
            seen.add(cue)
            cues.append(cue)
    return tuple(sorted(cues, key=lambda c: (c.start, c.end)))


def _stream_text(lines: list[bytes], language: str | None) -> list[str]:
    """A stream's lines as text: UTF-8, as Matroska and MP4 require; else (files muxed by old tools)
    the encoding `decode_text` finds for all of its lines together."""
    try:
        return [line.decode("utf-8") for line in lines]
    except UnicodeDecodeError:
        _, encoding = decode_text(b"\n".join(lines), language)
        return [line.decode(encoding.removesuffix("-bom"), errors="replace") for line in lines]


def _codec_name(stream: Any) -> str:
    """FFmpeg's name of the format ("subrip", "ass", "hdmv_pgs_subtitle"), not of its decoder ("srt", "pgssub")."""
    ctx = stream.codec_context
    return ctx.codec.canonical_name if ctx is not None else "unknown"


def _name_tags(words: str) -> tuple[str | None, bool]:
    """(language, forced) from the words between a video's name and a sidecar's extension."""
    language, forced = None, False
    for word in filter(None, words.lower().split(".")):
        if word == "forced":
            forced = True
        elif word not in NAME_FLAGS and language is None and re.fullmatch(r"[a-z]{2,3}([-_][a-z0-9]{2,8})?", word):
            language = word.replace("_", "-")
    return language, forced


# Legacy Windows code pages of subtitle files, by the languages whose files use them (ISO 639-1
# and -2 codes, as sidecar names and stream tags give them).
_CODE_PAGES = {
    "cp1250": "cs cze ces hu hun pl pol ro rum ron sk slo slk sl slv hr hrv bs bos sq alb sqi",
    "cp1251": "ru rus uk ukr bg bul be bel mk mac mkd sr srp",
    "cp1253": "el gre ell",
    "cp1254": "tr tur az aze",
    "cp1255": "he heb",
    "cp1256": "ar ara fa per fas ur urd",
    "cp1257": "et est lt lit lv lav",
    "cp1258": "vi vie",
    "cp874": "th tha",
}


def _code_page(language: str | None) -> str | None:
    if not language:
        return None
    base = language.lower().split("-")[0]
    return next((page for page, names in _CODE_PAGES.items() if base in names.split()), None)


def _guess(data: bytes) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return data.decode("cp1252", errors="replace"), "cp1252"
    best = min(matches, key=lambda m: m.chaos)
    western = next((m for m in matches if "cp1252" in m.could_be_from_charset), None)
    # "Nearly as well": within 0.1 of chaos (the share of odd characters); French above: 0.056 vs 0.111
    if western is not None and western.chaos <= best.chaos + 0.1:
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    return str(best), best.encoding
