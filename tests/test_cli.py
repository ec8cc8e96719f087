from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vsearch.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def indexed(library: Path, tiny_model: Path) -> Path:
    # One fixed runtime and precision: the calibrated choice depends on timings, and with a random
    # model near-tied scores would order differently from run to run (calibration: test_calibrate)
    result = invoke("index", library, "--model", tiny_model, "--workers", "2", "-q", "--runtime", "torch",
                    "--precision", "fp32")
    assert result.exit_code == 0, result.output
    return library


def test_every_command_has_help_with_an_example(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.core
    import typer.main

    import vsearch.bench.report
    import vsearch.bench.scale

    def started(*args: object, **kwargs: object) -> str:
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(vsearch.bench.report, "run_benchmark", started)
    monkeypatch.setattr(vsearch.bench.scale, "run_scale", started)
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    commands = set(group.commands)
    assert commands >= {"index", "search", "similar", "show", "labels", "stats", "classify", "train", "doctor", "bench", "live"}
    for cmd in sorted(commands):
        result = invoke(cmd, "--help")
        assert result.exit_code == 0, result.output
        assert "Example: vsearch " + cmd in result.output, cmd


def test_index_reports_failures_and_exits_zero(library: Path, tiny_model: Path) -> None:
    result = invoke("index", library, "--model", tiny_model, "-q")
    assert result.exit_code == 0
    assert "16 videos found: 12 indexed (12 windows)" in result.stderr
    assert result.stderr.count("skipped ") == 4 and "empty file" in result.stderr
    # The precision and batch size chosen by measuring, with the measurements
    chosen = r"model: .* on cpu, (openvino )?(fp32|bf16|int8), batch \d+ \(calibrated in \d+ s: s/window fp32@1 "
    assert re.search(chosen, result.stderr)
    stats = json.loads(invoke("stats", "--json").stdout)
    assert (stats["videos"], stats["windows"], stats["failed"]) == (12, 12, 4)
    assert stats["model"] == str(tiny_model.resolve())
    again = invoke("index", library, "-q")  # the index remembers its model
    assert again.exit_code == 0 and "0 indexed" in again.stderr and "16 unchanged" in again.stderr
    assert "model:" not in again.stderr  # nothing changed, so the model was not even loaded


def test_counts_of_one_read_right(tmp_path: Path, tiny_model: Path) -> None:
    import numpy as np

    from vsearch.bench.synthetic import render_motion, write_video

    write_video(tmp_path / "one" / "only.mp4", render_motion("growing", np.random.default_rng(0)))
    result = invoke("index", tmp_path / "one", "--model", tiny_model, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "indexed 1/1 file, 1 window\n" in result.stderr  # the progress line, off a terminal
    assert "1 video found: 1 indexed (1 window), 0 unchanged" in result.stderr
    assert "(in 1 worker process)" in result.stderr


def test_search_returns_the_videos_whose_label_it_is_first(indexed: Path) -> None:
    shown = {}
    for path in indexed.glob("*.mp4"):
        data = json.loads(invoke("show", path, "--json").stdout)
        shown[str(path)] = data["labels"][0]["label"]
    label = max(set(shown.values()), key=list(shown.values()).count)
    hits = json.loads(invoke("search", label, "--json").stdout)
    assert {"path", "start", "end", "label", "score"} <= set(hits[0])
    expected = {p for p, top in shown.items() if top == label}
    assert {h["path"] for h in hits[: len(expected)]} == expected
    text = invoke("search", label, "-n", "2")
    assert text.exit_code == 0 and len(text.stdout.strip().splitlines()) == 2


def test_similar_on_indexed_and_outside_files(indexed: Path, tmp_path: Path) -> None:
    query = sorted(indexed.glob("*.mp4"))[0]
    hits = json.loads(invoke("similar", query, "--json", "-n", "3").stdout)
    assert len(hits) == 3 and str(query) not in {h["path"] for h in hits}
    assert {"path", "start", "end", "score"} <= set(hits[0])
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(query.read_bytes())
    result = invoke("similar", outside, "--json", "-n", "1")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)[0]
    assert top["path"] == str(query) and top["score"] > 0.99  # the same content, embedded on the fly


def test_similar_at_a_moment_uses_that_window(library: Path, tiny_model: Path, tmp_path: Path) -> None:
    import numpy as np

    from vsearch.bench.synthetic import render_motion, write_video

    rng = np.random.default_rng(5)
    # 4 s each at 16 fps: one window each at the default --window
    first, second = render_motion("moving left", rng, frames=64), render_motion("growing", rng, frames=64)
    root = tmp_path / "moments"
    write_video(root / "both.mp4", np.concatenate([first, second]))
    write_video(root / "first.mp4", first)
    write_video(root / "second.mp4", second)
    assert invoke("index", root, library, "--model", tiny_model, "-q").exit_code == 0

    def top(file: Path, at: str) -> dict:
        result = invoke("similar", file, "--at", at, "--json", "-n", "3")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    # An indexed file: its stored vector of the window at that moment finds the same footage.
    assert [h["path"] for h in top(root / "both.mp4", "0:01")][0] == str(root / "first.mp4")
    assert [h["path"] for h in top(root / "both.mp4", "7.5")][0] == str(root / "second.mp4")
    # A file outside the index is embedded on the fly; both.mp4 matches it at the same moment.
    outside = tmp_path / "outside.mp4"
    outside.write_bytes((root / "both.mp4").read_bytes())
    early = {h["path"]: (h["start"], h["end"]) for h in top(outside, "1")[:2]}
    late = {h["path"]: (h["start"], h["end"]) for h in top(outside, "0:06")[:2]}
    assert early == {str(root / "both.mp4"): (0.0, 4.0), str(root / "first.mp4"): (0.0, 4.0)}
    assert late == {str(root / "both.mp4"): (4.0, 8.0), str(root / "second.mp4"): (0.0, 4.0)}


def test_labels_show_stats_classify_json(indexed: Path, tiny_model: Path) -> None:
    labels = json.loads(invoke("labels", "--json").stdout)
    assert labels and set(labels[0]) == {"label", "videos"}
    assert sum(item["videos"] for item in labels) >= 12
    ranked = json.loads(invoke("labels", "moving", "--json").stdout)  # the vocabulary, ranked by meaning
    assert {i["label"] for i in ranked[:4]} == {"moving left", "moving right", "moving up", "moving down"}
    assert [i["similarity"] for i in ranked] == sorted((i["similarity"] for i in ranked), reverse=True)
    video = sorted(indexed.glob("*.mp4"))[0]
    result = json.loads(invoke("classify", video, "--model", tiny_model, "--json", "-k", "3").stdout)
    assert result["path"] == str(video) and len(result["labels"]) == 3
    scores = [x["score"] for x in result["labels"]]
    assert scores == sorted(scores, reverse=True)
    shown = json.loads(invoke("show", video, "--json").stdout)
    assert shown["labels"][0]["label"] == result["labels"][0]["label"]  # one window: same answer


@pytest.mark.parametrize("args, message", [
    (("index", "/no/such/folder"), "no such file or folder"),
    (("search", "anything"), "no index at"),
    (("similar", "/no/such.mp4"), "no such file"),
    (("classify", "/no/such.mp4"), "no such file"),
    (("show", "/x.mp4"), "no index at"),
])
def test_bad_input_gives_one_clear_line(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_query_on_an_empty_index_and_an_unloadable_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert invoke("index", tmp_path / "empty", "-q").exit_code == 0
    result = invoke("search", "dancing")
    assert result.exit_code == 1 and "the index is empty" in result.stderr
    video = tmp_path / "v.mp4"
    import numpy as np

    from vsearch.bench.synthetic import render_motion, write_video
    write_video(video, render_motion("growing", np.random.default_rng(0)))
    bad = invoke("index", video, "--model", tmp_path / "not-a-model")
    assert bad.exit_code == 1 and "cannot load model" in bad.stderr and "Traceback" not in bad.output


def test_a_second_model_is_refused(indexed: Path, tmp_path: Path) -> None:
    from tests.conftest import save_tiny_videomae

    other = save_tiny_videomae(tmp_path / "other", ["x", "y"])
    result = invoke("index", indexed, "--model", other)
    assert result.exit_code == 1 and "built with model" in result.stderr


def test_control_characters_in_file_names_are_escaped(tmp_path: Path, tiny_model: Path) -> None:
    import numpy as np

    from vsearch.bench.synthetic import render_motion, write_video

    root = tmp_path / "odd"
    write_video(root / "evil\x1b[31mred\nline.mp4", render_motion("moving up", np.random.default_rng(0)))
    write_video(root / "ünïcode name with spaces.mp4", render_motion("moving up", np.random.default_rng(1)))
    assert invoke("index", root, "--model", tiny_model, "-q").exit_code == 0
    out = invoke("search", "moving").stdout
    assert "\x1b" not in out and "\\x1b[31mred\\nline.mp4" in out
    assert "ünïcode name with spaces.mp4" in out


def test_doctor_reports_clean_then_repairs_damage(indexed: Path, vsearch_home: Path) -> None:
    result = invoke("doctor")
    assert result.exit_code == 0 and "index is clean" in result.stdout
    from vsearch.search.vectors import current_file

    current_file(vsearch_home).write_bytes(b"corrupt")
    victim = sorted(indexed.glob("*.mp4"))[0]
    victim.unlink()
    import sqlite3

    with sqlite3.connect(vsearch_home / "vsearch.db") as conn:  # a killed run's leftover
        conn.execute("UPDATE videos SET status = 'indexing' WHERE path = ?", [str(sorted(indexed.glob('*.mp4'))[0])])
    result = invoke("doctor")
    assert result.exit_code == 0 and "index repaired" in result.stdout
    assert "repaired  faiss index" in result.stdout and "rebuilt from SQLite" in result.stdout
    assert "1 indexed file gone from disk; removed from the index" in result.stdout
    assert "1 video left by a killed run; removed for the next index to redo" in result.stdout
    assert "index is clean" in invoke("doctor").stdout
    stats = json.loads(invoke("stats", "--json").stdout)
    assert stats["videos"] == 10


def test_doctor_leaves_a_damaged_database_alone(tmp_path: Path, vsearch_home: Path) -> None:
    vsearch_home.mkdir(parents=True)
    (vsearch_home / "vsearch.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    result = invoke("doctor")
    assert result.exit_code == 1 and "left untouched" in result.stderr


def test_files_named_through_a_link_are_found(tmp_path: Path, tiny_model: Path, library: Path) -> None:
    import numpy as np

    from vsearch.bench.synthetic import render_motion, write_video

    link = tmp_path / "link"
    link.symlink_to(library)
    elsewhere = write_video(tmp_path / "elsewhere" / "outside.mp4", render_motion("moving up", np.random.default_rng(3)))
    assert invoke("index", link, elsewhere.parent, "--model", tiny_model, "-q").exit_code == 0  # stored resolved
    video = sorted(link.glob("*.mp4"))[0]
    shown = invoke("show", video, "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["path"] == str(video.resolve())
    everywhere = json.loads(invoke("search", "moving", "--json", "-n", "100").stdout)
    inside = [h for h in everywhere if h["path"].startswith(str(library.resolve()) + "/")]
    assert inside and len(inside) < len(everywhere)  # the link's videos, and one elsewhere
    assert json.loads(invoke("search", "moving", "--under", link, "--json", "-n", "100").stdout) == inside
    similar = json.loads(invoke("similar", video, "--json").stdout)
    assert similar and str(video.resolve()) not in {h["path"] for h in similar}


def test_index_leaves_out_excluded_folders_and_what_was_indexed_there(library: Path, tiny_model: Path) -> None:
    import shutil

    (library / "raw").mkdir()
    shutil.move(str(sorted(library.glob("*.mp4"))[0]), library / "raw" / "take.mp4")
    (library / "@eaDir").mkdir()  # a NAS preview cache: never indexed
    shutil.copy2(sorted(library.glob("*.mp4"))[1], library / "@eaDir" / "preview.mp4")
    first = invoke("index", library, "--model", tiny_model, "-q")
    assert first.exit_code == 0 and "16 videos found: 12 indexed" in first.stderr
    again = invoke("index", library, "--exclude", "raw", "--exclude", "*/nothing/*", "-q")
    assert again.exit_code == 0 and "15 videos found: 0 indexed (0 windows), 15 unchanged, 1 removed" in again.stderr
    stats = json.loads(invoke("stats", "--json").stdout)
    assert stats["videos"] == 11 and stats["windows"] == 11


@pytest.mark.parametrize("model, error", [
    ("/nope", "no such folder"),
    ("./nope", "no such folder"),
    ("MCG-NJU/videomae-base", "HF_HUB_OFFLINE is set"),
])
def test_index_with_a_model_that_cannot_be_had_says_why_in_one_line(library: Path, model: str, error: str) -> None:
    result = invoke("index", library, "--model", model)
    assert result.exit_code == 1 and error in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1


def test_similar_cuts_an_outside_file_like_the_index_was_cut(library: Path, tiny_model: Path, tmp_path: Path) -> None:
    """An index built with --window 2: a file outside it is embedded in 2 s windows too, so the
    same footage matches its stored window exactly."""
    import numpy as np

    from vsearch.bench.synthetic import render_motion, write_video
    from vsearch.core.home import default_home
    from vsearch.search.catalog import Catalog

    rng = np.random.default_rng(6)
    root = tmp_path / "short-windows"
    write_video(root / "both.mp4", np.concatenate([render_motion("moving left", rng, frames=64),
                                                   render_motion("growing", rng, frames=64)]))
    assert invoke("index", root, "--model", tiny_model, "--window", "2", "-q").exit_code == 0
    assert Catalog(default_home()).sampling == (2.0, 150)
    outside = tmp_path / "outside.mp4"
    outside.write_bytes((root / "both.mp4").read_bytes())
    for at, span in (("1", [0.0, 2.0]), ("5", [4.0, 6.0])):
        result = invoke("similar", outside, "--at", at, "--json", "-n", "1")
        assert result.exit_code == 0, result.output
        hit = json.loads(result.stdout)[0]
        assert [hit["start"], hit["end"]] == span and hit["score"] > 0.999, hit
