"""`vsearch tag` end to end: an index of generated motion videos (the demo model knows their labels),
sidecars written next to them and read back by ExifTool and Exiv2 (the readers gallery apps use),
re-runs that change nothing, both naming conventions, dry runs, bad sidecars reported and left
alone, and `index --tag` / `--watch --tag`. The sidecar format itself is tested in test_sidecar."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import vsearch
from vsearch import data
from vsearch.bench.synthetic import render_motion, write_video
from vsearch.cli.main import app

MOTION = str(data.path("motion-model"))
EXIFTOOL, EXIV2 = shutil.which("exiftool"), shutil.which("exiv2")
NAMES = {"left": ("moving left", "kids & \"cake\" <1> é.mp4"), "up": ("moving up", "plain.mp4"),
         "grow": ("growing", "a b  c.mp4")}


def motion_video(path: Path, motion: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_video(path, np.concatenate([render_motion(motion, rng, frames=32) for _ in range(2)]))


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[vsearch.Index, dict[str, Path]]:
    root = tmp_path / "Videos"
    videos = {key: motion_video(root / name, motion, seed) for seed, (key, (motion, name)) in enumerate(NAMES.items())}
    idx = vsearch.Index(tmp_path / "home")
    idx.index([root], model=MOTION, window=2.0, text_model="none", runtime="torch", precision="fp32")
    return idx, videos


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tag(*args: object) -> object:
    return CliRunner().invoke(app, ["tag", *map(str, args)])


@pytest.mark.skipif(not (EXIFTOOL and EXIV2), reason="needs exiftool and exiv2 (apt-get install libimage-exiftool-perl exiv2)")
def test_every_indexed_video_gets_a_sidecar_that_gallery_readers_read(indexed) -> None:
    idx, videos = indexed
    before = {k: digest(v) for k, v in videos.items()}
    result = tag("--home", idx.home.root, "--json")
    assert result.exit_code == 0, result.output
    report = {Path(r["video"]).name: r for r in json.loads(result.stdout)}
    assert set(report) == {name for _, name in NAMES.values()}
    for key, (motion, name) in NAMES.items():
        sidecar = videos[key].with_name(name + ".xmp")
        assert report[name]["action"] == "created" and report[name]["sidecar"] == str(sidecar)
        assert motion in report[name]["tags"]
        read = json.loads(subprocess.run([EXIFTOOL, "-j", "-struct", "-XMP-dc:Subject", "-XMP-digiKam:TagsList",
                                          "-XMP-lr:HierarchicalSubject", "-XMP-xmpDM:Tracks", str(sidecar)],
                                         capture_output=True, text=True, check=True).stdout)[0]
        subjects = read["Subject"] if isinstance(read["Subject"], list) else [read["Subject"]]
        tags_list = read["TagsList"] if isinstance(read["TagsList"], list) else [read["TagsList"]]
        assert motion in subjects and f"vsearch/{motion}" in tags_list
        assert f"vsearch|{motion}" in (read["HierarchicalSubject"] if isinstance(read["HierarchicalSubject"], list)
                                       else [read["HierarchicalSubject"]])
        (track,) = [t for t in read["Tracks"] if t["TrackName"] == "vsearch"]
        marks = [m for m in track["Markers"] if m["Name"] == motion]
        assert marks and track["FrameRate"] == "f16"  # the video's own rate: times in frames
        starts = {int(m["StartTime"]) for m in marks}
        shown = {round(m.start * 16) for m in idx.moments(videos[key]).moments if m.label == motion}
        assert starts == shown
        exiv = subprocess.run([EXIV2, "-PXkv", str(sidecar)], capture_output=True, text=True).stdout
        assert "Xmp.digiKam.TagsList" in exiv and f"vsearch/{motion}" in exiv
    assert {k: digest(v) for k, v in videos.items()} == before  # the videos themselves untouched


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
    try:
        video = motion_video(tmp_path / "new.mp4", "moving left", 5)
        shutil.move(str(video), root / "new.mp4")
        sidecar = root / "new.mp4.xmp"
        deadline = time.monotonic() + 120
        while not sidecar.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sidecar.exists() and "moving left" in sidecar.read_text()
        settled = sum(r.indexed for r in reports)
        time.sleep(6)  # a sidecar event, were it taken for a video, would be indexed by now
        assert sum(r.indexed for r in reports) == settled == 1 and not any(r.failed for r in reports)
    finally:
        stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert [v["path"] for v in idx.stats()["failures"]] == []
