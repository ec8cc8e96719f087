"""Phone-like footage with known colours, for tests and the bench.

Test cards: a known sRGB image encoded the way cameras tag their streams: SDR in BT.601 or
BT.709, limited or full range, tagged or not; and HDR the way phones record it, 10-bit BT.2020
HEVC in HLG (iPhone) or PQ (HDR10 Android phones), with SDR white placed at the BT.2408 reference
white (203 nits; 75% of the HLG signal). The encode from sRGB to each format is done here, in
numpy, from the standards' own formulas and constants, independently of vsearch's conversion
(video/colour.py), so a test that decodes the card checks that conversion against the standards.

`phone_clip` makes 4K (or any size) 10-bit HEVC at a phone's bit rate, for the bench.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from vsearch.video.colour import plane_array

if TYPE_CHECKING:
    import av

# The card's patches, sRGB: white, red, green, blue, yellow, mid grey, dark grey, pink.
CARD_COLOURS = ((255, 255, 255), (230, 26, 26), (26, 153, 51), (26, 51, 230),
                (230, 200, 40), (128, 128, 128), (60, 60, 60), (200, 120, 180))
REFERENCE_WHITE = 203.0  # nits (BT.2408)
# BT.2087: linear BT.709 RGB -> linear BT.2020 RGB.
BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
LUMA = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}  # (Kr, Kb)


def colour_card(width: int = 128, height: int = 72) -> np.ndarray:
    """(height, width, 3) uint8 sRGB: the eight CARD_COLOURS in two rows of four patches."""
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(CARD_COLOURS):
        row, col = divmod(i, 4)
        image[row * height // 2 : (row + 1) * height // 2, col * width // 4 : (col + 1) * width // 4] = colour
    return image


def patch_means(image: np.ndarray) -> np.ndarray:
    """(8, 3): the mean colour inside each patch of a card image, its edges left out (chroma
    subsampling and scaling blur them)."""
    h, w = image.shape[:2]
    ph, pw = h // 2, w // 4
    return np.array([image[r * ph + ph // 4 : (r + 1) * ph - ph // 4, c * pw + pw // 4 : (c + 1) * pw - pw // 4]
                     .reshape(-1, 3).mean(0) for r in range(2) for c in range(4)])


def _srgb_to_linear(image: np.ndarray) -> np.ndarray:
    v = image.astype(np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _pq_inverse_eotf(nits: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084: nits -> signal 0-1."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.power(np.clip(nits / 10000.0, 0, 1), m1)
    return np.power((c1 + c2 * y) / (1 + c3 * y), m2)


def _hlg_oetf(scene: np.ndarray) -> np.ndarray:
    """ARIB STD-B67 / BT.2100: scene light 0-1 -> signal 0-1."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    e = np.maximum(scene, 0)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-12)) + c)


def _hlg_inverse_ootf(display: np.ndarray, peak: float = 1000.0, gamma: float = 1.2) -> np.ndarray:
    """BT.2100 HLG: display light (nits) -> scene light 0-1, for a display of `peak` nits."""
    d = display / peak
    kr, kb = LUMA["bt2020"]
    yd = kr * d[..., 0] + (1 - kr - kb) * d[..., 1] + kb * d[..., 2]
    safe = np.where(yd > 0, yd, 1.0)
    return d / np.where(yd > 0, safe ** ((gamma - 1) / gamma), 1.0)[..., None]


def hdr_signal(image: np.ndarray, transfer: str) -> np.ndarray:
    """sRGB uint8 -> BT.2020 R'G'B' 0-1 in HLG or PQ, sRGB white at the reference white."""
    nits = _srgb_to_linear(image) @ BT709_TO_BT2020.T * REFERENCE_WHITE
    if transfer == "pq":
        return _pq_inverse_eotf(nits)
    if transfer == "hlg":
        return _hlg_oetf(_hlg_inverse_ootf(nits))
    raise ValueError(f"unknown transfer {transfer!r}")


