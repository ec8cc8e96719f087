"""Decoding: probe a file, plan its windows, read frames at the size the model needs.

Two backends sit behind one function, `read_windows`: PyAV and decord (the `decord2` fork, which
keeps decord's API with a current FFmpeg). Measured on real files and on seeking through a long
one, they are within 10% of each other (docs/speed.md, "Decoding"); PyAV is tried first because it is
the more robust: it honours rotation metadata, which decord ignores or mangles, and has no
open reports of hangs. decord is the fallback for files PyAV rejects.
Nothing here imports torch: this module runs inside the decode worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    """One clip of a video: `num_frames` frame indices spread evenly over [start, end) seconds,
    the first and last frames of the span included."""

    index: int
    start: float
    end: float
    frames: tuple[int, ...]


@dataclass(frozen=True)
class FrameSpec:
    """What the model wants: frames per clip, and the resize + centre crop of its processor.

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
        raise DecodeError(f"not a readable video ({_short(exc)})") from None
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


def _short(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)  # FFmpeg errors: the message without errno and path
    if isinstance(strerror, str) and strerror:
        return strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


@dataclass(frozen=True)
class Side:
    """Frames wanted at another size than the model's, from the same decoded frames: the frame
    indices, and (width, height) to scale them to."""

    frames: frozenset[int]
    size: tuple[int, int]


