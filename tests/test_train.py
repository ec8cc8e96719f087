from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vsearch.bench.synthetic import render_motion, write_video
from vsearch.cli.main import app
from vsearch.model.train import TrainError, augment, scan_dataset, split
from vsearch.video.decode import FrameSpec

runner = CliRunner()


def make(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        for i in range(n):
            write_video(root / label / f"{i}.mp4", render_motion("moving up", rng, frames=16))
    return root


def test_labels_come_from_folder_names(tmp_path: Path) -> None:
    labels, items = scan_dataset(make(tmp_path, {"eating_spaghetti": 2, "dancing": 3}))
    assert labels == ["dancing", "eating spaghetti"]
    assert len(items) == 5


def test_split_is_seeded_and_keeps_every_label_on_both_sides(tmp_path: Path) -> None:
    items = [(f"{label}{i}", label) for label in range(3) for i in range(10)]
    a, b = split(items, 3, 0.2, seed=5), split(items, 3, 0.2, seed=5)
    assert a == b and split(items, 3, 0.2, seed=6) != a
    train, val = a
    assert len(val) == 6 and {lab for _, lab in val} == {0, 1, 2}


@pytest.mark.parametrize("counts, message", [
    ({"only_one": 3}, "at least two label folders"),
    ({"a": 1, "b": 3}, "at least 2 videos"),
])
def test_unusable_datasets_get_a_clear_message(tmp_path: Path, tiny_model: Path, counts: dict, message: str) -> None:
    data = make(tmp_path / "data", counts)
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "m"), "--base", str(tiny_model)])
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output


def test_unreadable_videos_are_skipped_with_their_reason(tmp_path: Path, tiny_model: Path) -> None:
    data = make(tmp_path / "data", {"up": 3, "also_up": 3})
    (data / "up" / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", str(data), "--out", str(out), "--base", str(tiny_model),
                                 "--epochs", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "broken.mp4" in result.stderr
    assert (out / "config.json").exists() and (out / "vsearch_train.json").exists()
    with pytest.raises(TrainError):
        scan_dataset(tmp_path / "nope")


def test_augment_offsets_time_and_crops_to_model_size() -> None:
    spec = FrameSpec(4, ("shortest_edge", 8), (8, 8))
    clip = np.arange(8)[:, None, None, None] * np.ones((8, 8, 12, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    outs = [augment(clip, spec, rng, hflip=False) for _ in range(20)]
    assert all(o.shape == (4, 8, 8, 3) for o in outs)
    assert {tuple(o[:, 0, 0, 0]) for o in outs} == {(0, 2, 4, 6), (1, 3, 5, 7)}


def test_out_never_overwrites_other_files(tmp_path: Path, tiny_model: Path) -> None:
    data = make(tmp_path / "data", {"up": 2, "also_up": 2})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    for out, message in ((precious, "is not a model vsearch trained"), (data, "overlaps the training data"),
                         (data / "up", "overlaps the training data")):
        result = runner.invoke(app, ["train", str(data), "--out", str(out), "--base", str(tiny_model)])
        assert result.exit_code == 1 and message in result.stderr
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert len(list((data / "up").glob("*.mp4"))) == 2


def test_duplicate_labels_are_refused(tmp_path: Path) -> None:
    data = make(tmp_path / "data", {"moving_left": 2, "other": 2})
    make(tmp_path / "data2", {})
    (data / "moving left").mkdir()
    write_video(data / "moving left" / "x.mp4", render_motion("moving up", np.random.default_rng(0), frames=16))
    with pytest.raises(TrainError, match="two folders"):
        scan_dataset(data)
