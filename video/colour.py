"""Colour: every decoded frame vsearch looks at or shows becomes SDR sRGB here.

A frame is Y'CbCr in the matrix, range, transfer and primaries its stream says (or that the
usual guesses give: untagged video up to 576 lines is BT.601, above it BT.709, limited range).
SDR BT.601/709 frames go straight from YUV to RGB at the size asked, in FFmpeg's scaler told the
right matrix and range (FFmpeg's default, BT.601 limited, is wrong for untagged HD and for
full-range phone and JPEG-style video). HDR frames (HLG, as iPhones record since 2020; PQ, as
HDR10 Android phones do) and wide-gamut ones are scaled in YUV to the size asked first, then, at
that small size, turned into display light, mapped from BT.2020 to BT.709 primaries and
tone-mapped so that HDR reference white (BT.2408: 203 nits, 75% HLG signal) lands on SDR white, as
a phone's gallery shows the window on an ordinary screen; only highlights above white are
compressed. Shown plain, such frames look washed out (white 255 comes back as 189).

Nothing here imports torch: this module runs inside the decode worker processes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import av
    import av.video.plane

REFERENCE_WHITE = 203.0  # nits: BT.2408's HDR reference white, where SDR white sits in HDR
HLG_PEAK = 1000.0  # nits: the nominal HLG display (BT.2100), whose system gamma is 1.2
PQ_PEAK = 1000.0  # nits: what PQ highlights are compressed from (phone HDR10 is mastered near 1000)
KNEE = 0.9  # of SDR white in linear light: below it HDR is shown as it is, above it highlights roll off

# FFmpeg's numbers for what a stream says (AVColorSpace, AVColorTransferCharacteristic, AVColorPrimaries).
_MATRICES = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
_TRANSFERS = {16: "pq", 18: "hlg"}  # every other transfer is SDR gamma
_PRIMARIES = {1: "bt709", 5: "bt709", 6: "bt709", 9: "bt2020", 11: "p3", 12: "p3"}
LIMITED, _FULL = 1, 2  # FFmpeg's numbers for limited (MPEG) and full (JPEG) range
BT709 = 1  # and for BT.709, as a matrix, primaries and transfer alike
# Luma weights (Kr, Kb) of each matrix; also the luminance weights of the primaries of the same name.
_LUMA = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
# Chromaticities (x, y) of red, green, blue and the D65 white point.
_XY = {"bt709": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
       "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
       "p3": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))}
_D65 = (0.3127, 0.3290)
_SWS_MATRIX = {"bt601": "itu601", "bt709": "itu709", "bt2020": "bt2020"}  # FFmpeg's scaler's names


@dataclass(frozen=True)
class Colour:
    """What a frame's numbers mean: the YUV matrix, full or limited range, the transfer ("sdr",
    "hlg" or "pq") and the primaries ("bt709", "bt2020" or "p3")."""

    matrix: str = "bt709"
    full_range: bool = False
    transfer: str = "sdr"
    primaries: str = "bt709"

    @property
    def hdr(self) -> bool:
        return self.transfer != "sdr"

    @property
    def plain(self) -> bool:
        """SDR in BT.709 primaries (BT.601's differ from them too little to matter): only the
        matrix and range to apply, which FFmpeg's scaler does in the same pass as the scaling."""
        return not self.hdr and self.primaries == "bt709"


def colour_of(frame: av.VideoFrame) -> Colour:
    """The frame's colour from its tags, and the usual guesses where a tag is missing: the matrix
    by height (up to 576 lines BT.601, above BT.709; BT.2020 when the transfer is HDR), limited
    range unless the pixel format is a full-range (JPEG-style) one, SDR, primaries of the matrix."""
    transfer = _TRANSFERS.get(frame.color_trc, "sdr")
    matrix = _MATRICES.get(frame.colorspace)
    if matrix is None:
        matrix = "bt2020" if transfer != "sdr" else ("bt601" if frame.height <= 576 else "bt709")
    primaries = _PRIMARIES.get(frame.color_primaries) or ("bt2020" if matrix == "bt2020" else "bt709")
    full = frame.color_range == _FULL or frame.format.name.startswith("yuvj")  # FFmpeg's JPEG formats are full
    return Colour(matrix, full, transfer, primaries)


def frame_rgb(frame: av.VideoFrame, size: tuple[int, int], rotation: int = 0,
              colour: Colour | None = None) -> np.ndarray:
    """A decoded frame as SDR sRGB, (height, width, 3) uint8 at `size` (width, height as displayed),
    turned upright if stored sideways (`rotation`, degrees counter-clockwise).

    Model inputs, visual-model frames, thumbnails, exported clips and live recognition all take
    their pixels from here, so each sees the colours a phone's gallery shows. `colour` overrides
    what the frame's tags say.
    """
    w, h = size
    turns = rotation // 90
    if turns % 2:  # stored sideways: scale the stored frame, then turn it upright
        w, h = h, w
    if frame.sw_format is not None:  # in a hardware decoder's memory: copied out as it is first
        frame = frame.reformat(format=frame.sw_format.name)
    colour = colour or colour_of(frame)
    fmt = frame.format
    if fmt.is_rgb or len(fmt.components) < 3:  # RGB or grey: no matrix to apply
        image = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    elif colour.plain:
        sws = _SWS_MATRIX[colour.matrix]
        image = frame.reformat(width=w, height=h, format="rgb24", src_colorspace=sws, dst_colorspace=sws,
                               src_color_range=_FULL if colour.full_range else LIMITED,
                               dst_color_range=_FULL).to_ndarray()
    else:
        image = _converted(frame, w, h, colour)
    return np.rot90(image, turns) if turns else image


def frame_sdr(frame: av.VideoFrame, size: tuple[int, int], rotation: int = 0) -> av.VideoFrame:
    """The frame as 8-bit limited-range yuv420p SDR at `size`, with the colours of frame_rgb, for
    encoding into a file every player shows alike; its matrix is `sdr_matrix(frame)`'s (tag the
    stream with it, BT.709 primaries and transfer, limited range).

    Upright SDR frames stay in their own matrix and are only scaled: FFmpeg's scaler goes through
    RGB when it changes the matrix, and would lose a level on the way. The others go through
    frame_rgb and come out BT.709."""
    import av

    colour = colour_of(frame)
    if _stays_yuv(frame, colour, rotation):
        sws = _SWS_MATRIX[colour.matrix]
        return frame.reformat(width=size[0], height=size[1], format="yuv420p", src_colorspace=sws, dst_colorspace=sws,
                              src_color_range=_FULL if colour.full_range else LIMITED, dst_color_range=LIMITED)
    rgb = frame_rgb(frame, size, rotation, colour)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
        format="yuv420p", dst_colorspace="itu709", dst_color_range=LIMITED)


