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
# Fast periodic motion: a bar turning several times per clip, so which frames are sampled
# changes what the model sees (the sampling convention matters, see plan_windows).
PERIODIC = ("spinning",)


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
    elif motion == "spinning":
        return _spinning(rng, frames, width, height, bg, fg)
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


def _spinning(
    rng: np.random.Generator, frames: int, width: int, height: int, bg: np.ndarray, fg: np.ndarray
) -> np.ndarray:
    """A bar turning about the centre, 2.5-4 turns per clip in either direction."""
    turns = rng.uniform(2.5, 4.0) * rng.choice([-1, 1])
    angles = rng.uniform(0, np.pi) + np.linspace(0, 2 * np.pi * turns, frames)
    length, thick = rng.uniform(0.3, 0.4) * min(width, height), rng.uniform(0.06, 0.1) * min(width, height)
    cx, cy = rng.uniform(0.4, 0.6) * width, rng.uniform(0.4, 0.6) * height
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i, a in enumerate(angles):
        along = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
        across = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
        out[i] = bg
        out[i][(np.abs(along) <= length) & (np.abs(across) <= thick / 2)] = fg
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


# Speech: espeak-ng (a Debian package) says sentences; at 130 words per minute Whisper tiny.en
# recognises these word for word (checked with int8 and float32; at espeak's default 175, "wooden
# bridge" and "strawberry" are misheard).
SPEECH_WPM = 130
SENTENCES = (
    "The strawberry jam is on the kitchen table.",
    "Happy birthday dear Oliver, happy birthday to you.",
    "The mitochondria is the powerhouse of the cell.",
    "The train to London leaves at seven o'clock.",
    "The quick brown fox jumps over the lazy dog.",
    "My favourite colour is green.",
)


def speak(text: str, words_per_minute: int = SPEECH_WPM, voice: str = "en") -> tuple[np.ndarray, int]:
    """espeak-ng saying `text`: (mono float32 samples, sample rate), leading and trailing silence cut."""
    import subprocess
    import tempfile
    import wave

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "said.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
                       check=True, capture_output=True)
        with wave.open(str(out)) as w:
            rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return (samples[loud[0]: loud[-1] + 1] if loud.size else samples[:0]), rate


def write_talking_video(
    path: str | Path,
    seconds: float,
    tracks: Sequence[Sequence[tuple[float, str]]] = (),
    default: int | None = None,
    width: int = 64,
    height: int = 48,
    fps: int = 10,
    rate: int = 22050,
    frames: np.ndarray | None = None,
) -> list[list[tuple[float, float]]]:
    """A small H.264 video with AAC audio tracks in which espeak-ng says sentences at known times.

    Each track is a list of (start second, sentence), silence elsewhere; `default` marks one track
    as the default. No tracks: a video without audio. The picture is grey, or `frames` (RGB, one
    per 1/fps, repeated from the start if too few). Returns, per track, the (start, end) seconds of
    each sentence as said."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames is not None:
        height, width = frames.shape[1:3]
    said: list[list[tuple[float, float]]] = []
    sounds = []
    for sayings in tracks:
        sound = np.zeros(int(seconds * rate), dtype=np.float32)
        spans = []
        for start, sentence in sayings:
            voice, voice_rate = speak(sentence)
            if voice_rate != rate:
                raise ValueError(f"espeak-ng speaks at {voice_rate} Hz; ask for rate={voice_rate}")
            at = int(start * rate)
            voice = voice[: len(sound) - at]
            sound[at: at + len(voice)] = 0.8 * voice
            spans.append((start, start + len(voice) / rate))
        sounds.append(sound)
        said.append(spans)
    with av.open(str(path), "w") as container:
        video = cast("av.VideoStream", container.add_stream("libx264", rate=fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = []
        for i in range(len(sounds)):
            stream = cast("av.AudioStream", container.add_stream("aac", rate=rate))
            stream.layout = "mono"
            stream.disposition = av.stream.Disposition.default if i == default else av.stream.Disposition(0)
            audio.append(stream)
        if frames is None:
            frames = np.full((1, height, width, 3), 90, dtype=np.uint8)
        encode_into(container, video, (_numbered(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24"), i)
                                       for i in range(int(seconds * fps))))
        for stream, sound in zip(audio, sounds):
            encode_into(container, stream, _audio_frames(sound, rate))
    return said


def _numbered(frame: av.VideoFrame, i: int) -> av.VideoFrame:
    frame.pts = i
    return frame


def _audio_frames(sound: np.ndarray, rate: int, size: int = 1024) -> Iterator[av.AudioFrame]:
    import av

    for i in range(0, len(sound), size):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[None, i: i + size]), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, i
        yield frame
