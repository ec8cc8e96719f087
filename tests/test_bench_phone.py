"""`vsearch bench --phone`'s parts, on small clips (its 4K clips stay in the bench)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from vsearch import data
from vsearch.bench.footage import Clip, decode_options, rounds
from vsearch.bench.indexing import load_config, vsearch_index
from vsearch.bench.phone import phone_clip
from vsearch.video.decode import Sampling


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phone_clip(tmp_path_factory.mktemp("phone") / "hlg.mp4", 2.0, 192, 108, fps=30, transfer="hlg",
                      bit_rate=2_000_000)


def test_phone_clips_are_10_bit_hevc_tagged_as_phones_tag_them(clip: Path) -> None:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("hevc", "yuv420p10le")
        frame = next(container.decode(stream))
    with av.open(str(clip)) as container:
        keys = [p.pts for p in container.demux(video=0) if p.is_keyframe]
    assert (frame.color_trc, frame.colorspace, frame.color_primaries) == (18, 9, 9)  # HLG, BT.2020
    assert len(keys) == 2  # a keyframe every second
    assert Clip("x", 3840, 2160, 60, 10.0, bit_rate=48_000_000).path(Path("w")).name == \
        "hevc-3840x2160-60fps-sdr-48M-10s.mp4"


def test_a_round_is_an_index_run_between_two_decodes(clip: Path) -> None:
    tiny = data.path("motion-model")
    done = rounds(clip, lambda: vsearch_index([clip], tiny, Sampling(1.0), 8, "fp32"), 1)
    assert done[0].result.windows == 2 and done[0].decode.wall > 0 and done[0].index.cpu > 0
    assert done[0].ratio == done[0].index.wall / done[0].decode.wall


def test_decoding_less_is_measured_against_every_frame(clip: Path) -> None:
    demo = load_config(data.path("motion-model"), "fp32", batch=8)
    rows = {row[0]: row for row in decode_options(clip, {"demo": demo}, lambda _: None)}
    reference, plan = rows["every frame decoded (the reference)"], rows[
        "frames nothing is decoded from left out (indexing's plan)"]
    assert reference[2:4] == plan[2:4] == ["0.00", "0"]  # the plan's frames are a full decode's
    assert plan[4:6] == ["1.00", "1.0000"]
    assert float(rows["skip_frame=nonkey (keyframes only)"][2]) > 0  # other frames than the ones wanted
