"""Generated videos with known content, for tests, the demo data and the benchmark.

Each motion pattern is something a single frame cannot tell: a shape moving left looks like a
shape moving right until you see two frames. Colours, sizes, speeds and start points vary per
video, so a model has to learn the motion, not the look.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

import numpy as np

if TYPE_CHECKING:
    import av

FrameT = TypeVar("FrameT", contravariant=True)

MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")


def render_motion(
    motion: str, rng: np.random.Generator, frames: int = 32, width: int = 64, height: int = 48
) -> np.ndarray:
    """(frames, height, width, 3) uint8 frames of one shape doing `motion` on a plain background."""
    bg = rng.integers(0, 256, 3)
    fg = (bg + rng.integers(96, 160, 3)) % 256  # always clearly different from the background
    size = rng.uniform(0.18, 0.3) * min(width, height)
    speed = rng.uniform(0.6, 1.0)  # of the travel range, over the whole clip
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    t = np.linspace(-0.5, 0.5, frames) * speed
    xs, ys, sizes = np.full(frames, cx), np.full(frames, cy), np.full(frames, size)
    travel_x, travel_y = 0.55 * width, 0.55 * height
    if motion == "moving left":
        xs = cx - t * travel_x
    elif motion == "moving right":
        xs = cx + t * travel_x
    elif motion == "moving up":
        ys = cy - t * travel_y
    elif motion == "moving down":
        ys = cy + t * travel_y
    elif motion == "growing":
        sizes = size * (1.0 + 2.2 * (t + 0.5 * speed))
    elif motion == "shrinking":
        sizes = size * (1.0 + 2.2 * (0.5 * speed - t))
    else:
        raise ValueError(f"unknown motion {motion!r}")
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i in range(frames):
        half = sizes[i] / 2
        inside = (np.abs(xx - xs[i]) <= half) & (np.abs(yy - ys[i]) <= half)
        out[i] = bg
        out[i][inside] = fg
    return out


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray | av.VideoFrame],
    fps: int | Fraction = 16,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, object] | None = None,
    pts_ms: Sequence[int] | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Encode frames (RGB uint8 arrays or PyAV frames, all one size) into a video file.

    `options` are the codec's (default: x264 at high quality, fast); `pts_ms` gives each frame
    its own time in milliseconds (variable frame rate, late starts) instead of one every 1/fps;
    `rotation` writes a display matrix the way phones do; `faststart` puts the index first.
    yuv420p needs even sides: arrays are cut to even width and height.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rest = iter(frames)
    first = next(rest)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = cast("av.VideoStream", container.add_stream(codec, rate=fps))
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": "18", "preset": "veryfast"} if options is None else dict(options)
        if isinstance(first, np.ndarray):
            h, w = first.shape[:2]
            stream.width, stream.height = w - w % 2, h - h % 2
        else:
            stream.width, stream.height = first.width, first.height
        time_base = Fraction(1, 1000) if pts_ms is not None else 1 / Fraction(fps)
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)

        def numbered() -> Iterator[av.VideoFrame]:
            for i, image in enumerate(itertools.chain([first], rest)):
                frame = image if isinstance(image, av.VideoFrame) else av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image[: stream.height, : stream.width]), format="rgb24")
                frame.pts = pts_ms[i] if pts_ms is not None else i
                frame.time_base = time_base
                yield frame

        encode_into(container, stream, numbered())
    return path


class _Encoder(Protocol[FrameT]):
    def encode(self, frame: FrameT | None = None) -> list[av.Packet]: ...


def encode_into(container: av.container.OutputContainer, stream: _Encoder[FrameT], frames: Iterable[FrameT]) -> None:
    """Encode every frame into `stream`, mux the packets, then flush the encoder."""
    for frame in frames:
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def motion_dataset(
    root: str | Path,
    per_label: int,
    seed: int,
    motions: tuple[str, ...] = MOTIONS,
    folders: bool = True,
    frames: int = 32,
) -> dict[Path, str]:
    """Write `per_label` videos per motion; folder-per-label (for `train`) or flat. Returns path -> label."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    plan = [(motion, i) for motion in motions for i in range(per_label)]
    order = rng.permutation(len(plan))  # flat names carry no hint of the label
    made = {}
    for n, (motion, i) in enumerate(plan):
        slug = motion.replace(" ", "_")
        name = f"{slug}/{i:03d}.mp4" if folders else f"clip_{seed}_{order[n]:04d}.mp4"
        path = write_video(root / name, render_motion(motion, rng, frames=frames))
        made[path] = motion
    return made


def long_video(path: str | Path, seconds: float, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """A long, moving test pattern (for timing seeks): cheap to generate, real to decode."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx // 40 + yy // 40) % 2 * 120 + 60).astype(np.uint8)
    # A two-second loop of distinct frames, encoded over and over: rendering stays out of the way.
    loop = []
    for i in range(2 * fps):
        img = np.roll(base, (i * 8) % width, axis=1)
        loop.append(av.VideoFrame.from_ndarray(np.stack([img, np.roll(img, i * 3, axis=0), 255 - img], axis=-1),
                                               format="rgb24").reformat(format="yuv420p"))
    # a keyframe every 2 s, like cameras
    return write_video(path, (loop[i % len(loop)] for i in range(int(seconds * fps))), fps,
                       options={"preset": "ultrafast", "g": str(fps * 2)})


def motion_stream(motions: Sequence[str], seconds: float, rng: np.random.Generator, fps: int = 16) -> np.ndarray:
    """Frames of `seconds` of each motion in turn, one continuous shot per motion, for live
    recognition tests: the look changes where the motion does."""
    return np.concatenate([render_motion(m, rng, frames=int(round(seconds * fps))) for m in motions])
