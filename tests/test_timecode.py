from __future__ import annotations

import pytest

from vsearch.search.timecode import parse_time, seconds_label


@pytest.mark.parametrize("text, seconds", [("90", 90), ("1:30", 90), ("1:02:03.5", 3723.5), ("0.5", 0.5)])
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "-5", "nan"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("seconds, label", [(0, "0:00.0"), (65.04, "1:05.0"), (3723.5, "1:02:03.5"), (-1, "0:00.0")])
def test_seconds_label(seconds: float, label: str) -> None:
    assert seconds_label(seconds) == label


def test_a_label_reads_back_as_its_moment() -> None:
    assert parse_time(seconds_label(4321.5)) == 4321.5