class Reader:
    """Reads frames by index from one file, scaled to (width, height), RGB uint8.

    With PyAV, the frames a `Side` lists are also scaled to its size from the same decoded frame
    (a second reformat, no second decode) and kept in `side[name]` by frame index.
    """

    def __init__(self, path: str, info: VideoInfo, size: tuple[int, int], backend: str, threads: int,
                 sides: dict[str, Side] | None = None):
        self.path, self.info, self.size, self.threads = path, info, size, threads
        self.backend = backend
        self.sides = sides or {}
        self.side: dict[str, dict[int, np.ndarray]] = {name: {} for name in self.sides}
        self._vr: Any = None  # decord.VideoReader, opened here for that backend
        self._av: Any = None  # av.InputContainer, opened on first read
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
        """Frames by index with PyAV: a keyframe seek per run of nearby frames, decode forward."""
        import av

        if self._av is None:
            self._av = av.open(self.path)
            self._av.streams.video[0].thread_type = "AUTO"
            self._av.streams.video[0].thread_count = self.threads
        fps = self.info.fps
        wanted = sorted(set(indices))
        # Frames less than a second apart are reached by decoding on; farther ones by seeking.
        runs: list[list[int]] = [[wanted[0]]]
        for i in wanted[1:]:
            if (i - runs[-1][-1]) / fps > 1.0:
                runs.append([i])
            else:
                runs[-1].append(i)
        got: dict[int, np.ndarray] = {}
        for run in runs:
            got.update(self._decode_run(run))
        if not got:
            raise DecodeError("no frames could be decoded")
        # A header that claims more frames than the file holds: repeat the last real frame.
        last = got[max(got)]
        return np.stack([got.get(i, last) for i in indices])

    def _decode_run(self, run: list[int]) -> dict[int, np.ndarray]:
        import av

        container = self._av
        stream = container.streams.video[0]
        fps, half = self.info.fps, 0.5 / self.info.fps
        times = [self.info.start + i / fps for i in run]  # frame index -> presentation time
        container.seek(int(max(times[0] - 0.05, 0) / float(stream.time_base)), stream=stream, backward=True)
        got: dict[int, np.ndarray] = {}
        k = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                if t + half < times[k]:
                    continue
                image = self._to_array(frame, self.size)
                while k < len(run) and times[k] <= t + half:
                    got[run[k]] = image
                    for name, side in self.sides.items():
                        if run[k] in side.frames:
                            self.side[name][run[k]] = self._to_array(frame, side.size)
                    k += 1
                if k == len(run):
                    break
        except av.error.InvalidDataError:
            # A file cut short whose header still lists the lost frames: keep the ones it has.
            # A run wholly past the cut decodes nothing; read() repeats the last real frame, and
            # fails only when no run decoded anything.
            pass
        return got

    def _to_array(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
        return frame_rgb(frame, size, self.info.rotation)

    def close(self) -> None:
        if self._av is not None:
            self._av.close()
        self._vr = None


@dataclass
class Extras:
    """What a decode gives beside the model's frames, from the frames it decodes anyway: a JPEG of
    each window's middle frame (`thumbs`), and the scene model's frames of each window at its own
    size (`scene`: spread over the window like the model's). Each chunk appends to the lists, one
    entry per window; the caller reads and empties them."""

    thumbs: bool = False
    scene: FrameSpec | None = None
    jpegs: list[bytes | None] = field(default_factory=list)  # None: no thumbnail without a second decode
    scene_frames: list[np.ndarray] = field(default_factory=list)  # (frames, crop_h, crop_w, 3) each

    def clear(self) -> None:
        self.jpegs.clear()
        self.scene_frames.clear()


def read_windows(
    path: str,
    spec: FrameSpec,
    sampling: Sampling,
    backend: str = "auto",
    threads: int = 1,
    chunk: int = 4,
    extras: Extras | None = None,
) -> Iterator[tuple[VideoInfo, list[Window], np.ndarray]]:
    """Yield (info, windows, frames) in chunks of `chunk` windows.

    frames has shape (n, num_frames, crop_h, crop_w, 3), uint8 RGB, resized and centre-cropped
    exactly as the model's processor would. Given `extras`, each chunk first appends its windows'
    thumbnails and scene frames to it. Raises DecodeError with a reason for bad files.
    """
    info = probe(path)
    windows = plan_windows(info, spec.num_frames, sampling)
    size = spec.scaled_size(info.width, info.height)
    sides = _sides(info, windows, extras)
    backends = ["pyav", "decord"] if backend == "auto" else [backend]
    if info.rotation and backend == "auto":
        backends = ["pyav"]  # decord ignores the display matrix (and decord2 returns mangled frames)
    errors = []
    for i, name in enumerate(backends):
        try:
            reader = Reader(path, info, size, name, threads, sides)
        except DecodeError:
            raise
        except Exception as exc:  # decord raises bare RuntimeError/DECORDError for bad files
            errors.append(f"{name}: {_short(exc)}")
            continue
        try:
            for first in range(0, len(windows), chunk):
                part = windows[first : first + chunk]
                try:
                    flat = reader.read([f for w in part for f in w.frames])
                except DecodeError:
                    raise
                except Exception as exc:
                    if first == 0 and i + 1 < len(backends):
                        raise _Fallback(exc) from exc
                    raise DecodeError(f"decoding failed at {part[0].start:.1f}s ({_short(exc)})") from None
                frames = flat.reshape(len(part), spec.num_frames, *flat.shape[1:])
                if extras is not None:
                    _add_extras(extras, reader, sides, part, frames)
                yield info, part, np.ascontiguousarray(center_crop(frames, spec.crop))
            return
        except _Fallback as fb:
            errors.append(f"{name}: {_short(fb.__cause__ or fb)}")
        finally:
            reader.close()
    raise DecodeError("cannot decode: " + "; ".join(errors))


def _sides(info: VideoInfo, windows: list[Window], extras: Extras | None) -> dict[str, Side]:
    sides = {}
    if extras is not None and extras.thumbs:
        sides["thumb"] = Side(frozenset(_middle(w) for w in windows), thumb_size(info.width, info.height))
    if extras is not None and extras.scene is not None:
        scene = extras.scene
        sides["scene"] = Side(frozenset(f for w in windows for f in _scene_picks(w, scene.num_frames)),
                              scene.scaled_size(info.width, info.height))
    return sides


def _scene_picks(window: Window, count: int) -> list[int]:
    """The scene model's frames of a window: `count` of the model's own, spread the same way (both
    ends included), so they come from frames decoded anyway."""
    return [window.frames[i] for i in sample_indices(len(window.frames), count)]


def _add_extras(extras: Extras, reader: Reader, sides: dict[str, Side], part: list[Window], frames: np.ndarray) -> None:
    """A chunk's thumbnails and scene frames, from what was decoded for it."""
    for j, w in enumerate(part):
        if "thumb" in sides:
            extras.jpegs.append(_thumb(reader, w, frames[j], sides["thumb"].size))
        if "scene" in sides:
            scene = extras.scene
            assert scene is not None  # a scene side is made only for a scene spec
            kept = reader.side["scene"]
            # decord gives model-size frames only: the scene's are scaled from those
            images = [kept[w.frames[i]] if w.frames[i] in kept else _rescaled(frames[j][i], sides["scene"].size)
                      for i in sample_indices(len(w.frames), scene.num_frames)]
            extras.scene_frames.append(np.ascontiguousarray(center_crop(np.stack(images), scene.crop)))
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

