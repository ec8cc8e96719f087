"""Decoding: probe a file, plan its windows, read frames at the size the model needs.

Two backends sit behind one function, `read_windows`: PyAV and decord (the `decord2` fork, which
keeps decord's API with a current FFmpeg). Measured on real files and on seeking through a long
one, they are within 10% of each other (docs/speed.md, "Decoding"); PyAV is tried first because it is
the more robust: it honours rotation metadata, which decord ignores or mangles, and has no
open reports of hangs. decord is the fallback for files PyAV rejects.
Nothing here imports torch: this module runs inside the decode worker processes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from vsearch.core.errors import DecodeError
from vsearch.video.colour import dolby_vision, frame_rgb
from vsearch.video.images import encode_jpeg, thumb_size

if TYPE_CHECKING:
    import av


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int  # as displayed, after rotation
    height: int
    rotation: int = 0  # degrees counter-clockwise from the display matrix: 0, 90, 180 or 270
    start: float = 0.0  # seconds of the first frame's timestamp (MPEG-TS and cut recordings start late)

    @property
    def duration(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class Window:
    """One window of a video: `num_frames` frame indices spread evenly over [start, end) seconds,
    the first and last frames of the span included."""

    index: int
    start: float
    end: float
    frames: tuple[int, ...]


@dataclass(frozen=True)
class FrameSpec:
    """What the model wants: frames per window, and the resize + centre crop of its processor.

    `resize` is either ("shortest_edge", n) or ("exact", (height, width)), as in a Hugging Face
    preprocessor_config.json; `crop` is (height, width) or None.
    """

    num_frames: int
    resize: tuple[str, int | tuple[int, int]] | None
    crop: tuple[int, int] | None

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) to decode at, following the Hugging Face resize rules."""
        if self.resize is None:
            return width, height
        kind, value = self.resize
        if kind == "exact":
            h, w = value  # type: ignore[misc]  # the 'exact' kind always holds a (h, w) pair
            return int(w), int(h)
        short = int(value)  # type: ignore[arg-type]  # and 'shortest_edge' an int
        if width <= height:
            return short, int(short * height / width)
        return int(short * width / height), short


@dataclass(frozen=True)
class Sampling:
    """How a video is cut into windows."""

    window_seconds: float = 4.0
    max_windows: int = 150


def plan_windows(info: VideoInfo, num_frames: int, sampling: Sampling) -> list[Window]:
    """Windows of `window_seconds` covering the video; past `max_windows` they spread out.

    A video shorter than one window gives a single window over all of it. Within a window,
    frames are taken at `linspace(first, last, num_frames)` with both ends included, truncated
    to whole frames: the convention of the Hugging Face VideoMAE recipe and of pytorchvideo's
    UniformTemporalSubsample that the published models were fine-tuned with. A model trained
    that way reads fast periodic motion (spinning) differently at other phases.
    """
    duration = info.duration
    length = min(sampling.window_seconds, duration)
    count = max(1, round(duration / sampling.window_seconds))
    if count > sampling.max_windows:
        # Long file: keep each window at its natural length (the model's time scale) and
        # leave gaps between them rather than stretching windows.
        starts: np.ndarray = np.linspace(0.0, duration - length, sampling.max_windows)
    else:
        length = duration / count
        starts = np.arange(count) * length
    windows = []
    for i, start in enumerate(starts):
        # The window's first and last whole frames; the tolerance keeps 63.9999 from becoming 63.
        first = min(math.ceil(start * info.fps - 1e-6), info.frames - 1)
        last = min(max(math.ceil((start + length) * info.fps - 1e-6) - 1, first), info.frames - 1)
        idx = first + sample_indices(last - first + 1, num_frames)
        windows.append(Window(i, float(start), float(start + length), tuple(int(x) for x in idx)))
    return windows


def sample_indices(count: int, num_frames: int) -> np.ndarray:
    """Which of `count` consecutive frames a window keeps: linspace(0, count - 1), both ends
    included, as the Hugging Face VideoMAE recipe samples. plan_windows and live recognition share it."""
    return np.linspace(0, max(count - 1, 0), num_frames).astype(np.int64)


