"""Media for the front ends: frame-accurate clip export, and moments a browser can play.

Export re-encodes the whole moment rather than re-encoding up to the next keyframe and
stream-copying the rest: moments are seconds long, so re-encoding costs little, and it is the
only way every cut plays anywhere (H.264 + AAC in MP4, yuv420p, moov atom first) whatever the
source codec, with exact first and last frames and no edit lists that some players ignore.
Stream copy of the tail would keep the source's codec (HEVC, MPEG-4 Part 2...), which is the
very thing that does not play everywhere.

`playable` serves the original file when the browser can play it, else a cached transcode of the
moment under the index home, with a cap on concurrent transcodes (a busy server says so rather
than piling work up). Nothing here imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from vsearch.core.errors import MediaBusy, MediaError
from vsearch.core.home import Home
from vsearch.video.colour import BT709, LIMITED, dolby_vision, frame_sdr, sdr_matrix

if TYPE_CHECKING:
    from av import AudioFrame, AudioStream, VideoFrame, VideoStream
    from av.container import InputContainer

TRANSCODE_LIMIT = 2  # transcodes at once; each keeps a core busy for about the moment's length
TRANSCODE_CACHE_BYTES = 2 << 30  # oldest transcodes go once the cache holds more than this
# What browsers play natively, by file suffix: (MIME type, video codecs, audio codecs).
BROWSER_FORMATS = {
    ".mp4": ("video/mp4", {"h264", "vp9", "av1"}, {"aac", "mp3", "opus", "flac"}),
    ".m4v": ("video/mp4", {"h264", "vp9", "av1"}, {"aac", "mp3", "opus", "flac"}),
    ".webm": ("video/webm", {"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
H264_ENCODERS = ("libx264", "libopenh264", "h264")  # the first one this FFmpeg build has
BROWSER_LARGEST = 1920  # px, the longer side of a transcode for the web page: a 4K phone clip plays as 1080p

_slots = threading.BoundedSemaphore(TRANSCODE_LIMIT)


def export_clip(src: str, start: float, end: float, out: Path, largest: int | None = None) -> Path:
    """Cut [start, end) seconds of `src` into `out` as H.264 + AAC MP4, frame-accurately.

    The first frame is the one on screen at `start`; the clip lasts `end - start` to within a
    frame; audio is kept when the source has it. HDR sources come out SDR, tone-mapped as the
    thumbnails are (an 8-bit H.264 file plays everywhere; HDR shown as SDR looks washed out);
    `largest` caps the longer side in pixels. `out` appears whole or not at all.
    """
    import av

    out = Path(out)
    if not end > start >= 0:
        raise MediaError(f"the clip must end after it starts (got {start:g}s to {end:g}s)")
    if not Path(src).is_file():
        raise MediaError(f"{src}: no such file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".clip-", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(src) as source:
            if not source.streams.video:
                raise MediaError(f"{src}: no video stream")
            dovi = dolby_vision(src, source.streams.video[0].codec_context.codec_tag or "")
            if dovi is not None and not dovi.showable:
                raise MediaError(f"{src}: {dovi.describe()} has no picture a player without Dolby Vision can show")
            _cut(source, start, end, tmp, largest)
        os.replace(tmp, out)
    except av.FFmpegError as exc:
        raise MediaError(f"{src}: cannot cut this file ({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _cut(source: InputContainer, start: float, end: float, tmp: str, largest: int | None) -> None:
    import av

    vin = source.streams.video[0]
    ain = source.streams.audio[0] if source.streams.audio else None
    # Times count from the first frame, as the indexer's windows do (MPEG-TS and cut recordings
    # start late); frame timestamps are absolute.
    origin = float(vin.start_time * vin.time_base) if vin.start_time is not None and vin.time_base else 0.0
    start, end = start + origin, end + origin
    rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(100_000)
    frame_time = 1 / float(rate)
    eps = frame_time / 100  # float slack: a frame that starts exactly at `start` is the first one
    with av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as sink:
        vout = cast("VideoStream", sink.add_stream(_h264(), rate=rate))
        vout.pix_fmt = "yuv420p"
        vout.time_base = 1 / rate
        context = vout.codec_context  # what frame_sdr makes: SDR, limited range (the matrix: below)
        context.color_primaries, context.color_trc, context.color_range = BT709, BT709, LIMITED
        if vout.codec_context.name == "libx264":
            vout.options = {"crf": "20", "preset": "veryfast"}
        aout: AudioStream | None = None
        if ain is not None:
            aout = cast("AudioStream", sink.add_stream("aac", rate=ain.codec_context.sample_rate or 48000))
            aout.bit_rate = 160_000
        _seek_before(source, vin, start)
        streams = [vin] + ([ain] if ain is not None else [])
        count = 0
        video_done, audio_done = False, ain is None
        for packet in source.demux(*streams):
            if video_done and audio_done:
                break
            for frame in packet.decode():
                t = getattr(frame, "time", None)
                if t is None:
                    continue
                if isinstance(frame, av.VideoFrame):
                    if video_done or t + frame_time <= start + eps:
                        continue
                    if t >= end - eps:
                        video_done = True
                        continue
                    if count == 0:
                        vout.width, vout.height = _output_size(frame, largest)
                        context.colorspace = sdr_matrix(frame, _rotation(frame))
                    image = frame_sdr(frame, (vout.width, vout.height), _rotation(frame))
                    # frame numbers in the stream's own time base: the source's would squash them to 0
                    image.pts, image.time_base, count = count, 1 / rate, count + 1
                    sink.mux(vout.encode(image))
                elif isinstance(frame, av.AudioFrame) and aout is not None and not audio_done:
                    trimmed = _trim_audio(frame, t, start, end)
                    if trimmed is None:
                        audio_done = t >= end
                        continue
                    sink.mux(aout.encode(trimmed))
        if count == 0:
            raise MediaError(f"no video frames between {start:g}s and {end:g}s")
        sink.mux(vout.encode(None))
        if aout is not None:
            sink.mux(aout.encode(None))


def _seek_before(source: InputContainer, stream: VideoStream, t: float) -> None:
    """Seek to a keyframe at or before `t`. Some containers (MPEG-TS) land after the target:
    the first frame decoded tells, and the seek goes further back until it is early enough."""
    for margin in (0.5, 5.0, 60.0, None):
        target = 0 if margin is None else int(max(t - margin, 0) / float(stream.time_base or 1))
        source.seek(target, stream=stream, backward=True, any_frame=False)
        first = next(source.decode(stream), None)
        if margin is None or first is None or first.time is None or first.time <= t:
            source.seek(target, stream=stream, backward=True, any_frame=False)
            return


def _h264() -> str:
    import av

    for name in H264_ENCODERS:
        if name in av.codecs_available:
            try:
                av.Codec(name, "w")
                return name
            except Exception:  # listed as a decoder only
                continue
    raise MediaError("this FFmpeg build has no H.264 encoder")


def _rotation(frame: VideoFrame) -> int:
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360 // 90 * 90


def _output_size(frame: VideoFrame, largest: int | None) -> tuple[int, int]:
    """(width, height) of the cut: the frame as displayed (a file stored sideways, as phones store
    it, turned upright), at most `largest` pixels on its longer side, even sides for yuv420p."""
    w, h = (frame.height, frame.width) if _rotation(frame) in (90, 270) else (frame.width, frame.height)
    if largest is not None and max(w, h) > largest:
        w, h = (largest, round(h * largest / w)) if w >= h else (round(w * largest / h), largest)
    return max(2, w // 2 * 2), max(2, h // 2 * 2)


def _trim_audio(frame: AudioFrame, t: float, start: float, end: float) -> AudioFrame | None:
    """The part of an audio frame (starting at `t`) inside [start, end); None if no part is."""
    import av

    rate = frame.sample_rate
    first = int(round((start - t) * rate))
    last = int(round((end - t) * rate))
    if last <= 0 or first >= frame.samples:
        return None
    first, last = max(first, 0), min(last, frame.samples)
    if (first, last) != (0, frame.samples):
        data = frame.to_ndarray()
        data = data[:, first:last] if frame.format.is_planar else data[:, first * len(frame.layout.channels):
                                                                          last * len(frame.layout.channels)]
        cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame.format.name,  # type: ignore[arg-type]  # PyAV's stub wants a literal
                                         layout=frame.layout.name)
        cut.sample_rate = rate
        frame = cut
    frame.pts = None  # the encoder times samples from the clip's start, in step with the video
    return frame


def clip_name(src: str, start: float, end: float) -> str:
    """A safe file name for a moment: the source's name and the time range, e.g. beach_62.0-70.0s.mp4"""
    stem = re.sub(r"[^\w.-]+", "_", Path(src).stem).strip("._") or "clip"
    return f"{stem[:80]}_{start:.1f}-{end:.1f}s.mp4"


