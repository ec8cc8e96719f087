"""Colours: every frame vsearch looks at or shows is SDR sRGB, whatever the stream's matrix, range,
transfer and primaries; HDR phone footage (HLG, PQ) tone-mapped so SDR white lands on white.

The test cards are encoded from sRGB by bench/phone.py, from the standards' formulas, independently
of the conversion under test (video/colour.py)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from vsearch.bench.phone import CARD_COLOURS, card_video, colour_card, patch_means
from vsearch.core.errors import DecodeError, MediaError
from vsearch.video.colour import Colour, colour_of, convert, frame_rgb
from vsearch.video.decode import Extras, FrameSpec, Sampling, read_windows
from vsearch.video.media import export_clip
from vsearch.video.thumbs import make_thumbs, thumb_path

CARD = colour_card(128, 72)
SPEC = FrameSpec(4, ("shortest_edge", 72), None)  # the model's frames at the card's own size
LIMIT = 10.0  # mean error per channel, of 255, over the whole card (edges of patches included)


def card_error(image: np.ndarray) -> np.ndarray:
    """Mean absolute error per channel against the card, at the card's size."""
    assert image.shape == CARD.shape
    return np.abs(image.astype(float) - CARD).mean(axis=(0, 1))


def decoded(path: Path, **extras: object) -> tuple[np.ndarray, Extras]:
    found = Extras(**extras)  # type: ignore[arg-type]
    frames = np.concatenate([f for _, _, f in read_windows(str(path), SPEC, Sampling(), extras=found)])
    return frames[0, 0], found


def jpeg_rgb(data: bytes | Path) -> np.ndarray:
    import io

    with av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")  # JPEG: full-range BT.601, FFmpeg's default