def center_crop(frames: np.ndarray, crop: tuple[int, int] | None) -> np.ndarray:
    """Centre crop (…, H, W, C) frames the way the Hugging Face image processors do."""
    if crop is None:
        return frames
    ch, cw = crop
    h, w = frames.shape[-3], frames.shape[-2]
    if h < ch or w < cw:
        # The processor pads small images; a zero pad keeps the shape the model needs.
        pad = [(0, 0)] * frames.ndim
        pad[-3] = ((max(ch - h, 0)) // 2, max(ch - h, 0) - max(ch - h, 0) // 2)
        pad[-2] = ((max(cw - w, 0)) // 2, max(cw - w, 0) - max(cw - w, 0) // 2)
        frames = np.pad(frames, pad)
        h, w = frames.shape[-3], frames.shape[-2]
    top, left = (h - ch) // 2, (w - cw) // 2
    return frames[..., top : top + ch, left : left + cw, :]


def probe(path: str | Path) -> VideoInfo:
    """Read the container header with PyAV: cheap, and a clear reason when it is not a video."""
    import av

    p = Path(path)
    if p.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise DecodeError("no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            dovi = dolby_vision(str(p), stream.codec_context.codec_tag or "")
            if dovi is not None and not dovi.showable:
                raise DecodeError(f"{dovi.describe()} with no base layer that shows without Dolby Vision "
                                  "(its colours would come out purple and green); convert it to HDR10 or SDR first")
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = int(stream.frames or 0)
            if frames <= 0:
                seconds = _stream_seconds(stream, container)
                frames = max(1, int(round(seconds * fps))) if seconds else 0
            # Decoding the first frame proves the stream decodes and gives the display rotation.
            first = next(container.decode(stream), None)
            if first is None:
                raise DecodeError("no decodable video frames")
            start = float(first.time or 0.0)
            rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
            if rotation not in (0, 90, 180, 270):
                rotation = 0  # an odd angle: show the frames as stored
            if rotation in (90, 270):
                width, height = height, width
    except DecodeError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"not a readable video ({error_reason(exc)})") from None
    if width <= 0 or height <= 0:
        raise DecodeError("video stream has no frame size")
    if frames <= 0:
        raise DecodeError("video stream has no frames")
    return VideoInfo(frames=frames, fps=fps, width=width, height=height, rotation=rotation, start=start)


def _stream_seconds(stream: Any, container: Any) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def error_reason(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)  # FFmpeg errors: the message without errno and path
    if isinstance(strerror, str) and strerror:
        return strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# Frames less than this many seconds ahead are reached by decoding on; a seek must save more.
FORWARD = 1.0
# FFmpeg's hardware decoders that PyAV's wheels carry, by the name `--decoder` takes (video/hwdecode.py).
HARDWARE = {"cuda": "NVIDIA NVDEC", "qsv": "Intel Quick Sync"}


@dataclass(frozen=True)
class Side:
    """Frames wanted at another size than the model's, from the same decoded frames: the frame
    indices, and (width, height) to scale them to."""

    frames: frozenset[int]
    size: tuple[int, int]


class Reader:
    """Reads frames by index from one file, scaled to (width, height), RGB uint8 (colour.frame_rgb).

    With PyAV, successive reads go on decoding from where the last one stopped (see _read_av), and
    after `plan` the frames no read needs are not decoded at all; the frames a `Side` lists are
    also converted to its size from the same decoded frame (no second decode) and kept in
    `side[name]` by frame index. Backend "cuda" or "qsv" decodes on that hardware.
    """

    def __init__(self, path: str, info: VideoInfo, size: tuple[int, int], backend: str, threads: int,
                 sides: dict[str, Side] | None = None):
        self.path, self.info, self.size, self.threads = path, info, size, threads
        self.backend = backend
        self.sides = sides or {}
        self.side: dict[str, dict[int, np.ndarray]] = {name: {} for name in self.sides}
        self._vr: Any = None  # decord.VideoReader, opened here for that backend
        self._av: Any = None  # av.InputContainer, opened on first read
        # PyAV's decoder, as it stands between reads: its frames from here on (None: seek first), the
        # last frame it gave and that frame converted, the frame's time, the latest time decoded, and
        # where the stream turned out to end.
        self._frames: Iterator[av.VideoFrame] | None = None
        self._frame: av.VideoFrame | None = None
        self._image: np.ndarray | None = None
        self._at = self._last = self._sought = -math.inf  # ... and the target of the last seek
        self._end = math.inf
        self._keyframes: list[float] = []
        self._wanted: list[float] = []  # times of every frame the reads will ask for (plan)
        self._nal_length: tuple[str, int, int] | None = None  # see _nal_length
        if backend == "decord":
            import decord

            w, h = size
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=threads)
            # decord counts frames from the index; trust it over the header when smaller.
            self.frames = min(len(self._vr), info.frames) if len(self._vr) else info.frames
        else:
            self.frames = info.frames

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = [min(i, self.frames - 1) for i in indices]
        if self._vr is not None:
            return self._vr.get_batch(idx).asnumpy()
        return self._read_av(idx)

    def _read_av(self, indices: list[int]) -> np.ndarray:
        """Frames by index with PyAV. The decoder goes on from where the last read left it, every
        frame decoded once and in order, while the frames wanted are near (windows that cover a
        video); it seeks to a keyframe only to skip ahead (windows spread over a long file) or back."""
        if self._av is None:
            self._open_av()
        wanted = sorted(set(indices))
        if self.info.start + wanted[0] / self.info.fps < self._at - 0.5 / self.info.fps:
            self._frames, self._frame, self._sought = None, None, -math.inf  # behind the decoder: only a seek goes back
        got: dict[int, np.ndarray] = {}
        self._decode(wanted, got)
        if not got:
            raise DecodeError("no frames could be decoded")
        # A header that claims more frames than the file holds: repeat the last real frame.
        last = got[max(got)]
        return np.stack([got.get(i, last) for i in indices])

    def _open_av(self) -> None:
        import av

        accel = None
        if self.backend in HARDWARE:
            from av.codec.hwaccel import HWAccel

            # FFmpeg decodes in software what the device cannot (a codec or profile it lacks)
            accel = HWAccel(device_type=self.backend, allow_software_fallback=True)
        self._av = av.open(self.path, hwaccel=accel)
        stream = self._av.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: every core decodes, frames still come in order
        stream.thread_count = self.threads
        # Keyframe times from the container's index (MP4's sync samples), to tell when a seek saves work.
        base = float(stream.time_base or 0)
        entries = stream.index_entries if base else []
        self._keyframes = sorted(e.timestamp * base for e in entries if e.is_keyframe)
        self._nal_length = _nal_length(stream.codec_context)
        self._frames = self._decoded()
        self._at = self.info.start - 1.0 / self.info.fps  # just before the first frame

    def _decode(self, wanted: list[int], got: dict[int, np.ndarray]) -> None:
        """Decode on to each wanted frame (seeking where that saves decoding) and keep it, converted."""
        import av

        fps, half = self.info.fps, 0.5 / self.info.fps
        times = [self.info.start + i / fps for i in wanted]  # frame index -> presentation time
        k = 0
        while k < len(wanted):
            target = times[k]
            if self._frame is not None and target <= self._at + half:
                # the frame in hand (or the first after a seek that landed late) is this one
                self._keep(wanted[k], got)
                k += 1
                continue
            if target > self._end:
                return  # past where the stream ended: read() repeats the last real frame
            if self._frames is None or (target > self._sought and self._worth_seeking(target)):
                self._frames = self._seek(target)  # once per target: a seek that lands early is decoded on from
            try:
                frame = next(self._frames, None)
            except av.error.InvalidDataError:
                # A file cut short, or a broken stretch whose header still lists the lost frames:
                # keep what came before; frames a second further on are looked for after a seek.
                self._frames = None
                while k < len(wanted) and times[k] <= target + FORWARD:
                    k += 1
                continue
            if frame is None:  # the stream ends before this frame (a header that counts too many)
                self._end = self._last
                return
            self._frame, self._image = frame, None
            self._at = float(frame.time) if frame.time is not None else self._at
            self._last = max(self._last, self._at)

    def plan(self, indices: Sequence[int]) -> None:
        """Every frame the reads to come will ask for (PyAV): the packets of frames that no other
        frame is decoded from, and that none of these is, are then not decoded at all. The frames
        read are exactly those of a full decode; phone HEVC and H.264 with B-frames hold many such
        frames (half of them in x265's default structure)."""
        fps = self.info.fps
        self._wanted = sorted(self.info.start + i / fps for i in set(indices))

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The stream's frames from where the container stands, as container.decode gives them,
        less the packets that plan() found needless."""
        stream = self._av.streams.video[0]
        base = float(stream.time_base or 0)
        for packet in self._av.demux(stream):
            if self._wanted and self._nal_length and packet.size and packet.pts is not None and base:
                if not self._near_wanted(packet.pts * base) and _unreferenced(bytes(packet), *self._nal_length):
                    continue
            yield from cast("list[av.VideoFrame]", packet.decode())  # a video stream's packets give video frames

    def _near_wanted(self, t: float) -> bool:
        """Whether the frame at `t` may be the one read for a wanted time: the first frame at most half
        a frame before it, allowing for an uneven frame rate (a frame and a half after it)."""
        fps = self.info.fps
        i = bisect.bisect_left(self._wanted, t - 1.5 / fps)
        return i < len(self._wanted) and self._wanted[i] <= t + 0.5 / fps

    def _worth_seeking(self, target: float) -> bool:
        """Whether a seek to the keyframe before `target` saves more than FORWARD seconds of decoding
        over going on from where the decoder is (without an index: whether `target` is that far ahead)."""
        if self._keyframes:
            before = bisect.bisect_right(self._keyframes, target + 0.5 / self.info.fps) - 1
            return before >= 0 and self._keyframes[before] - self._at > FORWARD
        return target - self._at > FORWARD

    def _seek(self, target: float) -> Iterator[av.VideoFrame]:
        """To the last keyframe at or before `target` (FFmpeg seeks MP4 and MKV by presentation time;
        without an index, as in MPEG-TS, a little earlier, as landing late is likelier there)."""
        stream = self._av.streams.video[0]
        to = target + 0.5 / self.info.fps if self._keyframes else target - 0.05
        self._av.seek(int(max(to, 0) / float(stream.time_base)), stream=stream, backward=True)
        self._frame, self._image, self._at, self._sought = None, None, -math.inf, target
        return self._decoded()

    def _keep(self, index: int, got: dict[int, np.ndarray]) -> None:
        """The frame in hand as frame `index`: at the model's size (converted once however many
        indices it stands for), and at each side's size that lists it."""
        frame = self._frame
        assert frame is not None
        if self._image is None:
            self._image = self._to_array(frame, self.size)
        got[index] = self._image
        for name, side in self.sides.items():
            if index in side.frames:
                self.side[name][index] = self._to_array(frame, side.size)

    def _to_array(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
        return frame_rgb(frame, size, self.info.rotation)

    def close(self) -> None:
        if self._av is not None:
            self._av.close()
        self._vr = None


def _nal_length(context: Any) -> tuple[str, int, int] | None:
    """(codec, bytes of each NAL unit's length, HEVC's temporal sub-layers) for streams whose packets
    are length-prefixed NAL units (H.264 and HEVC in MP4, MOV, MKV); None for any other stream."""
    extra = bytes(context.extradata or b"")
    if context.name == "hevc" and len(extra) > 22 and extra[0] == 1:
        return "hevc", (extra[21] & 3) + 1, (extra[21] >> 3) & 7
    if context.name == "h264" and len(extra) > 6 and extra[0] == 1:
        return "h264", (extra[4] & 3) + 1, 0
    return None


def _unreferenced(data: bytes, codec: str, length: int, layers: int) -> bool:
    """Whether no other frame is decoded from the frame in this packet, by its first slice's NAL
    header: H.264's nal_ref_idc 0; HEVC's sub-layer non-reference types (TRAIL_N, RASL_N ...) in
    the highest temporal sub-layer (lower ones may be referenced by the layers above)."""
    at = 0
    while at + length < len(data):
        size = int.from_bytes(data[at : at + length], "big")
        header = data[at + length : at + length + 2]
        if len(header) < 2 or size < 2:
            return False
        if codec == "h264":
            kind = header[0] & 0x1F
            if kind in (1, 5):  # a slice
                return header[0] >> 5 == 0
        else:
            kind = (header[0] >> 1) & 0x3F
            if kind < 32:  # a slice
                return kind < 16 and kind % 2 == 0 and layers > 0 and (header[1] & 7) - 1 == layers - 1
        at += length + size
    return False


@dataclass
class Extras:
    """What a decode gives beside the video model's frames, from the frames it decodes anyway: a JPEG
    of each window's middle frame (`thumbs`), and each other kind of evidence's frames of each window
    at its own size (`sides`, by kind: spread over the window like the model's). Each chunk appends
    to the lists, one entry per window; the caller reads and empties them."""

    thumbs: bool = False
    sides: dict[str, FrameSpec] = field(default_factory=dict)
    jpegs: list[bytes | None] = field(default_factory=list)  # None: no thumbnail without a second decode
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)  # by kind: (frames, crop_h, crop_w, 3) each

    def clear(self) -> None:
        self.jpegs.clear()
        self.frames.clear()


