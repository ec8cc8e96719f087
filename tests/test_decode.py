from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vsearch.bench.synthetic import encode_into, render_motion, write_video
from vsearch.video.decode import (
    DecodeError,
    FrameSpec,
    Reader,
    Sampling,
    VideoInfo,
    center_crop,
    plan_windows,
    probe,
    read_windows,
)

SPEC = FrameSpec(num_frames=8, resize=("shortest_edge", 32), crop=(32, 32))


def test_short_video_gives_one_window_with_uniform_frames() -> None:
    windows = plan_windows(VideoInfo(frames=32, fps=16, width=64, height=48), 8, Sampling(window_seconds=4))
    assert len(windows) == 1
    w = windows[0]
    assert (w.start, w.end) == (0.0, 2.0)
    # linspace(0, n - 1, 8) truncated, first and last frame included: the Hugging Face recipe
    assert w.frames == (0, 4, 8, 13, 17, 22, 26, 31)
    assert w.frames == tuple(np.linspace(0, 31, 8).astype(int))


def test_each_window_samples_its_own_first_to_last_frame() -> None:
    windows = plan_windows(VideoInfo(frames=64, fps=16, width=64, height=48), 4, Sampling(window_seconds=2))
    assert [w.frames for w in windows] == [(0, 10, 20, 31), (32, 42, 52, 63)]
    # 29.97 fps: window edges fall between frames; each window keeps to its own frames
    ntsc = plan_windows(VideoInfo(frames=240, fps=30000 / 1001, width=64, height=48), 16, Sampling(window_seconds=4))
    assert [w.frames[0] for w in ntsc] == [0, 120] and ntsc[0].frames[-1] == 119 and ntsc[1].frames[-1] == 239


def test_long_video_windows_cover_it_then_spread_out_past_the_cap() -> None:
    info = VideoInfo(frames=30 * 60, fps=30, width=1280, height=720)  # one minute
    windows = plan_windows(info, 16, Sampling(window_seconds=4, max_windows=150))
    assert len(windows) == 15
    assert windows[0].start == 0 and windows[-1].end == pytest.approx(60)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(windows, windows[1:]))
    capped = plan_windows(info, 16, Sampling(window_seconds=2, max_windows=5))
    assert len(capped) == 5
    assert all(w.end - w.start == pytest.approx(2) for w in capped)  # windows keep their length
    assert capped[-1].end == pytest.approx(60)
    assert max(f for w in capped for f in w.frames) < info.frames


def test_scaled_size_follows_shortest_edge_and_exact_sizes() -> None:
    assert SPEC.scaled_size(1280, 720) == (56, 32)
    assert SPEC.scaled_size(720, 1280) == (32, 56)
    assert FrameSpec(8, ("exact", (40, 50)), None).scaled_size(1280, 720) == (50, 40)


def test_center_crop_matches_processor_convention_and_pads_small_frames() -> None:
    frames = np.arange(2 * 6 * 8 * 3, dtype=np.uint8).reshape(2, 6, 8, 3)
    out = center_crop(frames, (4, 4))
    assert out.shape == (2, 4, 4, 3)
    assert (out == frames[:, 1:5, 2:6]).all()
    assert center_crop(frames, (8, 10)).shape == (2, 8, 10, 3)


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    frames = render_motion("moving right", np.random.default_rng(3), frames=32, width=64, height=48)
    return write_video(tmp_path_factory.mktemp("v") / "right.mp4", frames), frames


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_backends_read_the_planned_frames_at_model_size(backend: str, moving_video) -> None:
    path, source = moving_video
    chunks = list(read_windows(str(path), SPEC, Sampling(), backend=backend))
    assert len(chunks) == 1
    info, windows, frames = chunks[0]
    assert (info.frames, info.width, info.height) == (32, 64, 48)
    assert frames.shape == (1, 8, 32, 32, 3) and frames.dtype == np.uint8
    # Compare with the source frames, resized to 42x32 and centre-cropped the same way.
    expect = source[list(windows[0].frames)][:, ::1, :, :].astype(np.float32)
    ys = (np.arange(32) * 48 / 32).astype(int)
    xs = (np.arange(42) * 64 / 42).astype(int)
    expect = center_crop(expect[:, ys][:, :, xs], (32, 32))
    assert np.abs(frames[0].astype(np.float32) - expect).mean() < 25  # codec + scaler differences only


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 16 fps whose frames say their own index: left half index // 16, right half index % 16.

    A keyframe every second, so reading spread-out windows seeks into the middle of the file.
    """
    frames = np.zeros((192, 48, 64, 3), np.uint8)
    for i in range(192):
        frames[i, :, :32] = 16 * (i // 16) + 8
        frames[i, :, 32:] = 16 * (i % 16) + 8
    return write_video(tmp_path_factory.mktemp("v") / "numbered.mp4", frames, 16,
                       options={"crf": "10", "preset": "veryfast", "g": "16"})


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The index each (…, 32, 32, 3) frame shows; away from the middle column, which chroma blurs."""
    high = np.rint((frames[..., 4:12, :].mean(axis=(-3, -2, -1)) - 8) / 16).astype(int)
    low = np.rint((frames[..., 20:28, :].mean(axis=(-3, -2, -1)) - 8) / 16).astype(int)
    return (16 * high + low).ravel().tolist()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("sampling", [Sampling(window_seconds=0.5), Sampling(window_seconds=1, max_windows=4)],
                         ids=["adjacent windows", "spread-out windows"])