def sdr_matrix(frame: av.VideoFrame, rotation: int = 0) -> int:
    """FFmpeg's number for the matrix frame_sdr gives this frame: BT.601 (6) or BT.709 (1)."""
    colour = colour_of(frame)
    return 6 if _stays_yuv(frame, colour, rotation) and colour.matrix == "bt601" else BT709


def _stays_yuv(frame: av.VideoFrame, colour: Colour, rotation: int) -> bool:
    return (colour.plain and not rotation and colour.matrix != "bt2020" and not frame.format.is_rgb
            and len(frame.format.components) >= 3)


def plane_array(plane: av.video.plane.VideoPlane, dtype: type[np.unsignedinteger], width: int,
                height: int) -> np.ndarray:
    """A frame's plane as (height, width) code values, without a copy (rows are padded in memory)."""
    buffer = cast(Any, plane)  # PyAV's planes are buffers; its type stubs do not say so
    return np.frombuffer(buffer, dtype).reshape(height, -1)[:, :width]


def _converted(frame: av.VideoFrame, w: int, h: int, colour: Colour) -> np.ndarray:
    """HDR or wide-gamut frames: scaled in YUV first, so that only the small frame is converted."""
    bits = _depth(frame)
    small = frame.reformat(width=w, height=h, format="yuv444p" if bits == 8 else f"yuv444p{bits}le")
    dtype: type[np.unsignedinteger] = np.uint8 if bits == 8 else np.uint16
    yuv = np.stack([plane_array(p, dtype, w, h) for p in small.planes[:3]]).reshape(3, -1)
    out = np.empty((h * w, 3), np.uint8)
    for i in range(0, h * w, _BLOCK):  # in blocks that stay in the CPU's cache: 3x faster at 720p
        out[i : i + _BLOCK] = convert(yuv[:, i : i + _BLOCK].astype(np.float32), colour, bits).T
    return out.reshape(h, w, 3)


_BLOCK = 32768  # pixels converted at a time