def read_windows(
    path: str,
    spec: FrameSpec,
    sampling: Sampling,
    backend: str = "auto",
    threads: int = 0,
    chunk: int = 4,
    extras: Extras | None = None,
) -> Iterator[tuple[VideoInfo, list[Window], np.ndarray]]:
    """Yield (info, windows, frames) in chunks of `chunk` windows.

    frames has shape (n, num_frames, crop_h, crop_w, 3), uint8 RGB, resized and centre-cropped
    exactly as the model's processor would. Given `extras`, each chunk first appends its windows'
    thumbnails and other kinds' frames to it. Raises DecodeError with a reason for bad files.
    """
    info = probe(path)
    windows = plan_windows(info, spec.num_frames, sampling)
    size = spec.scaled_size(info.width, info.height)
    sides = _sides(info, windows, extras)
    # A hardware decoder that cannot take a file leaves it to software.
    backends = ["pyav", "decord"] if backend == "auto" else [backend, "pyav"] if backend in HARDWARE else [backend]
    if info.rotation and backend == "auto":
        backends = ["pyav"]  # decord ignores the display matrix (and decord2 returns mangled frames)
    errors = []
    for i, name in enumerate(backends):
        try:
            reader = Reader(path, info, size, name, threads, sides)
        except DecodeError:
            raise
        except Exception as exc:  # decord raises bare RuntimeError/DECORDError for bad files
            errors.append(f"{name}: {error_reason(exc)}")
            continue
        reader.plan([f for w in windows for f in w.frames])
        try:
            for first in range(0, len(windows), chunk):
                part = windows[first : first + chunk]
                try:
                    flat = reader.read([f for w in part for f in w.frames])
                except DecodeError as exc:
                    if first == 0 and name in HARDWARE:
                        raise _Fallback(exc) from exc
                    raise
                except Exception as exc:
                    if first == 0 and i + 1 < len(backends):
                        raise _Fallback(exc) from exc
                    raise DecodeError(f"decoding failed at {part[0].start:.1f}s ({error_reason(exc)})") from None
                frames = flat.reshape(len(part), spec.num_frames, *flat.shape[1:])
                if extras is not None:
                    _add_extras(extras, reader, sides, part, frames)
                yield info, part, np.ascontiguousarray(center_crop(frames, spec.crop))
            return
        except _Fallback as fb:
            errors.append(f"{name}: {error_reason(fb.__cause__ or fb)}")
        finally:
            reader.close()
    raise DecodeError("cannot decode: " + "; ".join(errors))


