"""Moments as people write them: '1:30' in, '1:30.0' out. Shared by every front end."""

from __future__ import annotations

import math


def seconds_label(seconds: float) -> str:
    """1:05.0 style, for showing moments."""
    minutes, secs = divmod(max(seconds, 0.0), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}"
    return f"{int(minutes)}:{secs:04.1f}"


def parse_time(text: str) -> float:
    """'90', '1:30', '1:02:03.5' -> seconds."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"not a time: {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use seconds or M:SS)") from None
    total = 0.0
    for v in values:
        total = total * 60 + v
    if math.isnan(total) or total < 0:
        raise ValueError(f"not a time: {text!r}")
    return total
