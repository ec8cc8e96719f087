"""The `vsearch` command: the Typer app of cli/app.py with every command module registered.

Each module adds its commands to `app` when imported; a new front-end command is a new module
and one line here. They are imported inside `main`, so that a Ctrl-C while they load ends the
command quietly (exit 130) rather than with a traceback.
"""

from __future__ import annotations

from typing import Any


def load_app() -> Any:
    """The Typer app with every command registered."""
    from vsearch.cli.app import app

    # The order of these lines is the order of the commands in `vsearch --help`.
    # isort: off
    from vsearch.cli import indexing  # noqa: F401  index, train, doctor
    from vsearch.cli import queries  # noqa: F401  search, similar, show, labels, stats, classify
    from vsearch.cli import duplicates  # noqa: F401  duplicates
    from vsearch.cli import tagging  # noqa: F401  tag
    from vsearch.cli import clip  # noqa: F401  clip
    from vsearch.cli import serve  # noqa: F401  serve
    from vsearch.cli import live  # noqa: F401  live
    from vsearch.cli import bench  # noqa: F401  bench
    # isort: on
    return app


def __getattr__(name: str) -> Any:
    """`from vsearch.cli.main import app` (tests, CliRunner): the app with its commands."""
    if name == "app":
        return load_app()
    raise AttributeError(name)


def main() -> None:
    try:
        load_app()()
    except KeyboardInterrupt:  # Ctrl-C before a command took charge of it
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
