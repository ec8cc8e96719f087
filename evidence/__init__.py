"""The kinds of evidence a moment carries, in the order a search lists them when their scores tie.

Adding a kind is one module with a `Kind` and one line here; a kind from outside vsearch (a plugin,
a test) calls `register`. See vsearch.evidence.base for what a kind says, and docs/architecture.md
for a walk-through.
"""

from __future__ import annotations

from vsearch.evidence import copies, labels, speech, subtitles, visuals
from vsearch.evidence.base import Kind

KINDS: list[Kind] = [
    labels.KIND,
    visuals.KIND,
    speech.KIND,
    subtitles.KIND,
    copies.KIND,
]


def kinds() -> list[Kind]:
    return list(KINDS)


def register(kind: Kind) -> None:
    """Add a kind of evidence: index runs, searches, doctor and the web page take it from now on."""
    if any(k.name == kind.name for k in KINDS):
        raise ValueError(f"a kind of evidence named {kind.name!r} is registered already")
    KINDS.append(kind)


def unregister(name: str) -> None:
    KINDS[:] = [k for k in KINDS if k.name != name]
