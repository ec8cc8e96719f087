"""The Typer app every command module registers on, the options they share, and the helpers
that turn library results and errors into output: one clear line on stderr, exit code, JSON.

Heavy modules (torch, transformers, faiss) are imported inside the commands that need them, so
`vsearch --help` and plain keyword search start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from vsearch.core.errors import BadArgument, VsearchError
from vsearch.core.words import counted
from vsearch.model.runtimes import RUNTIMES

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from vsearch.indexer.pipeline import Progress as IndexState
    from vsearch.library import Index

RUNTIME_NAMES = ", ".join(r.name for r in RUNTIMES)  # the registry, so a new runtime shows up by itself

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
Runtime = Annotated[str, typer.Option("--runtime", help="auto (measured on this machine) or one of: " + RUNTIME_NAMES + ".")]
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


@contextmanager
def reported() -> Iterator[None]:
    """Run a library call: its errors become one line on stderr and an exit code by their class,
    never by their text: 2 for a malformed argument (as for any usage error), 1 for the rest."""
    try:
        yield
    except BadArgument as exc:
        fail(str(exc), 2)
    except VsearchError as exc:
        fail(str(exc))


def index_at(home: Path | None) -> Index:
    from vsearch.library import Index

    return Index(home)


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
                            TextColumn("{task.fields[windows]} windows"), TimeRemainingColumn(),
                            TextColumn("{task.fields[name]}"), transient=True, console=stderr_console())
        self.bar.start()
        return self._update

    def _update(self, p: IndexState) -> None:
        assert self.bar is not None  # handed out only once the bar runs
        if self.task is None:
            self.task = self.bar.add_task("index", total=p.files_total, windows=0, name="")
        self.bar.update(self.task, completed=p.files_done, windows=p.windows, name=safe(Path(p.path).name)[:40])

    def _lines(self, p: IndexState) -> None:
        if p.files_done >= self.next_line * p.files_total:
            info(f"indexed {p.files_done}/{counted(p.files_total, 'file')}, {counted(p.windows, 'window')}")
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
