"""Sampling parity: a model trained with the plain Hugging Face recipe classifies through vsearch
exactly as that recipe does, fast periodic motion (spinning) included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import save_tiny_videomae
from vsearch.bench.synthetic import motion_dataset

# Direction, size and fast periodic motion: all need the frames in order, spinning the exact ones.
LABELS = ["moving left", "moving right", "growing", "spinning"]


def reference_window(path: Path, num_frames: int) -> np.ndarray:
    """The Hugging Face recipe: every frame decoded, `np.linspace(0, n - 1, num_frames)` of them kept."""
    import av

    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames[np.linspace(0, len(frames) - 1, num_frames).astype(np.int64)]


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory: pytest.TempPathFactory):
    """A tiny VideoMAE trained with a plain torch loop on the recipe's own preprocessing.

    It learns its training clips for sure (spinning at > 0.99) and generalises only somewhat
    from so few: what matters here is that both paths give the same answers, sure or not.
    """
    import torch
    from transformers import AutoImageProcessor, VideoMAEForVideoClassification

    root = tmp_path_factory.mktemp("parity")
    model_dir = save_tiny_videomae(root / "model", LABELS, seed=1)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = VideoMAEForVideoClassification.from_pretrained(model_dir)
    videos = motion_dataset(root / "train", per_label=10, seed=11, motions=tuple(LABELS), folders=False)
    x = torch.cat([processor(list(reference_window(p, 8)), return_tensors="pt")["pixel_values"] for p in videos])
    y = torch.tensor([LABELS.index(label) for label in videos.values()])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs many times faster on one thread of a busy machine
    try:
        torch.manual_seed(0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
        model.train()
        for _ in range(90):
            for batch in torch.randperm(len(x)).split(16):
                loss = torch.nn.functional.cross_entropy(model(pixel_values=x[batch]).logits, y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(model_dir)
    return model_dir, processor, model, videos


def test_classify_agrees_with_the_reference_recipe(reference_model, tmp_path: Path) -> None:
    import torch

    from vsearch.indexer.one_file import embed_windows
    from vsearch.model.encoder import load_encoder

    model_dir, processor, model, trained_on = reference_model
    held_out = motion_dataset(tmp_path / "test", per_label=3, seed=23, motions=tuple(LABELS), folders=False)
    videos = {**trained_on, **held_out}
    encoder = load_encoder(str(model_dir))  # as `vsearch classify` loads it: device and precision auto
    agree, reference_right, spinning_gap, answers = 0, 0, [], set()
    for path, label in videos.items():
        with torch.inference_mode():
            pixels = processor(list(reference_window(path, 8)), return_tensors="pt")["pixel_values"]
            ref = torch.softmax(model(pixel_values=pixels).logits, -1)[0].numpy()
        probs = embed_windows(encoder, str(path)).probs
        ours = probs.mean(axis=0)  # as `classify` averages its windows (one here: the clip is short)
        agree += int(ours.argmax() == ref.argmax())
        answers.add(int(ref.argmax()))
        if path in trained_on:
            reference_right += int(LABELS[int(ref.argmax())] == label)
        if label == "spinning":
            spinning_gap.append(abs(float(ours[-1]) - float(ref[-1])))
    assert reference_right / len(trained_on) >= 0.95 and len(answers) == len(LABELS)  # a model that is sure
    assert agree / len(videos) >= 0.98
    assert max(spinning_gap) < 0.1  # the same confidence in spinning, not only the same top label