@pytest.fixture(scope="module", params=["hlg", "pq"])
def hdr_card(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return card_video(tmp_path_factory.mktemp("hdr") / f"{request.param}.mp4", CARD, transfer=request.param, frames=8)


def test_hdr_phone_footage_comes_back_in_the_cards_colours(hdr_card: Path, tmp_path: Path) -> None:
    with av.open(str(hdr_card)) as c:
        shown_plain = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert card_error(shown_plain).max() > 25  # what FFmpeg's plain conversion shows: washed out
    visual_spec = FrameSpec(2, ("shortest_edge", 72), None)
    model, extras = decoded(hdr_card, thumbs=True, sides={"visuals": visual_spec})
    assert card_error(model).max() <= LIMIT, card_error(model)
    patches = patch_means(model)
    assert np.abs(patches - CARD_COLOURS).max() <= 8, patches.round()  # each patch, white on white
    assert patches[0].min() >= 245  # SDR reference white shows white, not 189 as plain
    assert card_error(extras.frames["visuals"][0][0]).max() <= LIMIT  # the visual model's frames
    assert card_error(jpeg_rgb(extras.jpegs[0] or b"")).max() <= LIMIT  # the thumbnail made at index time
    # ... and one made again later from the file (an index older than thumbnails, doctor's repair)
    st = hdr_card.stat()
    assert make_thumbs(tmp_path, str(hdr_card), st.st_size, st.st_mtime, [(7, 0.0, 0.2)]) == 1
    assert card_error(jpeg_rgb(thumb_path(tmp_path, 7))).max() <= LIMIT
    # An exported clip (and the web page's transcode) is SDR BT.709 H.264 with the same colours.
    cut = export_clip(str(hdr_card), 0.0, 0.2, tmp_path / "cut.mp4")
    with av.open(str(cut)) as c:
        context = c.streams.video[0].codec_context
        assert (context.colorspace, context.color_trc, context.color_primaries) == (1, 1, 1)
        assert card_error(frame_rgb(next(c.decode(video=0)), (128, 72))).max() <= LIMIT


@pytest.mark.parametrize("matrix, full_range, tagged, size", [
    ("bt601", False, False, (128, 72)),   # untagged SD: BT.601 guessed
    ("bt709", False, False, (64, 592)),   # untagged HD (over 576 lines): BT.709 guessed
    ("bt709", False, True, (128, 72)),    # a tag beats the guess
    ("bt601", False, True, (64, 592)),
    ("bt601", True, False, (128, 72)),    # JPEG-style full range (yuvj420p)
    ("bt709", True, True, (128, 72)),     # full range, tagged BT.709 (phones)
])
def test_sdr_matrices_and_ranges(tmp_path: Path, matrix: str, full_range: bool, tagged: bool,
                                 size: tuple[int, int]) -> None:
    card = colour_card(*size)
    path = card_video(tmp_path / "card.mp4", card, matrix=matrix, full_range=full_range, tagged=tagged)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    assert colour_of(frame) == Colour(matrix, full_range)
    shown = patch_means(frame_rgb(frame, size))
    assert np.abs(shown - CARD_COLOURS).max() <= 3, shown.round()
    # The test tells the cases apart: the other matrix, or the other range, is visibly wrong (a
    # JPEG-style pixel format is full range whatever anyone says).
    other = "bt709" if matrix == "bt601" else "bt601"
    for wrong in [Colour(other, full_range)] + ([] if frame.format.name.startswith("yuvj") else
                                                [Colour(matrix, not full_range)]):
        assert np.abs(patch_means(frame_rgb(frame, size, colour=wrong)) - CARD_COLOURS).max() > 8


def test_the_numpy_conversion_agrees_with_ffmpegs_on_sdr() -> None:
    """The HDR path's own matrix and sRGB round trip, checked where FFmpeg's scaler also applies."""
    card = colour_card(128, 72)
    from vsearch.bench.phone import to_ycbcr, yuv_frame

    planes = to_ycbcr(card / 255.0, "bt709", 8, False)
    frame = yuv_frame(planes, "yuv420p").reformat(format="yuv444p")
    yuv = np.stack([np.frombuffer(p, np.uint8).reshape(72, -1)[:, :128] for p in frame.planes]).reshape(3, -1)
    ours = convert(yuv.astype(np.float32), Colour("bt709", False), 8).T.reshape(72, 128, 3)
    theirs = frame_rgb(frame, (128, 72), colour=Colour("bt709", False))
    assert np.abs(ours.astype(int) - theirs).max() <= 2


@pytest.mark.parametrize("transfer", ["hlg", "pq"])
def test_highlights_roll_off_under_white_and_stay_in_order(transfer: str) -> None:
    """A ramp of grey from black to the format's peak: brighter in, never darker out; reference
    white near 255; light above it compressed into the last levels instead of clipped."""
    colour = Colour("bt2020", False, transfer, "bt2020")
    y = np.arange(64, 941, dtype=np.float32)  # 10-bit limited luma, black to peak, neutral chroma
    grey = convert(np.stack([y, np.full_like(y, 512), np.full_like(y, 512)]), colour, 10)[0].astype(int)
    assert np.all(np.diff(grey) >= 0) and grey[0] == 0 and grey[-1] == 255
    white = {"hlg": 64 + 0.75 * 876, "pq": 64 + 0.5807 * 876}[transfer]  # 75% HLG; 203 nits in PQ
    at_white = grey[int(round(white)) - 64]
    assert 245 <= at_white < 255  # a little room left for highlights
    assert len(set(grey[int(round(white)) - 64 :])) > 3  # they keep some gradation


# -- Dolby Vision ------------------------------------------------------------------------------

def add_dovi_record(path: Path, profile: int, compatibility: int, box: bytes = b"dvvC") -> None:
    """Write a Dolby Vision configuration record into an MP4's sample entry, as phones do; the
    moov box must come after the media data (PyAV's default), so no chunk offset moves."""
    data = bytearray(path.read_bytes())
    record = bytes([1, 0, profile << 1, (6 << 3) | 0b101, compatibility << 4]) + bytes(19)
    new = (8 + len(record)).to_bytes(4, "big") + box + record
    hvcc = data.find(b"hvcC") - 4
    at = hvcc + int.from_bytes(data[hvcc : hvcc + 4], "big")  # right after the hvcC box
    # The boxes on the way to the sample entry, and where their children start after the header.
    extra = {b"moov": 0, b"trak": 0, b"mdia": 0, b"minf": 0, b"stbl": 0, b"stsd": 8, b"hev1": 78, b"hvc1": 78,
             b"dvh1": 78, b"dvhe": 78}

    def grow(start: int, end: int) -> None:  # every box around `at` grows by the record's size
        while start < end:
            size, kind = int.from_bytes(data[start : start + 4], "big"), bytes(data[start + 4 : start + 8])
            if kind in extra and start < at <= start + size:
                data[start : start + 4] = (size + len(new)).to_bytes(4, "big")
                grow(start + 8 + extra[kind], start + size)
                return
            start += max(size, 8)

    moov = data.find(b"moov") - 4
    assert moov > data.find(b"mdat"), "the record goes in after the media data only"
    grow(0, len(data))
    data[at:at] = new
    path.write_bytes(bytes(data))


def test_dolby_vision_84_plays_as_its_hlg_base_layer(tmp_path: Path) -> None:
    path = card_video(tmp_path / "iphone.mp4", CARD, transfer="hlg", codec_tag="hvc1")
    add_dovi_record(path, profile=8, compatibility=4)
    model, _ = decoded(path)
    assert card_error(model).max() <= LIMIT


@pytest.mark.parametrize("record", [True, False])
def test_dolby_vision_5_is_reported_not_shown_purple_and_green(tmp_path: Path, record: bool) -> None:
    """Profile 5 has no base layer a decoder without Dolby Vision can show: the file is skipped
    with that reason (from its record, or from a Dolby-Vision-only sample entry)."""
    path = card_video(tmp_path / "dv5.mp4", CARD, transfer="pq", codec_tag="dvh1")
    if record:
        add_dovi_record(path, profile=5, compatibility=0, box=b"dvcC")
    with pytest.raises(DecodeError, match="Dolby Vision profile 5" if record else "Dolby Vision"):
        decoded(path)
    with pytest.raises(MediaError, match="Dolby Vision"):
        export_clip(str(path), 0.0, 0.1, tmp_path / "cut.mp4")
