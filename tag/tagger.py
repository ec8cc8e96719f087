"""`vsearch tag`: the labels a person would call a video's tags, and its moments, into the XMP sidecar
next to it, where digiKam, Immich, PhotoPrism, darktable and Lightroom read them.

A label is a video's tag when it is the best label of at least `min_windows` of the video's
windows with at least `min_score` each: what the model is sure it saw, somewhere in the video, not
a label that merely sits in the top five of windows that show something else. Its moments (runs
of such windows) become markers on vsearch's own marker track. The sidecar is merged, never
replaced (tag.sidecar): everything vsearch did not write stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vsearch.core.errors import BadArgument, SidecarError
from vsearch.search.browse import video_moments
from vsearch.search.catalog import Catalog, VideoRow
from vsearch.tag.sidecar import NAMINGS, Marker, SidecarChange, Tags, sidecar_path, write_sidecar


@dataclass(frozen=True)
class TagRule:
    """Which labels become tags, and how they are written."""

    min_score: float = 0.5  # a window counts for its best label only from this score on
    min_windows: int = 1  # windows a label must be the best of
    top: int = 10  # tags per video at most, the most frequent first
    prefix: str = "vsearch"  # the hierarchical tags' root ("vsearch/eating spaghetti"); "" for none
    sidecar: str = NAMINGS[0]  # "clip.mp4.xmp" (digiKam, darktable, Immich) or "clip.xmp" (Lightroom)
    markers: bool = True  # the moments as xmpDM markers

    def check(self) -> None:
        if self.sidecar not in NAMINGS:
            raise BadArgument(f"--sidecar {self.sidecar!r}: choose {' or '.join(NAMINGS)}")
        if not 0 <= self.min_score <= 1:
            raise BadArgument("--min-score must be between 0 and 1")
        try:
            Tags((), prefix=self.prefix)
        except ValueError as exc:
            raise BadArgument(f"--prefix: {exc}") from None


@dataclass(frozen=True)
class TagResult:
    """What tagging did to one video's sidecar (or subtitle file): "created", "updated", "unchanged",
    "skipped" (nothing to write, or not vsearch's to write: `error` says why) or "failed"."""

    video: str
    sidecar: str
    action: str
    tags: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    markers: int = 0
    error: str | None = None

    def to_json(self) -> dict:
        return {"video": self.video, "sidecar": self.sidecar, "action": self.action, "tags": list(self.tags),
                "added": list(self.added), "removed": list(self.removed), "markers": self.markers,
                "error": self.error}


@dataclass
class TagReport:
    results: list[TagResult] = field(default_factory=list)
    dry_run: bool = False
    what: str = "sidecars"  # what was written: XMP sidecars, or subtitle files

    def count(self, action: str) -> int:
        return sum(r.action == action for r in self.results)

    @property
    def failed(self) -> list[TagResult]:
        return [r for r in self.results if r.action == "failed"]

    def summary_lines(self) -> list[str]:
        would = "would be " if self.dry_run else ""
        skipped = f", {self.count('skipped')} skipped" if self.count("skipped") else ""
        lines = [f"{len(self.results)} videos: {self.count('created')} {self.what} {would}created, "
                 f"{self.count('updated')} {would}updated, {self.count('unchanged')} unchanged{skipped}, "
                 f"{len(self.failed)} failed"]
        return lines + [f"skipped {r.sidecar}: {r.error}" for r in self.failed]


def tags_for(catalog: Catalog, video: VideoRow, rule: TagRule) -> Tags:
    """A video's tags and moments by the rule, from what the index holds."""
    timeline = video_moments(catalog, video.id, floor=rule.min_score, top=0)
    windows: dict[str, int] = {}
    best: dict[str, float] = {}
    for m in timeline.moments:
        windows[m.label] = windows.get(m.label, 0) + m.windows
        best[m.label] = max(best.get(m.label, 0.0), m.score)
    chosen = sorted((label for label, n in windows.items() if n >= rule.min_windows),
                    key=lambda label: (-windows[label], -best[label], label))[: rule.top]
    markers = tuple(Marker(m.label, m.start, m.end - m.start, f"vsearch score {m.score:.2f}")
                    for m in timeline.moments if m.label in chosen) if rule.markers else ()
    return Tags(tuple(chosen), markers, rule.prefix, video.fps or None)


def tag_videos(catalog: Catalog, videos: Iterable[VideoRow], rule: TagRule, dry_run: bool = False,
               on_result: Callable[[TagResult], None] | None = None) -> TagReport:
    """Write (or, with dry_run, say what would change in) the sidecar of each indexed video. A sidecar
    that cannot be read, parsed or written is reported with its reason and left untouched; the run
    goes on. The videos themselves are never opened."""
    rule.check()
    report = TagReport(dry_run=dry_run)
    for video in videos:
        path = sidecar_path(Path(video.path), rule.sidecar)
        try:
            tags = tags_for(catalog, video, rule)
            change: SidecarChange = write_sidecar(path, tags, dry_run=dry_run)
            result = TagResult(video.path, str(change.path), change.action, tags.keywords, change.added,
                               change.removed, change.markers[1])
        except SidecarError as exc:
            result = TagResult(video.path, str(path), "failed", error=str(exc))
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    return report


def indexed_videos(catalog: Catalog, roots: Sequence[Path] | None = None) -> list[VideoRow]:
    """The finished videos below `roots` (every one without), in path order."""
    return catalog.finished_videos(roots)