def _depth(frame: av.VideoFrame) -> int:
    bits = frame.format.components[0].bits
    return 8 if bits <= 8 else 10 if bits <= 10 else 12 if bits <= 12 else 16


def convert(yuv: np.ndarray, colour: Colour, bits: int) -> np.ndarray:
    """The conversion itself, on (3, n) Y'CbCr code values of `bits` bits: -> (3, n) sRGB uint8.

    Into R'G'B', into display light (1 = SDR reference white), BT.709 primaries, tone-mapped, sRGB."""
    conv = _conversion(colour, bits)
    signal = conv.to_rgb @ yuv + conv.offset  # R'G'B', 0-1 nominal
    linear = np.take(conv.linear, _lut_index(signal, len(conv.linear)))
    if colour.transfer == "hlg":
        # HLG's system gamma: brightness follows the scene's luminance (BT.2100 OOTF), then the
        # nominal 1000-nit display's light in units of reference white.
        kr, kb = _LUMA["bt2020" if colour.primaries == "bt2020" else "bt709"]
        ys = kr * linear[0] + (1 - kr - kb) * linear[1] + kb * linear[2]
        linear *= np.power(np.maximum(ys, 1e-6), 0.2) * (HLG_PEAK / REFERENCE_WHITE)
    if conv.gamut is not None:
        linear = np.maximum(conv.gamut @ linear, 0.0)
    if colour.hdr:
        _tone_map(linear, HLG_PEAK / REFERENCE_WHITE if colour.transfer == "hlg" else PQ_PEAK / REFERENCE_WHITE)
    return np.take(_SRGB_LUT, _lut_index(linear, len(_SRGB_LUT)))


def _lut_index(values: np.ndarray, size: int) -> np.ndarray:
    """Values 0-1 -> the nearest of `size` evenly spaced entries of a lookup table (in place)."""
    values *= size - 1
    values += 0.5
    np.clip(values, 0, size - 1, out=values)
    return values.astype(np.int32)


def _tone_map(linear: np.ndarray, peak: float) -> None:
    """Bring light above SDR white back under it, in place: each pixel's brightest channel is kept
    as it is up to KNEE and rolls off smoothly above it (a peak of `peak` x white lands on 1.0), the
    pixel's channels scaled together so its hue and saturation stay."""
    brightest = linear.max(axis=0)
    over = brightest > KNEE
    if not over.any():
        return
    m = brightest[over]
    room, span = 1.0 - KNEE, peak - KNEE
    above = m - KNEE
    # y / (1 + c y): slope 1 at the knee (no kink), `span` lands exactly on `room`
    rolled = KNEE + above / (1.0 + above * (1.0 / room - 1.0 / span))
    linear[:, over] *= np.minimum(rolled, 1.0) / m


@dataclass(frozen=True)
class _Conversion:
    to_rgb: np.ndarray  # (3, 3): code values -> R'G'B'
    offset: np.ndarray  # (3, 1)
    linear: np.ndarray  # LUT: R'G'B' (quantized 0-1) -> display light, 1 = SDR reference white
    gamut: np.ndarray | None  # (3, 3) linear source primaries -> BT.709, None when they are BT.709


