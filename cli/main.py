"""The `vsearch` command: the Typer app of cli/app.py with every command module registered.

Each module adds its commands to `app` when imported; a new front-end command is a new module
and one line here.
"""

from __future__ import annotations

from vsearch.cli.app import app

# The order of these lines is the order of the commands in `vsearch --help`.
# isort: off
from vsearch.cli import indexing  # noqa: F401  index, train, doctor
from vsearch.cli import queries  # noqa: F401  search, similar, show, labels, stats, classify
from vsearch.cli import clip  # noqa: F401  clip
from vsearch.cli import serve  # noqa: F401  serve
from vsearch.cli import live  # noqa: F401  live
from vsearch.cli import bench  # noqa: F401  bench
# isort: on


def main() -> None:
    app()


if __name__ == "__main__":
    main()
