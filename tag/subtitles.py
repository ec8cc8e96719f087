"""`vsearch tag --subtitles`: what is said in each video, written as a subtitle file beside it
(`clip.srt`, or `clip.vtt`), where Jellyfin, Plex, VLC and mpv find it.

Written only beside a video that has no subtitles of its own (no text track, no sidecar file) and
something said; atomically (a temporary file, then a rename); never over a file vsearch did not write:
the SHA-256 of what it wrote is recorded in the index, and a file is replaced only while it still has
it (video.subtitles.write_subtitles). The subtitles kind does not read these files back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from vsearch.core.errors import BadArgument, SidecarError
from vsearch.evidence import speech, subtitles
from vsearch.model.speech import Transcript
from vsearch.search.catalog import Catalog, VideoRow
from vsearch.tag.tagger import TagReport, TagResult
from vsearch.video.subtitles import file_digest, render_subtitles, sidecar_paths, write_subtitles

FORMATS = ("srt", "vtt")


def write_transcripts(catalog: Catalog, videos: Iterable[VideoRow], fmt: str = "srt", dry_run: bool = False,
                      on_result: Callable[[TagResult], None] | None = None) -> TagReport:
    """Write (or, with dry_run, say what would change in) the subtitle file of each indexed video from
    what was said in it. A file that cannot be written is reported with its reason; the run goes on."""
    if fmt not in FORMATS:
        raise BadArgument(f"--subtitle-format {fmt!r}: choose {' or '.join(FORMATS)}")
    ours = dict(catalog.db.execute("SELECT path, digest FROM written_subtitles").fetchall()) \
        if catalog.has_part(speech.KIND.name) else {}
    report = TagReport(dry_run=dry_run, what="subtitle files")
    for video in videos:
        result = _one(catalog, video, fmt, ours, dry_run)
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    return report


def _one(catalog: Catalog, video: VideoRow, fmt: str, ours: dict[str, str], dry_run: bool) -> TagResult:
    target = Path(video.path).with_suffix(f".{fmt}")
    segments = speech.KIND.segments(catalog, video.id)
    if not segments:
        return TagResult(video.path, str(target), "skipped", error="nothing said in it (or not transcribed)")
    theirs = [p for p in sidecar_paths(video.path) if file_digest(p) != ours.get(str(p))]
    run = catalog.runs_of(video.id).get(subtitles.KIND.name)
    if theirs or (run is not None and run[1] > 0):
        where = theirs[0].name if theirs else "its own subtitle track"
        return TagResult(video.path, str(target), "skipped", error=f"it has subtitles already ({where})")
    cues = Transcript(None, 1.0, 0.0, tuple(segments)).cues()
    text = render_subtitles(cues, fmt)
    recorded = ours.get(str(target))
    current = file_digest(target)
    if current is not None and current == hashlib.sha256(text.encode("utf-8")).hexdigest():
        return TagResult(video.path, str(target), "unchanged", markers=len(cues))
    action = "created" if current is None else "updated"
    if dry_run:
        return TagResult(video.path, str(target), action, markers=len(cues))
    try:
        digest = write_subtitles(target, cues, fmt, replaces=recorded)
    except SidecarError as exc:
        return TagResult(video.path, str(target), "failed", error=str(exc))
    with catalog.transaction():
        catalog.db.execute("INSERT OR REPLACE INTO written_subtitles (path, digest, at) VALUES (?, ?, ?)",
                           [str(target), digest, time.time()])
    ours[str(target)] = digest
    return TagResult(video.path, str(target), action, markers=len(cues))
