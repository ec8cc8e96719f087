"""Subtitles: the text lines a video carries, in its subtitle streams (SubRip, ASS/SSA, mov_text,
WebVTT) and in the files beside it (`clip.srt`, `clip.en.srt`, `.vtt`, `.ass`), searched like what is
said (evidence.speech): the same full-text index, phrases and meaning, each hit quoting its line.

A cue has no word times: its words are spread evenly over its time, so a hit spans about where its
words are. Every text track is read (a film's English and French lines are both found); bitmap
tracks (PGS, VobSub) are pictures of text, reported and skipped. A sidecar that changes, appears or
goes is read again at the next index run, like a changed video; the subtitle files vsearch itself
wrote from a transcript (`vsearch tag --subtitles`) are not read back.
"""

from __future__ import annotations

import json
import os
from typing import Any

from vsearch.evidence.base import FilePart, Setup
from vsearch.evidence.speech import Speech, spread
from vsearch.search.catalog import Catalog
from vsearch.video.subtitles import Skipped, Track, file_digest, read_sidecars, read_streams, sidecar_paths

READER = "vsearch subtitles 1"  # what reads them, recorded as the kind's "model": a new reader reads them again


class Subtitles(Speech):
    name = "subtitles"
    matches = ("subtitle",)
    prefix = "subtitles"
    option = None  # always on: reading text costs next to nothing
    table = "subtitle_lines"
    quote = "subtitle"
    sets_language = False

    def __init__(self) -> None:
        super().__init__()
        self.tables = self.tables[:1]  # its lines; the written files' record is the speech kind's

    def part(self, setup: Setup) -> FilePart:
        return FilePart(self, READER, _read_subtitles)

    def store(self, catalog: Catalog, video_id: int, found: Any) -> int:
        tracks, _ = found
        self._drop(catalog, video_id)
        ours = set()
        if catalog.has_part("speech"):
            ours = {d for (d,) in catalog.db.execute("SELECT digest FROM written_subtitles")}
        rows: list[tuple[float, float, str, list, str | None]] = []
        for track in tracks:
            if track.stream is None and file_digest(track.path) in ours:
                continue  # a file vsearch wrote from the transcript: what is said is found already
            rows += [(c.start, c.end, c.text, spread(c.start, c.end, c.text), track.language) for c in track.cues]
        count = 0
        for language in {r[4] for r in rows}:
            count += self._insert(catalog, video_id, [r[:4] for r in rows if r[4] == language], language)
        return count

    def fingerprint(self, path: str) -> str | None:
        """The sidecars beside the video, by name, size and time: any change, and they are read again."""
        seen = []
        for file in sidecar_paths(path):
            try:
                st = file.stat()
            except OSError:
                continue
            seen.append([file.name, st.st_size, st.st_mtime_ns])
        return json.dumps(seen)

    def tell(self, path: str, found: Any) -> list[str]:
        skipped: list[Skipped] = found[1]
        return [f"subtitles of {path}: skipped {s.codec} ({os.path.basename(s.path) if s.stream is None else 'stream'}"
                f"{'' if s.stream is None else ' ' + str(s.stream)}): {s.reason}" for s in skipped]

    def describe(self) -> str:
        return "subtitles: text streams and files beside the video"


def _read_subtitles(path: str, alive: Any) -> tuple[list[Track], list[Skipped]]:
    """The work of the subtitles kind in a worker process: every text track of a video, streams and
    sidecars, and what was skipped."""
    tracks, skipped = read_streams(path)
    alive()
    more, passed = read_sidecars(path)
    return tracks + more, skipped + passed


KIND = Subtitles()
