"""`vsearch tag` end to end: the rule that picks a video's tags (through the library and the command
line, on a video whose every window's labels the test decides), sidecars of an index of generated
motion videos (the demo model knows their labels) read back by ExifTool and Exiv2 (the readers
gallery apps use), re-runs that change nothing, both naming conventions, dry runs, bad sidecars
reported and left alone, and `index --tag` / `--watch --tag`. The sidecar format itself is tested
in test_sidecar."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from typer.testing import CliRunner

import vsearch
from tests.conftest import FakeEncoder
from tests.tools import require
from vsearch import data
from vsearch.bench.synthetic import render_motion, write_video
from vsearch.cli.main import app

MOTION = str(data.path("motion-model"))
NAMES = {"left": ("moving left", "kids & \"cake\" <1> é.mp4"), "up": ("moving up", "plain.mp4"),
         "grow": ("growing", "a b  c.mp4")}
# The namespaces as gallery apps know them, spelled here rather than taken from vsearch
XMP_NS = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/",
          "digiKam": "http://www.digikam.org/ns/1.0/", "lr": "http://ns.adobe.com/lightroom/1.0/"}


def motion_video(path: Path, motion: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_video(path, np.concatenate([render_motion(motion, rng, frames=32) for _ in range(2)]))


def index_three(tmp_path: Path) -> tuple[vsearch.Index, dict[str, Path]]:
    root = tmp_path / "Videos"
    videos = {key: motion_video(root / name, motion, seed) for seed, (key, (motion, name)) in enumerate(NAMES.items())}
    idx = vsearch.Index(tmp_path / "home")
    idx.index([root], model=MOTION, window=2.0, text_model="none", runtime="torch", precision="fp32")
    return idx, videos


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[vsearch.Index, dict[str, Path]]:
    return index_three(tmp_path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def untouched(path: Path) -> tuple[str, int]:
    """What a write to a file would change: its bytes, or at least its mtime."""
    return digest(path), path.stat().st_mtime_ns


def tag(*args: object) -> object:
    return CliRunner().invoke(app, ["tag", *map(str, args)])


def xmp_list(sidecar: Path, prefix: str, name: str) -> list[str]:
    """The items of one list property of a sidecar ([] without a sidecar)."""
    if not sidecar.exists():
        return []
    return [str(v) for v in etree.fromstring(sidecar.read_bytes()).xpath(f"//{prefix}:{name}/*/rdf:li/text()",
                                                                         namespaces=XMP_NS)]


# --- which labels are tags ------------------------------------------------------------------------

# What the model says of each one-second window of a video: its labels with their scores (the rest
# of the probability spread evenly over the other labels). "juggling" is never a window's best
# label, so it can never be a tag, though it sits in the top five of most windows.
SCRIPT = [
    {"walking": 0.90, "juggling": 0.06},
    {"walking": 0.80, "dancing": 0.12, "juggling": 0.05},
    {"running": 0.60, "walking": 0.30, "juggling": 0.05},
    {"dancing": 0.45, "running": 0.40, "juggling": 0.10},
    {"walking": 0.70, "cooking": 0.20, "juggling": 0.08},
    {"cooking": 0.55, "walking": 0.40},
    {"running": 0.95},
    {"swimming": 0.30, "cooking": 0.28, "juggling": 0.27},
]
SCRIPT_LABELS = ["walking", "running", "dancing", "cooking", "swimming", "juggling", "reading", "other"]


def grey(k: int) -> int:
    """The grey level of window k's frames: how the scripted model knows which window it sees."""
    return 20 + 25 * k


class ScriptedEncoder(FakeEncoder):
    """A model that says of each window what SCRIPT says, reading the window from its grey level."""

    name = "scripted"
    labels = SCRIPT_LABELS

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, embeddings = super().encode(frames)
        probs = []
        for clip in frames:
            said = SCRIPT[round((float(clip.mean()) - grey(0)) / (grey(1) - grey(0)))]
            rest = (1 - sum(said.values())) / (len(self.labels) - len(said))
            probs.append([said.get(label, rest) for label in self.labels])
        return np.array(probs, np.float32), embeddings