@functools.lru_cache(maxsize=32)
def _conversion(colour: Colour, bits: int) -> _Conversion:
    kr, kb = _LUMA[colour.matrix]
    kg = 1.0 - kr - kb
    matrix = np.array([[1.0, 0.0, 2 * (1 - kr)],
                       [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
                       [1.0, 2 * (1 - kb), 0.0]])
    scale = 1 << (bits - 8)
    if colour.full_range:
        top = (1 << bits) - 1
        y_scale, c_scale = 1.0 / top, 1.0 / top
        y_zero, c_zero = 0.0, float(1 << (bits - 1))
    else:
        y_scale, c_scale = 1.0 / (219 * scale), 1.0 / (224 * scale)
        y_zero, c_zero = 16.0 * scale, 128.0 * scale
    to_rgb = matrix * np.array([y_scale, c_scale, c_scale])
    offset = -(to_rgb @ np.array([y_zero, c_zero, c_zero]))
    signal = np.linspace(0.0, 1.0, 16384)
    if colour.transfer == "pq":
        linear = _pq_to_nits(signal) / REFERENCE_WHITE
    elif colour.transfer == "hlg":
        linear = _hlg_to_scene(signal)  # scene light; the OOTF follows per pixel
    else:
        linear = _srgb_to_linear(signal)
    gamut = None if colour.primaries == "bt709" else _rgb_to_rgb(colour.primaries, "bt709")
    return _Conversion(to_rgb.astype(np.float32), offset.astype(np.float32)[:, None], linear.astype(np.float32),
                       None if gamut is None else gamut.astype(np.float32))


def _pq_to_nits(e: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 (PQ) EOTF: signal 0-1 -> nits."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.power(np.clip(e, 0, 1), 1 / m2)
    return 10000.0 * np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1)


def _hlg_to_scene(e: np.ndarray) -> np.ndarray:
    """ARIB STD-B67 (HLG) inverse OETF: signal 0-1 -> scene light 0-1."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    return np.where(e <= 0.5, np.square(e) / 3, (np.exp((e - c) / a) + b) / 12)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4))


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4) - 0.055)


def _rgb_to_xyz(primaries: str) -> np.ndarray:
    xy = np.array(_XY[primaries])
    xyz = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])  # columns: R, G, B
    wx, wy = _D65
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return xyz * np.linalg.solve(xyz, white)


def _rgb_to_rgb(source: str, target: str) -> np.ndarray:
    """Linear light in `source` primaries -> `target` primaries (same white)."""
    return np.linalg.solve(_rgb_to_xyz(target), _rgb_to_xyz(source))


# Linear light (0-1, 65536 steps: fine enough in the shadows for 8 bits) -> sRGB code values.
_SRGB_LUT = np.round(_linear_to_srgb(np.linspace(0.0, 1.0, 65536)) * 255).astype(np.uint8)


# -- Dolby Vision ----------------------------------------------------------------------------------

# Sample entries of Dolby Vision streams that carry no base layer another decoder can show.
_DOVI_ONLY_TAGS = {"dvh1", "dvhe", "dvav", "dva1", "dav1"}
_DOVI_RECORDS = (b"dvcC", b"dvvC", b"dvwC")  # the configuration record's box, by profile range


@dataclass(frozen=True)
class DolbyVision:
    """A stream's Dolby Vision configuration: the profile, and which base layer players without
    Dolby Vision see (bl_signal_compatibility_id: 0 none, 1 HDR10, 2 SDR, 4 HLG, 6 HDR10 as well)."""

    profile: int | None
    compatibility: int | None

    @property
    def showable(self) -> bool:
        """Whether the base layer decodes to a picture: profile 5 (IPTPQc2) shows purple and green."""
        return self.compatibility != 0 and not (self.compatibility is None and self.profile in (None, 5))

    def describe(self) -> str:
        profile = f"profile {self.profile}" if self.profile is not None else "a profile"
        if self.compatibility is not None and self.profile is not None:
            profile += f".{self.compatibility}"
        return f"Dolby Vision {profile}"


def dolby_vision(path: str, codec_tag: str = "") -> DolbyVision | None:
    """The Dolby Vision configuration of an MP4/MOV file (its dvcC/dvvC/dvwC record), or of a
    stream whose sample entry says Dolby Vision only (dvh1, dvhe, ...); None for other video.

    Profile 8.4 (iPhone) plays as its HLG base layer and needs nothing more; profile 5 has no base
    layer a decoder without Dolby's reshaping can show, which read_windows reports."""
    record = _dovi_record(path)
    if record is not None:
        return record
    if codec_tag.lower() in _DOVI_ONLY_TAGS:
        return DolbyVision(None, None)
    return None


def _dovi_record(path: str) -> DolbyVision | None:
    """The configuration record inside the file's `moov` box (walked box by box from the start:
    the media data in between is skipped, never read)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            at = 0
            while at + 8 <= end:
                f.seek(at)
                head = f.read(16)
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if size == 1 and len(head) == 16:
                    size = int.from_bytes(head[8:16], "big")
                elif size == 0:
                    size = end - at
                if size < 8 or not kind.isascii():
                    return None  # not an ISO media file
                if kind == b"moov":
                    f.seek(at)
                    moov = f.read(min(size, 64 << 20))
                    for name in _DOVI_RECORDS:
                        found = moov.find(name)
                        if found >= 0 and found + 9 <= len(moov):
                            b = moov[found + 4 : found + 9]  # version major, minor, then the bit fields
                            return DolbyVision(b[2] >> 1, b[4] >> 4)
                    return None
                at += size
    except OSError:
        return None
    return None
