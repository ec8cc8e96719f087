"""Hardware decoders (NVDEC `cuda`, Quick Sync `qsv`): used where they give software's frames, and
otherwise left for software with one line saying why. This machine may have neither: the tests make
real attempts that fail here, and inject failures where a working device would pass."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from vsearch.bench.synthetic import render_motion, write_video
from vsearch.video import hwdecode
from vsearch.video.decode import FrameSpec, Sampling, read_windows
from vsearch.video.hwdecode import HardwareCheck, check, choose_decoder, run_check

SPEC = FrameSpec(num_frames=8, resize=("shortest_edge", 32), crop=(32, 32))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = render_motion("moving left", np.random.default_rng(1), frames=48, width=96, height=64)
    return write_video(tmp_path_factory.mktemp("hw") / "clip.mp4", frames, 16)


@pytest.fixture(scope="module")
def cuda_check(video: Path) -> HardwareCheck:
    """A real attempt at NVDEC, in its own process as indexing makes it."""
    return run_check("cuda", str(video), SPEC)


def test_asking_for_a_hardware_decoder_that_fails_decodes_in_software_and_says_why(
        video: Path, cuda_check: HardwareCheck, tmp_path: Path) -> None:
    backend, note = choose_decoder("cuda", str(video), SPEC, tmp_path)
    if cuda_check.ok:  # a machine with NVDEC: it is used, silently
        assert (backend, note) == ("cuda", "")
    else:
        assert backend == "auto" and note.startswith("--decoder cuda: ") and "decoding in software" in note
        assert cuda_check.reason in note  # why: FFmpeg's own words (here: no device to open)


def test_a_file_the_hardware_decoder_cannot_take_is_decoded_in_software(video: Path) -> None:
    """Per file, read_windows leaves to software what the device refuses: same frames as software."""
    soft = np.concatenate([f for _, _, f in read_windows(str(video), SPEC, Sampling(1.0), backend="pyav")])
    hard = np.concatenate([f for _, _, f in read_windows(str(video), SPEC, Sampling(1.0), backend="cuda")])
    assert hard.shape == soft.shape and np.abs(hard.astype(int) - soft).mean() <= hwdecode.AGREE


def test_frames_that_disagree_with_software_are_refused(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An injected hardware decoder whose frames are off by a few levels (a wrong matrix, say)."""
    real = hwdecode._first_frames

    def shifted(path: str, size: tuple[int, int], rotation: int, count: int, hardware: str | None):
        images, seconds = real(path, size, rotation, count, None)
        if hardware:
            images = [np.clip(i.astype(int) + 6, 0, 255).astype(np.uint8) for i in images]
        return images, seconds

    monkeypatch.setattr(hwdecode, "_first_frames", shifted)
    result = check("cuda", str(video), SPEC)
    assert not result.ok and "differ from software's" in result.reason and result.difference > hwdecode.AGREE


def test_auto_measures_once_per_machine_and_remembers(video: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With a device present (injected), auto makes a real attempt; where it fails, software is
    chosen, the run says why once, and later runs reuse the choice without trying again."""
    monkeypatch.setattr(hwdecode, "hardware_available", lambda: ["cuda"])
    calls: list[str] = []
    monkeypatch.setattr(hwdecode, "run_check",
                        lambda name, path, spec: calls.append(name) or HardwareCheck(name, False, "cannot open it (injected)"))
    assert choose_decoder("auto", str(video), SPEC, tmp_path) == (
        "auto", "decoding in software: cuda: cannot open it (injected)")
    assert choose_decoder("auto", str(video), SPEC, tmp_path) == ("auto", "")
    assert calls == ["cuda"]
    good = HardwareCheck("cuda", True, "", hardware_s=0.1, software_s=0.4, difference=0.3)
    monkeypatch.setattr(hwdecode, "run_check", lambda name, path, spec: good)
    monkeypatch.setattr(hwdecode, "_machine_key", lambda names: "another machine")
    backend, note = choose_decoder("auto", str(video), SPEC, tmp_path)
    assert backend == "cuda" and "NVIDIA NVDEC" in note and "4.0x" in note


def test_index_with_a_failing_hardware_decoder_indexes_everything_and_says_why_once(
        tmp_path: Path, tiny_model: Path, cuda_check: HardwareCheck) -> None:
    from typer.testing import CliRunner

    from vsearch.cli.main import app

    rng = np.random.default_rng(2)
    for i in range(3):
        write_video(tmp_path / "lib" / f"v{i}.mp4", render_motion("moving up", rng, frames=32), 16)
    help_text = CliRunner().invoke(app, ["index", "--help"], terminal_width=200).output
    assert "qsv" in help_text and "--decoder cuda" in help_text
    result = CliRunner().invoke(app, ["index", str(tmp_path / "lib"), "--model", str(tiny_model), "--decoder", "cuda"])
    assert result.exit_code == 0, result.output
    assert re.search(r"3 videos found: 3 indexed", result.output)
    lines = [line for line in result.output.splitlines() if "--decoder cuda" in line]
    assert len(lines) == (0 if cuda_check.ok else 1), result.output
