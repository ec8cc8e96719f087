"""Shared fixtures: an index folder per test, generated videos, tiny real VideoMAE checkpoints,
and one deterministic fake encoder for the tests that do not need a real network."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vsearch.bench.synthetic import MOTIONS, motion_dataset
from vsearch.video.decode import FrameSpec

# Tests never reach the hub; a test that tried would hang on this machine's closed network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# Tests press Ctrl-C on vsearch as a person at a terminal does. A suite started as a background job
# of a script (how CI runners and `cmd &` start it) ignores SIGINT, and every process it starts
# would inherit that and never see the Ctrl-C: its children get a terminal's default instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def vsearch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("VSEARCH_HOME", str(home))
    monkeypatch.delenv("VSEARCH_MODEL", raising=False)
    return home


def save_tiny_videomae(
    out: Path,
    labels: list[str],
    num_frames: int = 8,
    image_size: int = 32,
    mean: float = 0.5,
    std: float = 0.5,
    seed: int = 0,
    hidden: int = 48,
    layers: int = 2,
    heads: int = 3,
    patch: int = 8,
) -> Path:
    """A small VideoMAEForVideoClassification checkpoint saved like any Hugging Face model."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification
    from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

    torch.manual_seed(seed)
    config = VideoMAEConfig(
        image_size=image_size, patch_size=patch, num_frames=num_frames, tubelet_size=2, hidden_size=hidden,
        num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=hidden * 2, use_mean_pooling=True,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )
    VideoMAEForVideoClassification(config).save_pretrained(out)
    VideoMAEImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[mean] * 3, image_std=[std] * 3,
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames at 32 px, mean/std 0.5: nothing like the default checkpoint's 16 x 224."""
    return save_tiny_videomae(tmp_path_factory.mktemp("models") / "tiny", list(MOTIONS))


@pytest.fixture(scope="session")
def motion_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    """Two generated videos per motion, flat in one folder, with neutral file names."""
    return motion_dataset(tmp_path_factory.mktemp("videos"), per_label=2, seed=7, folders=False)


@pytest.fixture(scope="session")
def visual_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP trained on generated captioned pictures (tests/visual_fixtures.py), once per session
    (about a minute on two cores): the tests' image-text model, a folder as a user's would be."""
    from tests.visual_fixtures import train_tiny_visual_model

    return train_tiny_visual_model(tmp_path_factory.mktemp("visual") / "tiny-clip")


@pytest.fixture
def library(tmp_path: Path, motion_videos: dict[Path, str]) -> Path:
    """A fresh copy of the generated videos plus the broken files a real library holds."""
    root = tmp_path / "library"
    root.mkdir()
    for src in motion_videos:
        shutil.copy2(src, root / src.name)
    add_broken_files(root)
    return root


def add_broken_files(root: Path) -> list[Path]:
    broken = root / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "empty.mp4").write_bytes(b"")
    (broken / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (broken / "notes.mkv").write_text("this is a text file, not a video\n")
    good = next(root.glob("*.mp4")).read_bytes()
    (broken / "truncated.mp4").write_bytes(good[: len(good) // 3])
    return sorted(broken.iterdir())


class FakeEncoder:
    """Deterministic stand-in for VideoEncoder: labels and embeddings from mean colour and motion.

    It counts the clips it saw, so tests can prove that a re-run does no model work.
    """

    name = "fake-encoder"
    labels = ["dark", "bright", "red", "green", "blue", "still", "moving"]
    dim = 9
    device = "cpu"
    batch_size = None
    choice = None  # not a real runtime: the index records none

    def __init__(self) -> None:
        self.calls = 0
        self.windows = 0

    @property
    def frame_spec(self) -> FrameSpec:
        return FrameSpec(num_frames=4, resize=("shortest_edge", 16), crop=(16, 16))

    @property
    def model_id(self) -> str:
        return f"{self.name}|{len(self.labels)}|{self.dim}"

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        self.windows += len(frames)
        x = frames.astype(np.float32) / 255
        rgb = x.mean(axis=(1, 2, 3))  # (B, 3)
        motion = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3, 4)) * 20
        light = rgb.mean(1)
        logits = np.stack([1 - light, light, rgb[:, 0], rgb[:, 1], rgb[:, 2], 1 - motion, motion], axis=1) * 6
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        emb = np.concatenate([rgb, x.std(axis=(1, 2, 3)), motion[:, None], light[:, None],
                              np.ones((len(x), 1))], axis=1)
        return probs.astype(np.float32), (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def espeak_ng() -> str:
    from tests.tools import require

    return require("espeak-ng")


@pytest.fixture(scope="session")
def ffmpeg_command() -> str:
    from tests.tools import require

    return require("ffmpeg")


def as_schema_8(db: Any) -> None:
    """Give a catalog back the names it had at schema 8, before windows were called windows (009) and
    the label vectors' column named the sentence model (010), for tests that make an older version's
    index out of a new one."""
    from vsearch.search.catalog import WINDOW_COLUMNS, WINDOW_TABLES

    db.execute("ALTER TABLE label_vectors RENAME COLUMN sentence_model TO text_model")
    for old, new in WINDOW_TABLES.items():
        db.execute(f"ALTER TABLE {new} RENAME TO {old}")
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        columns = {r[1] for r in db.execute(f'PRAGMA table_info("{table}")').fetchall()}
        for old, new in WINDOW_COLUMNS.items():
            if new in columns:
                db.execute(f'ALTER TABLE "{table}" RENAME COLUMN {new} TO {old}')
    for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                "AND name LIKE '%window%'").fetchall():
        db.execute(f'DROP INDEX "{name}"')
        db.execute(sql.replace(name, name.replace("windows", "clips").replace("window", "clip"), 1))