def to_ycbcr(rgb: np.ndarray, matrix: str, bits: int, full_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R'G'B' 0-1 (h, w, 3) -> Y, Cb, Cr code values, chroma subsampled 2x2 (4:2:0) by averaging."""
    kr, kb = LUMA[matrix]
    y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    cb, cr = (rgb[..., 2] - y) / (2 * (1 - kb)), (rgb[..., 0] - y) / (2 * (1 - kr))
    scale = 1 << (bits - 8)
    if full_range:
        top = (1 << bits) - 1
        yq, cbq, crq = y * top, cb * top + (1 << (bits - 1)), cr * top + (1 << (bits - 1))
    else:
        yq, cbq, crq = (16 + 219 * y) * scale, (128 + 224 * cb) * scale, (128 + 224 * cr) * scale
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean((1, 3))

    top_code = (1 << bits) - 1
    y_, cb_, cr_ = (np.clip(np.round(p), 0, top_code).astype(np.uint16) for p in (yq, sub(cbq), sub(crq)))
    return y_, cb_, cr_


def yuv_frame(planes: tuple[np.ndarray, np.ndarray, np.ndarray], pix_fmt: str) -> av.VideoFrame:
    """A PyAV frame holding exactly these code values (8-bit formats take uint8 of them)."""
    import av

    h, w = planes[0].shape
    frame = av.VideoFrame(w, h, pix_fmt)
    wide = "10" in pix_fmt or "12" in pix_fmt
    for plane, values in zip(frame.planes, planes):
        plane_array(plane, np.uint16 if wide else np.uint8, *values.shape[::-1])[:] = values
    return frame


def card_video(path: str | Path, image: np.ndarray, *, matrix: str = "bt709", full_range: bool = False,
               tagged: bool = True, transfer: str = "sdr", frames: int = 4, fps: int = 30,
               codec_tag: str | None = None) -> Path:
    """The card as a short video: SDR H.264 (8-bit, `matrix` and range; tags written when
    `tagged`, full range as JPEG-style yuvj420p), or with transfer "hlg"/"pq" 10-bit BT.2020 HEVC
    tagged the way phones tag it. `codec_tag` names the MP4 sample entry (e.g. Dolby Vision's dvh1)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdr = transfer != "sdr"
    if hdr:
        planes = to_ycbcr(hdr_signal(image, transfer), "bt2020", 10, full_range)
        codec, pix_fmt = "libx265", "yuv420p10le"
        trc = {"hlg": "arib-std-b67", "pq": "smpte2084"}[transfer]
        options: dict[str, object] = {"crf": "10", "preset": "ultrafast",
                   "x265-params": f"colorprim=bt2020:transfer={trc}:colormatrix=bt2020nc:"
                                  f"range={'full' if full_range else 'limited'}:log-level=error"}
    else:
        v = image.astype(np.float64) / 255.0  # SDR: the sRGB values are the R'G'B' signal
        planes = to_ycbcr(v, matrix, 8, full_range)
        codec, pix_fmt = "libx264", "yuvj420p" if full_range else "yuv420p"
        tags = {"bt601": "smpte170m", "bt709": "bt709"}[matrix]
        options = {"crf": "4", "preset": "ultrafast"}
        if tagged:
            options["x264-params"] = f"colormatrix={tags}:colorprim={tags}:transfer={tags}"
    with av.open(str(path), "w") as container:
        stream = cast("av.VideoStream", container.add_stream(codec, rate=fps))
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], pix_fmt
        stream.options = options
        if codec_tag:
            stream.codec_context.codec_tag = codec_tag
        for i in range(frames):
            frame = yuv_frame(planes, pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def phone_clip(path: str | Path, seconds: float, width: int = 3840, height: int = 2160, fps: int = 30,
               transfer: str = "sdr", bit_rate: int = 24_000_000, preset: str = "ultrafast") -> Path:
    """10-bit HEVC as a phone records it: `width` x `height` at `fps`, a keyframe every second, about
    `bit_rate` bits per second, tagged BT.709 SDR or BT.2020 HLG/PQ. The picture is a detailed scene
    panning and moving (noise at several scales, so the encoder spends the bits a real scene costs
    and the decoder does the work real footage asks of it). Slow to make at 4K: cache the file."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # A scene larger than the frame, to pan over: smooth shapes plus fine grain.
    sh, sw = height + height // 4, width + width // 4
    scene = np.zeros((sh, sw), np.float32)
    for scale in (64, 16, 4):
        coarse = rng.random((sh // scale + 2, sw // scale + 2), dtype=np.float32)
        scene += np.kron(coarse, np.ones((scale, scale), np.float32))[:sh, :sw] / 3
    grain = rng.random((sh, sw), dtype=np.float32) * 0.08
    luma = np.clip(64 + (scene * 0.85 + grain) * 700, 64, 940).astype(np.uint16)
    cb = np.clip(512 + (np.kron(rng.random((sh // 32 + 1, sw // 32 + 1)), np.ones((16, 16)))[: sh // 2, : sw // 2]
                        - 0.5) * 300, 64, 960).astype(np.uint16)
    cr = np.clip(512 + (np.kron(rng.random((sh // 32 + 1, sw // 32 + 1)), np.ones((16, 16)))[: sh // 2, : sw // 2]
                        - 0.5) * 300, 64, 960).astype(np.uint16)
    tags = {"sdr": "colorprim=bt709:transfer=bt709:colormatrix=bt709",
            "hlg": "colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc",
            "pq": "colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"}[transfer]
    kbps = bit_rate // 1000
    with av.open(str(path), "w") as container:
        stream = cast("av.VideoStream", container.add_stream("libx265", rate=fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        stream.options = {"preset": preset, "x265-params": f"{tags}:range=limited:keyint={fps}:min-keyint={fps}:"
                          f"bitrate={kbps}:vbv-maxrate={kbps * 5 // 4}:vbv-bufsize={kbps * 2}:sao=1:log-level=error"}
        frames = int(round(seconds * fps))
        for i in range(frames):
            # the camera pans right and down, a few pixels a frame, and swings back
            t = i / max(frames - 1, 1)
            x = int((width // 4 - 2) * (0.5 - 0.5 * np.cos(2 * np.pi * t))) // 2 * 2
            y = int((height // 4 - 2) * t) // 2 * 2
            planes = (luma[y : y + height, x : x + width], cb[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2],
                      cr[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2])
            frame = yuv_frame(planes, "yuv420p10le")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