def test_backends_read_exactly_the_planned_frame_indices(backend: str, sampling: Sampling, numbered_video: Path) -> None:
    spec = FrameSpec(num_frames=4, resize=("shortest_edge", 32), crop=(32, 32))
    chunks = list(read_windows(str(numbered_video), spec, sampling, backend=backend))
    windows = [w for _, part, _ in chunks for w in part]
    assert len(windows) == (24 if sampling.window_seconds == 0.5 else 4)
    planned = [i for w in windows for i in w.frames]
    assert frame_numbers(np.concatenate([f for _, _, f in chunks])) == planned


@pytest.mark.parametrize("sampling, seeks", [(Sampling(window_seconds=0.5), 0), (Sampling(window_seconds=1, max_windows=4), 3)],
                         ids=["adjacent windows", "spread-out windows"])
def test_windows_that_cover_a_video_are_decoded_in_one_pass(sampling: Sampling, seeks: int, numbered_video: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk after chunk, the decoder goes on from where it stopped: no seek while the frames wanted
    are near; spread-out windows (a keyframe each second, 2.7 s apart) are reached by one seek each."""
    sought: list[float] = []
    real = Reader._seek
    monkeypatch.setattr(Reader, "_seek", lambda self, t: (sought.append(t), real(self, t))[1])
    spec = FrameSpec(num_frames=4, resize=("shortest_edge", 32), crop=(32, 32))
    chunks = list(read_windows(str(numbered_video), spec, sampling, backend="pyav", chunk=2))
    assert len(sought) == seeks
    planned = [i for _, part, _ in chunks for w in part for i in w.frames]
    assert frame_numbers(np.concatenate([f for _, _, f in chunks])) == planned


def test_a_reader_goes_back_when_asked_for_earlier_frames(numbered_video: Path) -> None:
    info = probe(numbered_video)
    reader = Reader(str(numbered_video), info, (42, 32), "pyav", threads=2)
    try:
        for wanted in ([150, 151, 190], [3, 40, 41], [41, 42], [191]):
            assert frame_numbers(center_crop(reader.read(wanted), (32, 32))) == wanted
    finally:
        reader.close()


@pytest.mark.parametrize("codec, options", [("libx264", {"preset": "veryfast", "bf": "3", "g": "48"}),
                                            ("libx265", {"preset": "ultrafast", "x265-params": "log-level=error"})])
def test_frames_nothing_is_decoded_from_are_skipped_and_the_rest_are_exact(
        tmp_path: Path, codec: str, options: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planned reads leave out B-frames that no frame is decoded from and none of the reads asks for;
    every frame read is bit for bit the one a full decode gives."""
    from vsearch.video import decode

    frames = render_motion("spinning", np.random.default_rng(4), frames=96, width=96, height=64)
    path = write_video(tmp_path / "b-frames.mp4", frames, 24, codec=codec, options=options)
    info = probe(path)
    wanted = [i for w in plan_windows(info, 4, Sampling(2.0)) for i in w.frames]
    skipped: list[bool] = []
    real = decode._unreferenced
    monkeypatch.setattr(decode, "_unreferenced", lambda *a: skipped.append(real(*a)) or skipped[-1])
    full, planned = (Reader(str(path), info, (48, 32), "pyav", threads=2) for _ in range(2))
    planned.plan(wanted)
    try:
        expect = np.concatenate([full.read(wanted[i : i + 4]) for i in range(0, len(wanted), 4)])
        got = np.concatenate([planned.read(wanted[i : i + 4]) for i in range(0, len(wanted), 4)])
    finally:
        full.close()
        planned.close()
    assert np.array_equal(got, expect)
    assert sum(skipped) >= 96 // 5  # a fifth of the file at least was never decoded (x264: 25, x265: 39)


def test_decord_and_pyav_agree(moving_video) -> None:
    path, _ = moving_video
    a = next(read_windows(str(path), SPEC, Sampling(), backend="decord"))[2].astype(np.float32)
    b = next(read_windows(str(path), SPEC, Sampling(), backend="pyav"))[2].astype(np.float32)
    assert np.abs(a - b).mean() < 8


def test_probe_reasons(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 1000)
    with pytest.raises(DecodeError, match="empty"):
        probe(tmp_path / "empty.mp4")
    with pytest.raises(DecodeError, match="not a readable video"):
        probe(tmp_path / "junk.mp4")


def test_audio_only_file_is_refused_with_reason(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        encode_into(c, stream, [frame] * 10)
    with pytest.raises(DecodeError, match="no video stream"):
        probe(path)
