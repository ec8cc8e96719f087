"""Hardware decoders: NVIDIA's NVDEC (`cuda`) and Intel's Quick Sync (`qsv`), where the machine has one.

PyAV's wheels carry both. Next to a GPU running the model, CPU decoding of 4K HEVC is the
bottleneck by far, and most laptops have Quick Sync. A hardware decoder is used only when it gives
the frames software gives (at the model's size, through the same colour conversion) and is not
slower: measured once per machine on the first file of a run, in a process of its own (a driver
that crashes or hangs costs the check, not the run), and cached in the index home beside the
model's calibration. When it cannot be used the run decodes in software and its report says why,
in one line.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsearch.core.home import Home, read_measurements, store_measurement
from vsearch.video.decode import HARDWARE, FrameSpec, probe

AGREE = 1.5  # mean |hardware - software| per pixel and channel, of 255, for the frames to count as the same
CHECK_FRAMES = 48  # decoded by each for the comparison and the timing
CHECK_SECONDS = 60.0  # a check taking longer is judged hung
FASTER = 1.05  # hardware must decode at least as fast as software, within this margin


@dataclass(frozen=True)
class HardwareCheck:
    """One hardware decoder against software on a file: whether it can be used, and why not."""

    name: str
    ok: bool
    reason: str = ""  # why not, in a few words
    hardware_s: float = 0.0  # seconds to decode the frames, after the first one (the decoder's start)
    software_s: float = 0.0
    difference: float = 0.0  # mean |hardware - software| per pixel and channel, of 255


def hardware_available() -> list[str]:
    """The hardware decoders PyAV was built with whose device this machine appears to have."""
    from av.codec.hwaccel import hwdevices_available

    built = set(hwdevices_available())
    return [name for name in HARDWARE if name in built and _device_present(name)]


def _device_present(name: str) -> bool:
    """On Linux, whether the device node the driver opens exists (elsewhere: try it)."""
    if platform.system() != "Linux":
        return True
    if name == "cuda":
        return Path("/dev/nvidiactl").exists()
    # Quick Sync: a DRM render node of an Intel GPU
    for vendor in Path("/sys/class/drm").glob("renderD*/device/vendor"):
        try:
            if vendor.read_text().strip() == "0x8086":
                return True
        except OSError:
            continue
    return False


def choose_decoder(asked: str, sample: str | None, spec: FrameSpec, home: Path | Home) -> tuple[str, str]:
    """(the decoder read_windows gets, a line for the run's report or ""), for a run whose files
    start with `sample`.

    "auto" uses a hardware decoder when this machine has one that agrees with software and is not
    slower, measured once and cached in `home`; "cuda" or "qsv" asks for that one, and is checked
    every run (a few frames); "pyav" and "decord" are used as asked.
    """
    if asked not in ("auto", *HARDWARE) or sample is None:
        return asked, ""
    if asked in HARDWARE:
        check = run_check(asked, sample, spec)
        if check.ok:
            return asked, ""
        return "auto", f"--decoder {asked}: {check.reason}; decoding in software instead"
    names = hardware_available()
    if not names:
        return "auto", ""
    cache, key = Home.at(home).calibration, _machine_key(names)
    stored = read_measurements(cache).get(key)
    if isinstance(stored, dict) and stored.get("decoder") in ("auto", *HARDWARE):
        return str(stored["decoder"]), ""
    checks = [run_check(name, sample, spec) for name in names]
    chosen = next((c for c in checks if c.ok), None)
    if chosen is not None:
        note = (f"decoding on {HARDWARE[chosen.name]} ({chosen.name}): its frames agree with software's (mean "
                f"difference {chosen.difference:.2f} of 255), {chosen.software_s / max(chosen.hardware_s, 1e-9):.1f}x "
                "its speed")
    else:
        note = "decoding in software: " + "; ".join(f"{c.name}: {c.reason}" for c in checks)
    store_measurement(cache, key, {"decoder": chosen.name if chosen else "auto", "note": note})
    return (chosen.name if chosen else "auto"), note


def _machine_key(names: list[str]) -> str:
    import av

    cpu = platform.processor() or platform.machine()
    return f"decoder | {cpu} x{os.cpu_count()} | av {av.__version__} | {', '.join(names)}"


def run_check(name: str, path: str, spec: FrameSpec) -> HardwareCheck:
    """check(), in a process of its own with a time limit."""
    context = mp.get_context("spawn")
    pool = context.Pool(1)
    try:
        return pool.apply_async(check, (name, path, spec)).get(CHECK_SECONDS)
    except mp.TimeoutError:
        return HardwareCheck(name, False, f"no answer in {CHECK_SECONDS:g} s (the decoder hung or crashed)")
    except Exception as exc:  # the check itself failed: this decoder is not used
        return HardwareCheck(name, False, f"check failed ({type(exc).__name__}: {exc})"[:200])
    finally:
        pool.terminate()
        pool.join()


def check(name: str, path: str, spec: FrameSpec, frames: int = CHECK_FRAMES) -> HardwareCheck:
    """Decode the first `frames` frames of `path` with hardware decoder `name` and in software,
    both at the model's size through frame_rgb, and compare them and their speed."""
    from vsearch.video.decode import error_reason

    info = probe(path)
    size = spec.scaled_size(info.width, info.height)
    soft, software_s = _first_frames(path, size, info.rotation, frames, None)
    try:
        hard, hardware_s = _first_frames(path, size, info.rotation, frames, name)
    except Exception as exc:  # FFmpeg refuses the device or the stream
        return HardwareCheck(name, False, f"cannot decode with it ({error_reason(exc)})")
    if len(hard) != len(soft):
        return HardwareCheck(name, False, f"it gave {len(hard)} frames where software gave {len(soft)}")
    difference = float(np.abs(np.stack(hard).astype(np.int16) - np.stack(soft)).mean())
    if difference > AGREE:
        return HardwareCheck(name, False, f"its frames differ from software's (mean difference {difference:.1f} "
                                          f"of 255, more than {AGREE:g})", hardware_s, software_s, difference)
    if hardware_s > software_s * FASTER:
        return HardwareCheck(name, False, f"slower than software here ({hardware_s:.2f} s against {software_s:.2f} s)",
                             hardware_s, software_s, difference)
    return HardwareCheck(name, True, "", hardware_s, software_s, difference)


def _first_frames(path: str, size: tuple[int, int], rotation: int, count: int,
                  hardware: str | None) -> tuple[list[np.ndarray], float]:
    """The first `count` frames converted as indexing converts them, and the seconds they took
    after the first (which pays for opening the device)."""
    import av
    from av.codec.hwaccel import HWAccel

    from vsearch.video.colour import frame_rgb

    accel = HWAccel(device_type=hardware, allow_software_fallback=False) if hardware else None
    images: list[np.ndarray] = []
    started = 0.0
    with av.open(path, hwaccel=accel) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if hardware and not images and not stream.codec_context.is_hwaccel:
                raise RuntimeError("FFmpeg decoded this stream in software")
            images.append(frame_rgb(frame, size, rotation))
            if len(images) == 1:
                started = time.perf_counter()
            if len(images) == count:
                break
    return images, time.perf_counter() - started
