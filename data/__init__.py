"""Files vsearch reads at run time, shipped inside the wheel: the Kinetics-400 label names, the
demo model, and the spoken sample the speech calibration times (espeak-ng, 10 s, Opus, 32 KB).
Reach them through `path()`, never through the checkout's layout."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """A shipped data file or folder, e.g. path("kinetics400.txt") or path("motion-model")."""
    found = Path(str(files(__name__) / name))
    if not found.exists():
        raise FileNotFoundError(f"vsearch data file {name!r} is missing from this install")
    return found