def _sides(info: VideoInfo, windows: list[Window], extras: Extras | None) -> dict[str, Side]:
    sides = {}
    if extras is not None and extras.thumbs:
        sides["thumb"] = Side(frozenset(_middle(w) for w in windows), thumb_size(info.width, info.height))
    for name, spec in (extras.sides if extras is not None else {}).items():
        sides[name] = Side(frozenset(f for w in windows for f in _picks(w, spec.num_frames)),
                           spec.scaled_size(info.width, info.height))
    return sides


def _picks(window: Window, count: int) -> list[int]:
    """Another kind's frames of a window: `count` of the model's own, spread the same way (both ends
    included), so they come from frames decoded anyway."""
    return [window.frames[i] for i in sample_indices(len(window.frames), count)]


def _add_extras(extras: Extras, reader: Reader, sides: dict[str, Side], part: list[Window], frames: np.ndarray) -> None:
    """A chunk's thumbnails and other kinds' frames, from what was decoded for it."""
    for j, w in enumerate(part):
        if "thumb" in sides:
            extras.jpegs.append(_thumb(reader, w, frames[j], sides["thumb"].size))
        for name, spec in extras.sides.items():
            kept = reader.side[name]
            # decord gives model-size frames only: another kind's are scaled from those
            images = [kept[w.frames[i]] if w.frames[i] in kept else _rescaled(frames[j][i], sides[name].size)
                      for i in sample_indices(len(w.frames), spec.num_frames)]
            extras.frames.setdefault(name, []).append(np.ascontiguousarray(center_crop(np.stack(images), spec.crop)))
    for table in reader.side.values():  # what the next chunk does not share with this one
        table.clear()


class _Fallback(Exception):
    pass


def _middle(window: Window) -> int:
    return window.frames[len(window.frames) // 2]


def _thumb(reader: Reader, window: Window, frames: np.ndarray, size: tuple[int, int]) -> bytes | None:
    """The window's thumbnail from what was decoded: PyAV kept a thumb-size copy of the middle
    frame; decord only has model-size frames, usable when at least as large as the thumbnail."""
    image = reader.side["thumb"].get(_middle(window))
    if image is None:
        model_size = frames[len(frames) // 2]  # uncropped, (H, W, 3)
        if model_size.shape[1] < size[0] or model_size.shape[0] < size[1]:
            return None  # upscaling a 32 px frame would make a useless thumbnail: leave it lazy
        image = _rescaled(model_size, size)
    return encode_jpeg(image)


def _rescaled(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) RGB scaled to (width, height) by FFmpeg's scaler, as the decoder's own frames are."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.reformat(width=size[0], height=size[1]).to_ndarray()

