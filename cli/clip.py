"""`vsearch clip` and `vsearch search --export`: cut moments into files that play anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vsearch.cli.app import app, fail, index_at, info, reported, safe

if TYPE_CHECKING:
    from vsearch.search.hits import Hit


@app.command()
def clip(
    file: Annotated[Path, typer.Argument(help="A video file.", show_default=False)],
    start: Annotated[str, typer.Option("--start", "-s", help="Where the clip starts: seconds or M:SS.")],
    end: Annotated[str, typer.Option("--end", "-e", help="Where the clip ends: seconds or M:SS.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The MP4 to write (default: named by "
                                             "FILE and the times, in the current folder).")] = None,
) -> None:
    """Cut a frame-accurate clip of a moment: H.264 + AAC in MP4, plays anywhere.

    Example: vsearch clip party.mp4 --start 1:02 --end 1:10 -o cake.mp4
    """
    from vsearch.search.timecode import parse_time

    try:
        first, last = parse_time(start), parse_time(end)
    except ValueError as exc:
        fail(str(exc), 2)
    with reported():
        written = index_at(None).clip(file, first, last, out)
    info(f"wrote {safe(written)}")


def export_hits(hits: list[Hit], folder: Path) -> None:
    """Export each search hit's moment into `folder`, a line per file; failures are reported and
    skipped, and the exit code says whether any failed."""
    from vsearch.video.media import export_moments

    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    for n, (src, result) in enumerate(export_moments([(h.path, h.start, h.end) for h in hits], folder), 1):
        if isinstance(result, Path):
            info(f"[{n}/{len(hits)}] {safe(result)}")
        else:
            failed += 1
            info(f"[{n}/{len(hits)}] skipped {safe(src)}: {safe(result)}")
    if failed:
        raise typer.Exit(1)
