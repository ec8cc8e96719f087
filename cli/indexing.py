"""Commands that write: index, train, doctor."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vsearch.cli.app import (
    Device,
    Home,
    IndexProgress,
    Model,
    Precision,
    Quiet,
    Runtime,
    app,
    fail,
    index_at,
    info,
    reported,
    safe,
    train_bar,
)
from vsearch.core.words import counted
from vsearch.video.files import DEFAULT_EXCLUDES

if TYPE_CHECKING:
    from vsearch.indexer.pipeline import IndexReport
    from vsearch.model.train import EpochReport


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.", show_default=False)],
    home: Home = None,
    model: Model = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, help="Windows per model batch (default: the fastest, measured once per machine).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Decode processes (default: by device).")] = None,
    device: Device = "auto",
    precision: Precision = "auto",
    runtime: Runtime = "auto",
    window: Annotated[float, typer.Option("--window", min=0.1, help="Seconds per window (what one set of labels "
                                          "and one vector describe).")] = 4.0,
    max_windows: Annotated[int, typer.Option("--max-windows", min=1, help="Windows per video at most.")] = 150,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds a decode step may take.")] = 120.0,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try files that failed before again.")] = False,
    decoder: Annotated[str, typer.Option("--decoder", help="auto (a hardware decoder where this machine has one that "
                                         "gives software's frames faster, measured once; else PyAV, then decord), "
                                         "pyav, decord, cuda (NVIDIA NVDEC) or qsv (Intel Quick Sync); a hardware "
                                         "decoder that fails is left for software, with a line saying why. "
                                         "E.g. --decoder cuda")] = "auto",
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", metavar="PATTERN", help="Also leave out folders or files matching this pattern (name or path, * and ?); "
        "repeatable. Always left out: hidden ones, " + ", ".join(DEFAULT_EXCLUDES) + ".")] = None,
    quiet: Quiet = False,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Decode and run the model on Ray (pip install 'vsearch[ray]'). Alone it starts a local "
                      "Ray; followed by 'auto' it joins this machine's cluster, by ray://host:port that one. "
                      "--workers then caps the decode tasks.")] = False,
    gpus_per_actor: Annotated[float, typer.Option("--gpus-per-actor", min=0.0,
                                                  help="With --ray: GPUs per model actor.")] = 1.0,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: index new and changed files once they "
                                        "stop growing, forget deleted ones.")] = False,
    rescan: Annotated[float | None, typer.Option("--rescan", min=1, help="With --watch: rescan every SECONDS "
                                                 "instead of using file events (network shares).")] = None,
    tag: Annotated[bool, typer.Option("--tag", help="Also write the XMP sidecars of what this run indexed (as "
                                      "`vsearch tag` does, with its defaults); with --watch, as files arrive.")] = False,
    text_model: Annotated[str | None, typer.Option(
        "--text-model", metavar="NAME|FOLDER|none",
        help="The image-text model that lets you search by any description (CLIP, SigLIP, SigLIP 2, X-CLIP; a hub "
             "id or a folder). Default: the index's own, else google/siglip2-base-patch16-224 where it can be had "
             "(downloaded once, about 1.5 GB). 'none' turns it off. Changing it re-embeds every window without "
             "running the video model again.")] = None,
    speech_model: Annotated[str | None, typer.Option(
        "--speech-model", metavar="NAME|FOLDER|none",
        help="The speech model that lets you search what is said: a Whisper model run by faster-whisper (tiny, "
             "base, small, ..., large-v3, or a local CTranslate2 folder). Default: the index's own, else base where "
             "it can be had (downloaded once, about 150 MB). 'none' turns it off. Changing it transcribes every "
             "video again without running the video models.")] = None,
) -> None:
    """Index videos: decode, classify and embed every window; re-runs only do what changed.

    Example: vsearch index ~/Videos --exclude 'raw'  (--watch to stay current; on a cluster: --ray auto)
    """
    from vsearch.library import IndexOptions
    from vsearch.tag.tagger import TagRule

    address, paths = _ray_address(paths) if ray else (None, paths)
    options = IndexOptions(model=model, device=device, runtime=runtime, precision=precision, batch_size=batch_size,
                           workers=workers, window=window, max_windows=max_windows, timeout=timeout,
                           retry_failed=retry_failed, decoder=decoder, exclude=tuple(exclude or ()),
                           text_model=text_model, speech_model=speech_model)
    stop = {"asked": False}

    def on_sigint(signum: int, frame: object) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        info("\nstopping after the batch in flight (Ctrl-C again to abort now)...")

    idx = index_at(home)
    with reported(), IndexProgress(quiet or watch) as on_progress:
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            if watch:
                how = f"rescanning every {rescan:g}s" if rescan else "on file events (or a rescan every 30s without watchfiles)"
                info(f"watching {counted(len(paths), 'folder')}, {how}; Ctrl-C stops")
            rule = TagRule() if tag else None
            report = idx.index(paths, options, ray=(address or True) if ray else False, gpus_per_actor=gpus_per_actor, tag=rule,
                               watch=watch, rescan=rescan, on_progress=on_progress, on_report=_watch_line,
                               should_stop=lambda: stop["asked"], log=info)
        except KeyboardInterrupt:
            fail("aborted; the next `vsearch index` picks up where this one stopped", 130)
        finally:
            signal.signal(signal.SIGINT, previous)
    if watch:
        info("stopped watching; the index is saved")
        return
    for line in report.summary_lines():
        info(safe(line))
    if report.interrupted:
        raise typer.Exit(130)


def _watch_line(r: IndexReport) -> None:
    """One line per batch of changes a watch run indexed."""
    parts = [f"{n} {what}" for n, what in ((r.indexed, "indexed"), (r.moved, "moved"), (r.copied, "copied"),
                                            (r.removed, "removed"), (len(r.failed), "failed")) if n]
    if parts:
        info(", ".join(parts) + (f" ({counted(r.windows, 'window')})" if r.windows else ""))
    for path, reason in r.failed:
        info(f"skipped {safe(path)}: {safe(reason)}")


def _ray_address(paths: list[Path]) -> tuple[str | None, list[Path]]:
    """`--ray auto` and `--ray ray://host:port`: typer options cannot take an optional value, so
    the address arrives among the paths (a folder named auto is ./auto). Path() folds ray:// to ray:/."""
    addresses = [p for p in paths if str(p) == "auto" or str(p).startswith("ray:/")]
    if len(addresses) > 1:
        fail("--ray takes one address", 2)
    rest = [p for p in paths if p not in addresses]
    if not addresses:
        return None, rest
    text = str(addresses[0])
    return ("ray://" + text[len("ray:/"):] if text.startswith("ray:/") else text), rest


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
    hflip: Annotated[bool, typer.Option("--hflip", help="Flip windows left-right (not for direction labels).")] = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Fine-tune VideoMAE on your own labels: DATA/<label>/*.mp4, `_` in folder names reads as a space.

    Example: vsearch train ./labeled --out ./my-model --epochs 10
    """
    from vsearch.model.checkpoint import DEFAULT_MODEL
    from vsearch.model.train import TrainSettings
    from vsearch.model.train import train as run_training

    if not data.is_dir():
        fail(f"{data}: no such folder", 2)
    settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, val_fraction=val_fraction, seed=seed,
                             hflip=hflip, device=device)
    info(f"base model: {base or DEFAULT_MODEL}")
    bar = None if quiet or not sys.stderr.isatty() else train_bar()

    def on_epoch(e: EpochReport) -> None:
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
        with reported():
            report = run_training(data, out, base, settings, on_epoch=on_epoch, on_step=on_step)
    finally:
        if bar:
            bar.stop()
    for path, reason in report.skipped:
        info(f"skipped {safe(path)}: {safe(reason)}")
    info(f"{counted(len(report.labels), 'label')}, {counted(report.train_videos, 'training video')} and "
         f"{counted(report.val_videos, 'validation video')}")
    info(f"saved epoch {report.best_epoch} (validation accuracy {report.best_accuracy:.3f}) to {safe(out)}")


@app.command()
def doctor(
    home: Home = None,
    check_only: Annotated[bool, typer.Option("--check-only", help="Report, change nothing.")] = False,
) -> None:
    """Check the whole index (SQLite, FAISS, files on disk) and repair what can be repaired.

    Example: vsearch doctor
    """
    with reported():
        report = index_at(home).doctor(repair=not check_only)
    for f in report.findings:
        mark = "ok" if f.ok else ("repaired" if f.repaired else "PROBLEM")
        typer.echo(f"{mark:>9}  {f.check}: {safe(f.detail)}")
    if report.unrepaired:
        if report.sqlite_damaged:
            info("the SQLite file is damaged; it was left untouched. Move it aside and index again.")
        raise typer.Exit(1)
    typer.echo("index is clean" if report.clean else "index repaired")
