"""`vsearch duplicates`: videos that share content, with the spans that match in both."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vsearch.cli.app import Home, Json, app, index_at, info, print_json, reported, safe
from vsearch.core.words import counted
from vsearch.search.timecode import seconds_label


@app.command()
def duplicates(
    paths: Annotated[list[Path] | None, typer.Argument(help="Only videos below these folders (default: all).",
                                                       show_default=False)] = None,
    home: Home = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Match every video again, not only what index runs "
                                          "matched as they went.")] = False,
    as_json: Json = False,
) -> None:
    """Copies, trims and re-encodes across the library: each original with its copies, the spans that match.

    Exact copies are found by their bytes; near ones (re-encoded, scaled, cropped, trimmed, with an
    intro, pieces of a montage) by a fingerprint of every second. Nothing is ever deleted.
    Example: vsearch duplicates ~/Videos --json
    """
    with reported():
        found = index_at(home).duplicates(paths, refresh=refresh)
    for note in found.notes:
        info(f"note: {safe(note)}")
    if as_json:
        print_json(found.to_json())
        return
    if not found.pairs:
        info("no copies found")
        return
    for group in found.groups:
        typer.echo(f"{safe(group.original.path)}  ({_size(group.size)}; copies take {_size(group.savings)})")
        for pair, size in group.copies:
            mine, other = (pair.a, pair.b) if pair.a.video_id != group.original.video_id else (pair.b, pair.a)
            typer.echo(f"  {pair.kind:8s} {safe(mine.path)}  {_span(mine)} = {_span(other)} of "
                       f"{safe(Path(other.path).name)}  ({_size(size)}, {pair.score:.2f})")
    parts = [p for p in found.pairs if p.kind == "part"]
    if parts:
        typer.echo(f"{counted(len(parts), 'shared piece')} (neither a copy of the other):")
        for p in parts:
            typer.echo(f"  {safe(p.a.path)} {_span(p.a)} = {safe(p.b.path)} {_span(p.b)}  ({p.score:.2f})")


def _span(span: object) -> str:
    return f"{seconds_label(span.start)}-{seconds_label(span.end)}"  # type: ignore[attr-defined]


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
