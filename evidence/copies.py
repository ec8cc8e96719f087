"""Copies: a fingerprint of about every second of every video, from frames decoded anyway, so that
copies, trims and re-encodes are found across the library with the spans that match in both
(`vsearch duplicates`, search.copies), and a search can fold copies into one hit.

A second's fingerprint is its luminance on an 8 x 8 grid, over the whole frame and over its middle
75%, mean taken out and scaled to unit length (search.copies says why). Seconds too flat to have a
layout (black, blank) are not kept, nor a second too like the one kept before it in its window.
After each index run the videos it fingerprinted are matched against the whole library, and the
pairs found are kept (`copy_pairs`), so that reading them is instant.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vsearch.evidence.base import Setup, WindowKind, WindowPart
from vsearch.search.catalog import Catalog, VectorSpace, from_blobs, to_blob
from vsearch.search.copies import CopyPair, Prints, Span, exact_pairs, near_pairs, prints_from_rows
from vsearch.search.doctor import Finding
from vsearch.search.vectors import VectorIndex, rebuild
from vsearch.video.decode import FrameSpec

READER = "vsearch copies 1"  # what makes the fingerprints, recorded as the kind's model: a new one makes them again
SIZE = 32  # frames scaled, whole, to 32 x 32: a copy at another size scales alike
GRID = 8
MIDDLE = slice(4, 28)  # the middle 75%: what a copy cropped by about a tenth a side shows as its whole frame
FLAT = 6.0  # spread of luminance (of 255) below which a second shows nothing: black, blank
NOVELTY = 0.97  # a second this like the one before it (a still, a title card) says nothing new
# Frames fingerprinted per second: two, so that a copy whose frames fall between the source's (a
# trim at any instant, another frame rate) still has one within a quarter second of each.
PER_SECOND = 2
DIM = GRID * GRID


def _tables(db: Any) -> None:
    # Prints made before windows had that name are renamed with them by the catalog's own migration.
    db.execute("""
        CREATE TABLE copy_prints (
            -- AUTOINCREMENT: an id is never reused, so the fingerprint index kept between runs can tell
            -- a new print from one it holds
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            window_id INTEGER NOT NULL REFERENCES windows(id) ON DELETE CASCADE,
            t REAL NOT NULL,               -- the second it shows, on the video's timeline
            whole BLOB NOT NULL,           -- the whole frame's fingerprint (float16, unit length)
            middle BLOB NOT NULL           -- its middle's
        )""")
    db.execute("CREATE INDEX copy_prints_window ON copy_prints(window_id)")
    # Pairs found, by video id; no foreign keys: a copy of a file must not copy the pairs of its
    # source, and pairs of videos that left are dropped when read (joined to the videos).
    db.execute("""
        CREATE TABLE copy_pairs (
            a INTEGER NOT NULL, b INTEGER NOT NULL,
            kind TEXT NOT NULL,            -- same, contains (a contains b), part
            a_start REAL NOT NULL, a_end REAL NOT NULL, b_start REAL NOT NULL, b_end REAL NOT NULL,
            score REAL NOT NULL
        )""")
    db.execute("CREATE INDEX copy_pairs_a ON copy_pairs(a)")
    db.execute("CREATE INDEX copy_pairs_b ON copy_pairs(b)")


def _rows(column: str) -> str:
    return (f"SELECT p.id AS id, c.video_id AS video_id, p.t AS start, p.t + 1 AS end, p.{column} AS vector "
            "FROM copy_prints p JOIN windows c ON c.id = p.window_id")


WHOLE = VectorSpace("copies", _rows("whole"), "copy_prints_dim", per_window=False)
MIDDLES = VectorSpace("copies-middle", _rows("middle"), "copy_prints_dim", per_window=False)


def fingerprints(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., SIZE, SIZE, 3) uint8 frames -> (whole, middle, spread): each region's fingerprint (..., DIM)
    and the whole frame's luminance spread (...)."""
    gray = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)

    def grid(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[-2:]
        cells = image.reshape(*image.shape[:-2], GRID, h // GRID, GRID, w // GRID).mean(axis=(-3, -1))
        flat = cells.reshape(*cells.shape[:-2], DIM)
        flat = flat - flat.mean(axis=-1, keepdims=True)
        return flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-6)

    return grid(gray), grid(gray[..., MIDDLE, MIDDLE]), gray.std(axis=(-2, -1))


class Fingerprinter:
    """The kind's "model": a window's frames (one per second or so) -> their fingerprints, packed."""

    name = model_id = READER

    def __init__(self, per_window: int):
        self.per_window = per_window
        self.dim = per_window * (2 * DIM + 1)
        self.frame_spec = FrameSpec(per_window, ("exact", (SIZE, SIZE)), None)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        whole, middle, spread = fingerprints(frames)
        return np.concatenate([whole, middle, spread[..., None]], axis=-1).reshape(len(frames), -1)


class Copies(WindowKind):
    name = "copies"
    prefix = "copies"
    space = WHOLE
    tables = [("001_copy_prints_and_pairs", _tables)]

    def part(self, setup: Setup) -> WindowPart:
        seconds = setup.catalog.sampling[0] if setup.catalog.sampling else setup.options.window
        per_window = max(2, round(PER_SECOND * seconds))
        return WindowPart(self, f"{READER} ({per_window} per window)", functools.partial(Fingerprinter, per_window))

    def store(self, catalog: Catalog, window_ids: Sequence[int], values: np.ndarray) -> None:
        spans = dict(((cid, (s, e)) for cid, s, e in catalog.db.execute(
            f"SELECT id, start, end FROM windows WHERE id IN ({','.join('?' * len(window_ids))})", list(window_ids))))
        rows = []
        for cid, packed in zip(window_ids, values):
            per = packed.reshape(-1, 2 * DIM + 1)
            start, end = spans[cid]
            # the frames are the window's own, spread over it with both ends in (video.decode._picks)
            times = np.linspace(start, start + (end - start) * (1 - 1 / (4 * len(per))), len(per))
            kept: np.ndarray | None = None
            for t, row in zip(times, per):
                whole, middle, spread = row[:DIM], row[DIM : 2 * DIM], row[-1]
                if spread < FLAT or (kept is not None and float(whole @ kept) >= NOVELTY):
                    continue
                kept = whole
                rows.append((cid, float(t), to_blob(whole), to_blob(middle)))
        catalog.db.conn.executemany("INSERT INTO copy_prints (window_id, t, whole, middle) VALUES (?, ?, ?, ?)", rows)
        catalog.set_meta(WHOLE.dim_key, str(DIM))

    def clear(self, catalog: Catalog) -> None:
        if catalog.has_part(self.name):
            catalog.db.execute("DELETE FROM copy_prints")
            catalog.db.execute("DELETE FROM copy_pairs")
            catalog.changed()

    def checks(self) -> list:
        return [functools.partial(_check, space=space) for space in (WHOLE, MIDDLES)]

    def settle(self, catalog: Catalog, videos: list[int]) -> None:
        """Find the copies of these videos (just fingerprinted) in the whole library, and keep them."""
        pairs = find_pairs(catalog, videos)
        with catalog.transaction():
            marks = ",".join("?" * len(videos))
            catalog.db.execute(f"DELETE FROM copy_pairs WHERE a IN ({marks}) OR b IN ({marks})", [*videos, *videos])
            catalog.db.conn.executemany(
                "INSERT INTO copy_pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(p.a.video_id, p.b.video_id, p.kind, p.a.start, p.a.end, p.b.start, p.b.end, p.score) for p in pairs])

    def describe(self) -> str:
        return "copies: a fingerprint of every second, for vsearch duplicates"


def _check(catalog: Catalog, repair: bool, space: VectorSpace) -> Finding:
    """Doctor: is the fingerprint index kept beside the catalog in step with its prints? (A missing one
    is made by the next run that looks for copies: nothing is wrong.)"""
    check = f"fingerprint index ({space.name})"
    folder = catalog.home / f"{space.name}-kept"
    if not catalog.has_part(Copies.name) or not (folder / "ids.npy").exists():
        return Finding(check, True, "made when copies are next looked for")
    try:
        held = np.load(folder / "ids.npy")
    except (OSError, ValueError):
        held = np.zeros(0, dtype=np.int64)
    now = _print_ids(catalog)
    if len(held) == len(now) and bool((held == now).all()):
        return Finding(check, True, f"{len(now)} fingerprints, in step with SQLite")
    if repair:
        _kept_index(catalog, space, "whole" if space is WHOLE else "middle", now)
    return Finding(check, False, "out of step with SQLite" + ("; brought up to date" if repair else ""), repaired=repair)


def _print_ids(catalog: Catalog) -> np.ndarray:
    return np.array([r[0] for r in catalog.db.execute(
        "SELECT p.id FROM copy_prints p JOIN windows c ON c.id = p.window_id JOIN videos v ON v.id = c.video_id "
        "WHERE v.status = 'ok' ORDER BY p.id")], dtype=np.int64)


def find_pairs(catalog: Catalog, videos: Sequence[int]) -> list[CopyPair]:
    """The near copies of `videos` anywhere in the index (search.copies.near_pairs), from the prints in
    SQLite and their FAISS indexes (both regions' vectors ask the whole frames'; the whole frames ask
    the middles' too: either video may be the cropped one)."""
    if not videos or not catalog.has_part(Copies.name) or not catalog.dim_of(WHOLE):
        return []
    ids_now = _print_ids(catalog)
    whole, middles = (_kept_index(catalog, space, column, ids_now)
                      for space, column in ((WHOLE, "whole"), (MIDDLES, "middle")))

    @functools.cache  # both regions' passes ask for the same videos' prints
    def prints_of(video: int) -> Prints:
        rows = catalog.db.execute("SELECT p.t, p.whole, p.middle FROM copy_prints p JOIN windows c ON c.id = p.window_id "
                                  "WHERE c.video_id = ? ORDER BY p.t", [video]).fetchall()
        return prints_from_rows(rows, DIM, NOVELTY)

    def locate(ids: list[int]) -> dict[int, tuple[int, float]]:
        found: dict[int, tuple[int, float]] = {}
        for first in range(0, len(ids), 500):
            part = ids[first : first + 500]
            found.update({pid: (vid, t) for pid, vid, t in catalog.db.execute(
                "SELECT p.id, c.video_id, p.t FROM copy_prints p JOIN windows c ON c.id = p.window_id JOIN videos v ON "
                f"v.id = c.video_id WHERE v.status = 'ok' AND p.id IN ({','.join('?' * len(part))})", part)})
        return found

    pairs = near_pairs(catalog, whole, prints_of, locate, videos)
    pairs += near_pairs(catalog, middles, prints_of, locate, videos, middles=False)
    return _distinct(pairs)


def _distinct(pairs: list[CopyPair]) -> list[CopyPair]:
    """One pair per overlapping span of two videos, the best kept (found from both sides, or by both
    regions)."""
    kept: list[CopyPair] = []
    for p in sorted(pairs, key=lambda p: (-(p.kind == "same"), -p.score)):
        key = {p.a.video_id, p.b.video_id}
        if not any({k.a.video_id, k.b.video_id} == key and _overlaps(k, p) for k in kept):
            kept.append(p)
    return kept


def _overlaps(k: CopyPair, p: CopyPair) -> bool:
    spans_k = {k.a.video_id: k.a, k.b.video_id: k.b}
    return all(min(spans_k[s.video_id].end, s.end) > max(spans_k[s.video_id].start, s.start) for s in (p.a, p.b))


def _kept_index(catalog: Catalog, space: VectorSpace, column: str, ids_now: np.ndarray) -> VectorIndex:
    """A fingerprint index kept between runs beside the catalog, brought up to date by the prints added
    and removed since (the ids it holds are saved with it), instead of being built again from millions
    of rows for the few videos a run adds; built anew when missing, unreadable, or when the library
    has grown to four times what its quantiser was trained on."""
    import faiss

    folder = catalog.home / f"{space.name}-kept"
    index: VectorIndex | None = None
    try:
        held = np.load(folder / "ids.npy")
        trained = int((folder / "trained").read_text())
        raw = faiss.read_index(str(folder / "index.faiss"))
        if raw.ntotal == len(held) and len(ids_now) <= 4 * max(trained, 1) and raw.d == DIM:
            index = VectorIndex.wrap(raw, "ivf" if "IVF" in type(raw).__name__ else "flat")
    except (OSError, ValueError, RuntimeError):
        index = None
    if index is None:
        index, held, trained = rebuild(catalog, space=space), ids_now, len(ids_now)
    else:
        gone = np.setdiff1d(held, ids_now, assume_unique=True)
        new = np.setdiff1d(ids_now, held, assume_unique=True)
        index.remove([int(i) for i in gone])
        for first in range(0, len(new), 50_000):
            part = [int(i) for i in new[first : first + 50_000]]
            rows = catalog.db.execute(f"SELECT id, {column} FROM copy_prints WHERE id IN ({','.join('?' * len(part))}) "
                                      "ORDER BY id", part).fetchall()
            index.add([r[0] for r in rows], from_blobs([r[1] for r in rows], DIM))
        held = ids_now
    folder.mkdir(exist_ok=True)
    faiss.write_index(index.index, str(folder / "index.tmp"))
    np.save(folder / "ids-tmp.npy", held)
    (folder / "trained.tmp").write_text(str(trained))
    # each file replaced whole; one left from an interrupted save fails the count check on reading
    for tmp, name in (("index.tmp", "index.faiss"), ("ids-tmp.npy", "ids.npy"), ("trained.tmp", "trained")):
        os.replace(folder / tmp, folder / name)
    return index


def stored_pairs(catalog: Catalog, videos: Sequence[int] | None = None) -> list[CopyPair]:
    """The copies an index run found, and the exact copies (same bytes), of finished videos (of these
    videos, else all)."""
    pairs = exact_pairs(catalog, videos)
    if not catalog.has_part(Copies.name):
        return pairs
    where = "" if videos is None else (f" AND (p.a IN ({','.join('?' * len(videos))}) OR "
                                       f"p.b IN ({','.join('?' * len(videos))}))")
    rows = catalog.db.execute(
        "SELECT p.a, va.path, p.a_start, p.a_end, p.b, vb.path, p.b_start, p.b_end, p.kind, p.score FROM copy_pairs p "
        "JOIN videos va ON va.id = p.a AND va.status = 'ok' JOIN videos vb ON vb.id = p.b AND vb.status = 'ok'"
        + where, [*(videos or []), *(videos or [])]).fetchall()
    exact = {frozenset((p.a.video_id, p.b.video_id)) for p in pairs}
    for a, pa, a0, a1, b, pb, b0, b1, kind, score in rows:
        if frozenset((a, b)) not in exact:  # the same bytes say it best
            pairs.append(CopyPair(Span(pa, a0, a1, a), Span(pb, b0, b1, b), kind, score))
    return pairs


KIND = Copies()
