"""Commands that read: search, similar, show, labels, stats, and classify (a file, no index)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vsearch.cli.app import (
    Device,
    Home,
    Json,
    Limit,
    MaxDuration,
    MinDuration,
    MinScore,
    Model,
    Precision,
    Runtime,
    Under,
    app,
    fail,
    index_at,
    info,
    print_json,
    reported,
    safe,
)
from vsearch.core.words import counted
from vsearch.search.hits import SEARCH_MIN_SCORE
from vsearch.search.timecode import parse_time, seconds_label

if TYPE_CHECKING:
    from vsearch.search.hits import Hit

CollapseCopies = Annotated[bool, typer.Option("--collapse-copies", help="One hit for one moment of copies of a video "
                                              "(the copies named with it; see vsearch duplicates).")]


def print_hits(hits: list[Hit], as_json: bool, what: str) -> None:
    if as_json:
        print_json([h.to_json() for h in hits])
        return
    if not hits:
        info(f"no {what}")
        return
    for h in hits:
        why = "; ".join(h.reasons) if h.match != "similar" else ""
        copies = f"  (+{counted(len(h.details['copies']), 'copy', 'copies')})" if h.details.get("copies") else ""
        typer.echo(f"{h.score:.3f}  {seconds_label(h.start)}-{seconds_label(h.end)}  {safe(h.path)}"
                   f"{'  ' + safe(why) if why else ''}{copies}")


@app.command("search")
def search_cmd(
    query: Annotated[str, typer.Argument(help="Words to look for: a label, a description, words said in the "
                                              "video or its subtitles, part of a file name.")],
    home: Home = None,
    limit: Limit = 20,
    under: Under = None,
    min_score: MinScore = SEARCH_MIN_SCORE,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    language: Annotated[str | None, typer.Option("--language", metavar="CODE", help="Only videos in which this "
                                                 "language is spoken, as the speech model heard it (en, de, ...).")] = None,
    collapse_copies: CollapseCopies = False,
    as_json: Json = False,
    export: Annotated[Path | None, typer.Option("--export", help="Also cut each hit into a clip in this folder.")] = None,
) -> None:
    """Find moments by what happens in them, what they show, what is said in them or their file names, best first.

    Example: vsearch search "happy birthday" --limit 5 --export ./clips
    """
    with reported():
        result = index_at(home).search(query, limit=limit, under=under, min_score=min_score, min_duration=min_duration,
                                       max_duration=max_duration, language=language, collapse_copies=collapse_copies)
    for note in result.notes:
        info(f"note: {note}")
    print_hits(result.hits, as_json, "matches")
    if export is not None:
        from vsearch.cli.clip import export_hits

        export_hits(result.hits, export)


@app.command()
def transcript(
    file: Annotated[Path, typer.Argument(help="An indexed video.", show_default=False)],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """What is said in one video, and its subtitles, line by line with times.

    Example: vsearch transcript ~/Videos/birthday.mp4
    """
    with reported():
        lines = index_at(home).transcript(file)
    if as_json:
        print_json([line.to_json() for line in lines])
        return
    if not lines:
        info("nothing said or subtitled in it (or not transcribed: see `vsearch stats`)")
    spoken = next((line.language for line in lines if line.source == "speech" and line.language), None)
    if spoken:
        info(f"spoken: {spoken}")
    for line in lines:
        tag = "" if line.source == "speech" else f" [{line.source}{', ' + line.language if line.language else ''}]"
        typer.echo(f"{seconds_label(line.start)}-{seconds_label(line.end)}{tag}  {safe(line.text)}")


@app.command()
def similar(
    file: Annotated[Path, typer.Argument(help="A video, indexed or not.", show_default=False)],
    at: Annotated[str | None, typer.Option("--at", help="A moment of FILE: seconds or M:SS.")] = None,
    by: Annotated[str | None, typer.Option("--by", metavar="action|visuals|both", help="Compare what happens, what "
                                           "is seen, or both (default: both where the index has a text model, "
                                           "else action).")] = None,
    home: Home = None,
    limit: Limit = 10,
    under: Under = None,
    min_score: MinScore = 0.0,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    device: Device = "auto",
    precision: Precision = "auto",
    runtime: Runtime = "auto",
    collapse_copies: CollapseCopies = False,
    as_json: Json = False,
) -> None:
    """Find videos with moments like FILE (or like the moment --at of it), one hit per video.

    Example: vsearch similar ~/Videos/beach.mp4 --at 1:30
    """
    try:
        seconds = parse_time(at) if at is not None else None
    except ValueError as exc:
        fail(str(exc), 2)
    with reported():
        hits = index_at(home).similar(file, at=seconds, by=by, limit=limit, under=under, min_score=min_score,
                                      min_duration=min_duration, max_duration=max_duration, device=device,
                                      runtime=runtime, precision=precision, collapse_copies=collapse_copies, log=info)
    print_hits(hits, as_json, "similar videos")


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="An indexed video.", show_default=False)],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """The labels of one video, moment by moment.

    Example: vsearch show ~/Videos/party.mp4
    """
    with reported():
        v = index_at(home).show(file)
    if as_json:
        print_json(v.to_json())
        return
    typer.echo(f"{safe(v.path)}  ({v.status}{': ' + safe(v.error) if v.error else ''})")
    if v.labels:
        typer.echo("video: " + ", ".join(f"{n} {s:.2f}" for n, s in v.labels))
    for c in v.windows:
        labels = ", ".join(f"{x['label']} {x['score']:.2f}" for x in c["labels"])
        typer.echo(f"  {seconds_label(c['start'])}-{seconds_label(c['end'])}  {labels}")


@app.command()
def labels(
    query: Annotated[str | None, typer.Argument(help="Only labels matching this text.")] = None,
    home: Home = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    """The tags your videos carry with video counts; with QUERY, the vocabulary ranked by meaning.

    Example: vsearch labels "pasta"
    """
    with reported():
        rows = index_at(home).labels(query, limit)
    if query:
        from vsearch.evidence.labels import NO_SENTENCE_MODEL
        from vsearch.search.sentences import find_model_dir

        if find_model_dir() is None:
            info(f"note: {NO_SENTENCE_MODEL}")
    if as_json:
        print_json(rows)
        return
    if not rows:
        info("no labels" + (f" matching {query!r}" if query else "; the index is empty"))
    for r in rows:
        similarity = f"  ({r['similarity']:.2f})" if "similarity" in r else ""
        typer.echo(f"{r['videos']:6d}  {r['label']}{similarity}")


@app.command()
def stats(home: Home = None, as_json: Json = False) -> None:
    """What is in the index, and which files failed and why.

    Example: vsearch stats --json
    """
    with reported():
        data = index_at(home).stats()
    if as_json:
        print_json(data)
        return
    for key in ("home", "model", "precision", "videos", "windows", "hours", "labels", "failed"):
        typer.echo(f"{key:>12}: {safe(data[key])}")
    # each kind of evidence the index holds: what made it, and how far it got (a kind that is off is not listed)
    for n, (kind, run) in enumerate(data["evidence"].items()):
        failed = f", {run['failed']} failed" if run["failed"] else ""
        typer.echo(f"{'evidence:' if n == 0 else '':>13} {kind:<10} {counted(run['videos'], 'video')}, "
                   f"{counted(run['found'], run['unit'])}{failed}  ({safe(str(run['model']))})")
    for failure in data["failures"]:
        typer.echo(f"  failed {safe(failure['path'])}: {safe(failure['reason'])}")


@app.command()
def classify(
    file: Annotated[Path, typer.Argument(help="A video file.", show_default=False)],
    model: Model = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many labels.")] = 5,
    device: Device = "auto",
    precision: Precision = "auto",
    runtime: Runtime = "auto",
    as_json: Json = False,
) -> None:
    """Top labels of one video, without an index (probabilities averaged over its windows).

    Example: vsearch classify clip.mp4 --top 3
    """
    from vsearch.library import classify as run_classify

    with reported():
        result = run_classify(file, model=model, top=top, device=device, runtime=runtime, precision=precision, log=info)
    if as_json:
        print_json(result.to_json())
        return
    for item in result.to_json()["labels"]:
        typer.echo(f"{item['score']:.3f}  {item['label']}")
