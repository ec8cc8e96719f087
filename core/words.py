"""Small helpers for the words in messages."""

from __future__ import annotations


def counted(n: int, one: str, many: str | None = None) -> str:
    """'1 video', '2 videos': a count with its noun in the right number."""
    return f"{n} {one if n == 1 else many or one + 's'}"