def export_moments(moments: Iterable[tuple[str, float, float]], folder: Path) -> Iterator[tuple[str, Path | MediaError]]:
    """Export each (path, start, end) into `folder`, named by clip_name; an existing file is
    never overwritten (a number is added). Yields (source, written file or the error) as it goes."""
    folder = Path(folder)
    for src, start, end in moments:
        name = clip_name(src, start, end)
        out, n = folder / name, 2
        while out.exists():
            out, n = folder / f"{Path(name).stem}-{n}.mp4", n + 1
        try:
            yield src, export_clip(src, start, end, out)
        except MediaError as exc:
            yield src, exc


def browser_type(path: str) -> str | None:
    """The MIME type to serve `path` with if a browser plays it as it is, else None."""
    known = BROWSER_FORMATS.get(Path(path).suffix.lower())
    if known is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _browser_type(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)  # a player asks for many byte ranges of one file
def _browser_type(path: str, size: int, mtime_ns: int) -> str | None:
    import av

    known = BROWSER_FORMATS[Path(path).suffix.lower()]
    mime, video_codecs, audio_codecs = known
    try:
        with av.open(path) as container:
            video = [s.codec_context.name for s in container.streams.video]
            audio = [s.codec_context.name for s in container.streams.audio]
    except (av.FFmpegError, OSError):
        return None
    if not video or video[0] not in video_codecs or any(a not in audio_codecs for a in audio[:1]):
        return None
    return mime


