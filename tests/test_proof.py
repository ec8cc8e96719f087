"""The proof that search finds the right videos: train a tiny VideoMAE with `vsearch train` on
motion patterns that no single frame can tell apart, index videos it never saw, and measure."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import save_tiny_videomae
from vsearch.bench.synthetic import MOTIONS, motion_dataset
from vsearch.cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, str]]:
    root = tmp_path_factory.mktemp("proof")
    motion_dataset(root / "train", per_label=150, seed=1)
    test_set = motion_dataset(root / "test", per_label=10, seed=2, folders=False)
    base = save_tiny_videomae(root / "base", ["placeholder a", "placeholder b"], hidden=64, heads=4)
    out = root / "model"
    result = runner.invoke(app, ["train", str(root / "train"), "--out", str(out), "--base", str(base),
                                 "--epochs", "45", "--lr", "2e-3", "--batch-size", "16", "-q"])
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.stderr
    return out, test_set


def test_training_reaches_the_accuracy_it_reports_and_saves_a_standard_folder(trained) -> None:
    from transformers import AutoImageProcessor, VideoMAEForVideoClassification

    out, _ = trained
    report = json.loads((out / "vsearch_train.json").read_text())
    assert report["val_accuracy"] >= 0.9, report["epochs"][-5:]
    assert (report["train_videos"], report["val_videos"]) == (720, 180)
    assert (out / "model.safetensors").exists() and (out / "preprocessor_config.json").exists()
    model = VideoMAEForVideoClassification.from_pretrained(out)  # plain transformers loads it
    assert sorted(model.config.id2label.values()) == sorted(MOTIONS)
    assert AutoImageProcessor.from_pretrained(out).crop_size["height"] == 32


@pytest.fixture(scope="module")
def indexed(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, str]]:
    out, test_set = trained
    home = tmp_path_factory.mktemp("proof-home")
    folder = next(iter(test_set)).parent
    result = runner.invoke(app, ["index", str(folder), "--model", str(out), "--home", str(home), "-q"])
    assert result.exit_code == 0 and "60 indexed" in result.stderr, result.output
    return home, test_set


def precision_at_5(paths: list[str], truth: dict[Path, str], label: str) -> float:
    top = list(dict.fromkeys(paths))[:5]
    return sum(truth[Path(p)] == label for p in top) / 5


def test_search_precision_at_5_for_every_label(indexed) -> None:
    home, truth = indexed
    for label in MOTIONS:
        result = runner.invoke(app, ["search", label, "--json", "--home", str(home), "-n", "50"])
        hits = json.loads(result.stdout)
        p5 = precision_at_5([h["path"] for h in hits], truth, label)
        assert p5 >= 0.8, (label, p5)


def test_similar_precision_at_5_on_average(indexed) -> None:
    home, truth = indexed
    scores = []
    for path, label in truth.items():
        result = runner.invoke(app, ["similar", str(path), "--json", "--home", str(home), "-n", "5"])
        hits = json.loads(result.stdout)
        assert str(path) not in {h["path"] for h in hits}
        scores.append(precision_at_5([h["path"] for h in hits], truth, label))
    assert np.mean(scores) >= 0.8, np.mean(scores)


def reference_top_label(model, processor, path: Path) -> str:
    """The Hugging Face recipe, written out plainly: uniform frames, the image processor, the model."""
    import av
    import torch

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    idx = np.linspace(0, len(frames) - 1, model.config.num_frames).round().astype(int)
    inputs = processor([frames[i] for i in idx], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    return model.config.id2label[int(logits.argmax(-1))]


def test_classify_agrees_with_the_reference_recipe(trained) -> None:
    from transformers import AutoImageProcessor, VideoMAEForVideoClassification

    from vsearch.indexer.one_file import classify
    from vsearch.model.encoder import load_encoder

    out, truth = trained
    model = VideoMAEForVideoClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    encoder = load_encoder(str(out))
    agree = Counter()
    for path in truth:
        ours = classify(encoder, path, top=1).labels[0][0]
        agree[ours == reference_top_label(model, processor, path)] += 1
    assert agree[True] / len(truth) >= 0.95, agree
    one = next(iter(truth))
    cli = json.loads(runner.invoke(app, ["classify", str(one), "--model", str(out), "--json"]).stdout)
    assert cli == classify(encoder, one).to_json()