def expected_tags(min_score: float = 0.5, min_windows: int = 1, top: int = 10) -> tuple[str, ...]:
    """The rule as `vsearch tag --help` and the docs state it, worked out from SCRIPT: a label is a
    tag when it is the best label of at least `min_windows` windows with at least `min_score`
    each; the most frequent first (then the surest, then by name), `top` at most."""
    counts: dict[str, int] = {}
    surest: dict[str, float] = {}
    for window in SCRIPT:
        label, score = max(window.items(), key=lambda item: item[1])
        if score >= min_score:
            counts[label] = counts.get(label, 0) + 1
            surest[label] = max(surest.get(label, 0.0), score)
    chosen = sorted((label for label, n in counts.items() if n >= min_windows),
                    key=lambda label: (-counts[label], -surest[label], label))
    return tuple(chosen[:top])


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An index (its home) of one 8-second video whose windows the scripted model labels; the video."""
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.search.catalog import Catalog
    from vsearch.video.decode import Sampling

    root = tmp_path_factory.mktemp("scripted")
    frames = np.concatenate([np.full((8, 32, 32, 3), grey(k), np.uint8) for k in range(len(SCRIPT))])
    video = write_video(root / "videos" / "day.mp4", frames, fps=8)
    catalog = Catalog(root / "home")
    report = Indexer(catalog, ScriptedEncoder, IndexSettings(sampling=Sampling(window_seconds=1.0), workers=1)).run(
        [video.parent])
    assert report.indexed == 1 and catalog.window_count() == len(SCRIPT)
    catalog.close()
    return root / "home", video


# (the rule's fields, the tags the rule gives from SCRIPT); counts at 0.5: walking 3, running 2, cooking 1
RULES = [
    ({}, ("walking", "running", "cooking")),
    ({"min_score": 0.4}, ("walking", "running", "cooking", "dancing")),  # dancing's 0.45 counts now
    ({"min_score": 0.25}, ("walking", "running", "cooking", "dancing", "swimming")),
    ({"min_score": 0.85}, ("running", "walking")),  # once each: the surer first
    ({"min_windows": 2}, ("walking", "running")),
    ({"min_score": 0.4, "top": 3}, ("walking", "running", "cooking")),
    ({"top": 1}, ("walking",)),
    ({"min_windows": 4}, ()),
]


@pytest.mark.parametrize(("rule", "tags"), RULES)
def test_the_tag_rule_through_the_library(scripted: tuple[Path, Path], rule: dict, tags: tuple[str, ...]) -> None:
    home, video = scripted
    assert expected_tags(**rule) == tags  # the table above is the documented rule
    (result,) = vsearch.Index(home).tag(**rule).results
    assert result.tags == tags and result.action != "failed"
    sidecar = Path(result.sidecar)
    assert sidecar == video.with_name("day.mp4.xmp")
    # the sidecar holds these and nothing else (merged in place: an earlier run's order stays)
    assert sorted(xmp_list(sidecar, "dc", "subject")) == sorted(tags)
    assert sorted(xmp_list(sidecar, "digiKam", "TagsList")) == sorted(f"vsearch/{t}" for t in tags)


@pytest.mark.parametrize(("rule", "prefix", "tags"), [
    ({"min_score": 0.4, "top": 3}, "auto", ("walking", "running", "cooking")),
    ({"min_windows": 2}, "", ("walking", "running")),
    ({"min_score": 0.85, "min_windows": 1}, "vsearch", ("running", "walking")),
    ({"min_score": 0.25, "top": 4}, "library/auto", ("walking", "running", "cooking", "dancing")),
])
def test_the_tag_rule_through_the_command_line(scripted: tuple[Path, Path], rule: dict, prefix: str,
                                               tags: tuple[str, ...]) -> None:
    home, _ = scripted
    assert expected_tags(**rule) == tags
    flags = [item for name, value in rule.items() for item in (f"--{name.replace('_', '-')}", value)]
    result = tag("--home", home, "--json", "--prefix", prefix, *flags)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert tuple(row["tags"]) == tags
    sidecar = Path(row["sidecar"])
    assert sorted(xmp_list(sidecar, "dc", "subject")) == sorted(tags)
    root = f"{prefix}/" if prefix else ""
    assert sorted(xmp_list(sidecar, "digiKam", "TagsList")) == sorted(root + t for t in tags)
    assert sorted(xmp_list(sidecar, "lr", "hierarchicalSubject")) == sorted(root.replace("/", "|") + t for t in tags)


# --- sidecars of a real index, read back by gallery readers ---------------------------------------


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> tuple[vsearch.Index, dict[str, Path], dict[str, dict]]:
    """Three indexed videos, tagged by `vsearch tag --json`: (index, videos, the report by file name).
    The videos are checked untouched, by bytes and mtime, after the run."""
    idx, videos = index_three(tmp_path_factory.mktemp("tagged"))
    before = {k: untouched(v) for k, v in videos.items()}
    result = tag("--home", idx.home.root, "--json")
    assert result.exit_code == 0, result.output
    assert {k: untouched(v) for k, v in videos.items()} == before  # the videos themselves never written
    return idx, videos, {Path(r["video"]).name: r for r in json.loads(result.stdout)}


def test_every_indexed_video_gets_a_sidecar_with_its_motion(tagged) -> None:
    idx, videos, report = tagged
    assert set(report) == {name for _, name in NAMES.values()}
    for key, (motion, name) in NAMES.items():
        sidecar = videos[key].with_name(name + ".xmp")
        assert report[name]["action"] == "created" and report[name]["sidecar"] == str(sidecar)
        assert motion in report[name]["tags"]
        assert xmp_list(sidecar, "dc", "subject") == report[name]["tags"]


def test_exiftool_reads_the_tags_and_the_moments(tagged) -> None:
    idx, videos, report = tagged
    for key, (motion, name) in NAMES.items():
        sidecar = videos[key].with_name(name + ".xmp")
        read = json.loads(subprocess.run([require("exiftool"), "-j", "-struct", "-XMP-dc:Subject", "-XMP-digiKam:TagsList",
                                          "-XMP-lr:HierarchicalSubject", "-XMP-xmpDM:Tracks", str(sidecar)],
                                         capture_output=True, text=True, check=True).stdout)[0]
        subjects = read["Subject"] if isinstance(read["Subject"], list) else [read["Subject"]]
        tags_list = read["TagsList"] if isinstance(read["TagsList"], list) else [read["TagsList"]]
        assert subjects == report[name]["tags"] and f"vsearch/{motion}" in tags_list
        assert f"vsearch|{motion}" in (read["HierarchicalSubject"] if isinstance(read["HierarchicalSubject"], list)
                                       else [read["HierarchicalSubject"]])
        (track,) = [t for t in read["Tracks"] if t["TrackName"] == "vsearch"]
        marks = [m for m in track["Markers"] if m["Name"] == motion]
        assert marks and track["FrameRate"] == "f16"  # the video's own rate: times in frames
        starts = {int(m["StartTime"]) for m in marks}
        shown = {round(m.start * 16) for m in idx.moments(videos[key]).moments if m.label == motion}
        assert starts == shown


def test_exiv2_reads_the_tags_and_the_moments(tagged) -> None:
    idx, videos, report = tagged
    for key, (motion, name) in NAMES.items():
        sidecar = videos[key].with_name(name + ".xmp")
        exiv = subprocess.run([require("exiv2"), "-PXkv", str(sidecar)], capture_output=True, text=True,
                              check=True).stdout
        keys = dict(line.partition(" ")[::2] for line in exiv.splitlines())
        assert keys["Xmp.dc.subject"].strip() == ", ".join(report[name]["tags"])
        assert f"vsearch/{motion}" in keys["Xmp.digiKam.TagsList"]
        assert keys["Xmp.xmpDM.Tracks[1]/xmpDM:trackName"].strip() == "vsearch"
        names = [v.strip() for k, v in keys.items() if k.startswith("Xmp.xmpDM.Tracks[1]/xmpDM:markers[")
                 and k.endswith("]/xmpDM:name")]
        assert motion in names


def test_a_second_run_changes_no_byte_and_the_other_naming(indexed) -> None:
    idx, videos = indexed
    first = idx.tag()
    assert first.count("created") == 3
    sidecars = {Path(r.sidecar): (digest(Path(r.sidecar)), Path(r.sidecar).stat().st_mtime_ns) for r in first.results}
    again = idx.tag()
    assert again.count("unchanged") == 3 and again.count("updated") == again.count("created") == 0
    assert {p: (digest(p), p.stat().st_mtime_ns) for p in sidecars} == sidecars
    lightroom = idx.tag(sidecar="clip.xmp", markers=False)
    assert lightroom.count("created") == 3
    assert videos["up"].with_suffix(".xmp").exists() and "Tracks" not in videos["up"].with_suffix(".xmp").read_text()


def test_dry_run_writes_nothing_and_says_what_would_change(indexed) -> None:
    idx, videos = indexed
    result = tag(videos["up"].parent, "--home", idx.home.root, "--dry-run")
    assert result.exit_code == 0 and "would be created" in result.stdout
    assert not list(videos["up"].parent.glob("*.xmp"))
    assert "3 videos: 3 sidecars would be created" in result.stderr


def test_a_bad_sidecar_is_reported_left_alone_and_the_run_goes_on(indexed) -> None:
    idx, videos = indexed
    broken = videos["up"].with_name("plain.mp4.xmp")
    broken.write_text("<x:xmpmeta this is not XML")
    locked = videos["grow"].with_name("a b  c.mp4.xmp")  # a user's sidecar, read-only
    locked.write_text('<?xml version="1.0"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
                      'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
                      'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>\n')
    locked.chmod(0o444)
    before = {p: (digest(p), p.stat().st_mtime_ns) for p in (broken, locked)}
    result = tag("--home", idx.home.root)
    assert result.exit_code == 0, result.output
    assert "plain.mp4.xmp" in result.stderr and "a b  c.mp4.xmp" in result.stderr and "1 sidecars created" in result.stderr
    assert "2 failed" in result.stderr
    assert {p: (digest(p), p.stat().st_mtime_ns) for p in (broken, locked)} == before
    assert videos["left"].with_name(NAMES["left"][1] + ".xmp").exists()


def wait_for(what: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.1)


def test_index_tag_writes_sidecars_and_a_sidecar_never_triggers_reindexing(tmp_path: Path) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    idx = vsearch.Index(tmp_path / "home")
    reports: list[vsearch.IndexReport] = []
    stop = threading.Event()
    options = dict(model=MOTION, window=2.0, text_model="none", runtime="torch", precision="fp32")
    idx.index([root], **options)  # bind the model: the watch loop starts on an existing index
    runner = threading.Thread(target=lambda: idx.index([root], tag=vsearch.TagRule(), watch=True, rescan=None,
                                                       should_stop=stop.is_set, on_report=reports.append, **options))
    runner.start()

    def changed() -> list[str]:
        return [path for r in list(reports) for path in r.changed]

    try:
        video = motion_video(tmp_path / "new.mp4", "moving left", 5)
        shutil.move(str(video), root / "new.mp4")
        wait_for(lambda: bool(changed()), 120)  # a report comes after its sidecars are written
        assert "moving left" in (root / "new.mp4.xmp").read_text()
        # A video dropped in after that sidecar was written settles after the sidecar's own file
        # event: were the sidecar taken for a video, it would be indexed (or failed) by then.
        later = motion_video(tmp_path / "later.mp4", "moving up", 6)
        shutil.move(str(later), root / "later.mp4")
        wait_for(lambda: len(changed()) >= 2, 120)
        assert changed() == [str(root / "new.mp4"), str(root / "later.mp4")]
        assert sum(r.indexed for r in reports) == 2 and not any(r.failed for r in reports)
        assert "moving up" in (root / "later.mp4.xmp").read_text()
    finally:
        stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert [v["path"] for v in idx.stats()["failures"]] == []