def playable(home: Path | Home, path: str, start: float, end: float) -> tuple[Path, str, float]:
    """A file the browser can play for the moment [start, end) of `path`.

    Returns (file, MIME type, source time at which the file starts): the original when the
    browser plays it, else a cached H.264 transcode of the moment under `home`. Raises
    MediaBusy when TRANSCODE_LIMIT transcodes already run, MediaError when the file cannot be cut.
    """
    mime = browser_type(path)
    if mime is not None:
        return Path(path), mime, 0.0
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise MediaError(f"{path}: {exc.strerror or exc}") from None
    # Keyed by the file's identity too, so an edited file never gets an old transcode.
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{start:.3f}|{end:.3f}".encode()).hexdigest()
    out = Home.at(home).transcodes / f"{key[:32]}.mp4"
    return _cached_cut(out, path, start, end, BROWSER_LARGEST), "video/mp4", start


def cached_clip(home: Path | Home, path: str, content_hash: str, start: float, end: float) -> Path:
    """The moment [start, end) of an indexed file as an MP4 of its own (export_clip), kept in the
    home's clip cache for the next download; the cache is capped like the transcodes."""
    return _cached_cut(Home.at(home).clips / f"{content_hash}_{start:.3f}_{end:.3f}.mp4", path, start, end)


def _cached_cut(out: Path, path: str, start: float, end: float, largest: int | None = None) -> Path:
    """export_clip into a cache file, at most TRANSCODE_LIMIT at once; the oldest files of the
    cache folder go once it holds more than TRANSCODE_CACHE_BYTES."""
    if out.exists():
        os.utime(out)  # recently used: the cache trim removes the oldest first
        return out
    if not _slots.acquire(blocking=False):
        raise MediaBusy(f"busy: {TRANSCODE_LIMIT} transcodes are running; try again in a moment")
    try:
        export_clip(path, start, end, out, largest)
    finally:
        _slots.release()
    _trim_cache(out.parent, keep=out)
    return out


def _trim_cache(folder: Path, keep: Path, limit: int = TRANSCODE_CACHE_BYTES) -> None:
    files = []
    for p in folder.glob("*.mp4"):
        try:
            st = p.stat()
        except FileNotFoundError:  # another request trimmed it first
            continue
        files.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in files)
    for _, size, p in sorted(files):
        if total <= limit:
            break
        if p != keep:
            p.unlink(missing_ok=True)
            total -= size
