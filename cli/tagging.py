"""`vsearch tag`: labels and moments into the XMP sidecars gallery apps read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vsearch.cli.app import Home, Json, app, index_at, info, print_json, reported, safe
from vsearch.core.words import counted

if TYPE_CHECKING:
    from vsearch.tag.tagger import TagResult


@app.command()
def tag(
    paths: Annotated[list[Path] | None, typer.Argument(help="Indexed folders or videos (default: every indexed "
                                                       "video).", show_default=False)] = None,
    home: Home = None,
    min_score: Annotated[float, typer.Option("--min-score", min=0.0, max=1.0, help="A window counts for its best "
                                             "label from this score on.")] = 0.5,
    min_windows: Annotated[int, typer.Option("--min-windows", min=1, help="Windows a label must be the best of "
                                             "to be a tag.")] = 1,
    top: Annotated[int, typer.Option("--top", min=1, help="Tags per video at most, the most frequent first.")] = 10,
    prefix: Annotated[str, typer.Option("--prefix", help="Root of the hierarchical tags (vsearch/eating spaghetti); "
                                        "'' for none.")] = "vsearch",
    sidecar: Annotated[str, typer.Option("--sidecar", metavar="clip.mp4.xmp|clip.xmp", help="Sidecar name: "
                                         "clip.mp4.xmp (digiKam, darktable, Immich) or clip.xmp (Lightroom, "
                                         "Capture One).")] = "clip.mp4.xmp",
    markers: Annotated[bool, typer.Option("--markers/--no-markers", help="Also the moments, as XMP markers.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; write nothing.")] = False,
    subtitles: Annotated[bool, typer.Option("--subtitles", help="Instead of XMP sidecars: what is said in each "
                                            "video, as a subtitle file beside it (clip.srt) for Jellyfin, Plex, "
                                            "VLC and mpv; only where it has no subtitles, never over a file vsearch "
                                            "did not write.")] = False,
    subtitle_format: Annotated[str, typer.Option("--subtitle-format", metavar="srt|vtt",
                                                 help="With --subtitles: SubRip or WebVTT.")] = "srt",
    as_json: Json = False,
) -> None:
    """Write each indexed video's tags and moments into its XMP sidecar, for gallery apps.

    Merges into a sidecar that is there (only vsearch's own tags are replaced); never touches the video.
    Example: vsearch tag ~/Videos --min-score 0.6 --dry-run   (--subtitles: transcripts out as clip.srt)
    """
    def line(r: TagResult) -> None:
        if as_json:
            return
        if r.action in ("failed", "skipped"):
            info(f"skipped {safe(r.sidecar)}: {safe(r.error)}")
        elif subtitles:
            typer.echo(f"{r.action if not dry_run else 'would be ' + r.action}  {safe(r.sidecar)}  {counted(r.markers, 'line')}")
        elif r.action != "unchanged":
            change = ", ".join([f"+{t}" for t in r.added] + [f"-{t}" for t in r.removed]) or "markers"
            typer.echo(f"{r.action if not dry_run else 'would be ' + r.action}  {safe(r.sidecar)}  {safe(change)}")

    with reported():
        report = index_at(home).tag(paths, dry_run=dry_run, subtitles=subtitle_format if subtitles else None,
                                    on_result=line, min_score=min_score,
                                    min_windows=min_windows, top=top, prefix=prefix, sidecar=sidecar, markers=markers)
    if as_json:
        print_json([r.to_json() for r in report.results])
    else:
        info(safe(report.summary_lines()[0]))
