"""The Typer app every command module registers on, the options they share, and the helpers
that turn library results and errors into output: one clear line on stderr, exit code, JSON.

Heavy modules (torch, transformers, faiss) are imported inside the commands that need them, so
`vsearch --help` and plain keyword search start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from vsearch.search.catalog import Catalog, CatalogError, counted, default_home

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from vsearch.indexer.pipeline import Progress as IndexState
    from vsearch.model.encoder import VideoEncoder
    from vsearch.video.decode import FrameSpec

app = typer.Typer(
    help="Local semantic video search: index a folder, then find moments by keyword or by example.\n\n"
    "Example: vsearch index ~/Videos && vsearch search 'eating spaghetti'",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

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
Precision = Annotated[str, typer.Option("--precision", help="auto (measured on this machine), fp32, bf16, fp16 or int8 (CPU).")]
Runtime = Annotated[str, typer.Option("--runtime", help="auto (measured on this machine), torch, or openvino "
                                      "(CPU).")]
Limit = Annotated[int, typer.Option("--limit", "-n", min=1, help="How many hits.")]
Under = Annotated[str | None, typer.Option("--under", help="Only videos below this folder.")]
MinScore = Annotated[float, typer.Option("--min-score", min=0.0, help="Drop hits scoring below this.")]
MinDuration = Annotated[float | None, typer.Option("--min-duration", help="Only videos at least this long (s).")]
MaxDuration = Annotated[float | None, typer.Option("--max-duration", help="Only videos at most this long (s).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"vsearch: {safe(message)}", err=True)
    raise typer.Exit(code)


def safe(text: object) -> str:
    """Escape control characters so a crafted file name cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def info(message: str) -> None:
    typer.echo(message, err=True)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def open_catalog(home: Path | None, create: bool = False) -> Catalog:
    try:
        return Catalog(home or default_home(), create=create)
    except CatalogError as exc:
        fail(str(exc))


def load_model(model: str | None, device: str, precision: str, runtime: str = "auto",
               home: Path | None = None) -> VideoEncoder:
    """The encoder in the configuration `vsearch index` measured fastest here (if it did), announced
    on stderr; a model that cannot load ends the command with its reason."""
    from vsearch.model.calibrate import reuse
    from vsearch.model.encoder import ModelError, load_encoder

    home = home or default_home()
    try:
        encoder = load_encoder(model, device=device, precision=precision, runtime=runtime, cache_dir=home)
        choice = reuse(encoder, home)
    except ModelError as exc:
        fail(str(exc))
    info(f"model: {encoder.describe()}" + (" (measured fastest here by vsearch index)" if choice else ""))
    return encoder


def load_tuned_model(model: str | None, device: str, precision: str, runtime: str, home: Path,
                     batch_size: int | None, clip_source: Callable[[FrameSpec], np.ndarray] | None = None) -> VideoEncoder:
    """The model in the runtime, precision and batch size that run fastest here (measured once, then
    cached); `clip_source` gives the user's own clips to check and quantize on."""
    from vsearch.model import openvino
    from vsearch.model.calibrate import tune
    from vsearch.model.encoder import ModelError, load_encoder

    def measuring() -> None:
        info("measuring the fastest runtime, precision and batch size here (once per machine and model)...")
        if runtime == "auto" and not openvino.available():
            info(f"  (the OpenVINO runtime is often faster on CPUs: {openvino.HINT})")
        elif runtime == "auto" and precision in ("auto", "int8") and not openvino.can_quantize():
            info(f"  (OpenVINO int8 is often the fastest on CPUs: {openvino.INT8_HINT})")

    try:
        encoder = load_encoder(model, device=device, precision=precision, runtime=runtime, cache_dir=home,
                               clip_source=clip_source)
        choice = tune(encoder, home, batch_size, on_measure=measuring)
    except ModelError as exc:
        fail(str(exc))
    info(f"model: {encoder.name} on {encoder.device}, {choice.describe()}")
    return encoder


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


class IndexProgress:
    """Progress on stderr: a bar with count and ETA on a terminal, a line per 10% otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.next_line = 0.1

    def __enter__(self) -> Callable[[IndexState], None]:
        if self.quiet:
            return lambda p: None
        if not self.tty:
            return self._lines
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[clips]} clips"), TimeRemainingColumn(),
                            TextColumn("{task.fields[name]}"), transient=True, console=stderr_console())
        self.bar.start()
        return self._update

    def _update(self, p: IndexState) -> None:
        assert self.bar is not None  # handed out only once the bar runs
        if self.task is None:
            self.task = self.bar.add_task("index", total=p.files_total, clips=0, name="")
        self.bar.update(self.task, completed=p.files_done, clips=p.clips, name=safe(Path(p.path).name)[:40])

    def _lines(self, p: IndexState) -> None:
        if p.files_done >= self.next_line * p.files_total:
            info(f"indexed {p.files_done}/{counted(p.files_total, 'file')}, {counted(p.clips, 'clip')}")
            while self.next_line * p.files_total <= p.files_done:
                self.next_line += 0.1

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def train_bar() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                    TextColumn("val acc {task.fields[accuracy]}"), TimeRemainingColumn(), console=stderr_console(),
                    transient=True)
