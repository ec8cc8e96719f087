"""Subtitles in, as plain-text cues: streams inside files, sidecar files, their encodings and markup;
bitmap tracks reported; and subtitle files out, atomically, never over a file vsearch did not write."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests.speech_fixtures import needs_ffmpeg
from vsearch.core.errors import SidecarError
from vsearch.video import subtitles
from vsearch.video.subtitles import (
    Cue,
    decode_text,
    file_digest,
    plain_text,
    read_sidecars,
    read_streams,
    render_subtitles,
    sidecar_paths,
    write_subtitles,
)

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>Happy</i> <font color="red">birthday</font>

2
00:00:03,000 --> 00:00:04,000
dear Oliver
happy birthday to you
"""
ASS = r"""[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,0,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\i1}Strawberry{\i0} jam\Nis sweet
Dialogue: 1,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\i1}Strawberry{\i0} jam\Nis sweet
Dialogue: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,{\pos(10,10)\c&H0000FF&}Wooden {\p1}m 0 0 l 10 0 10 10{\p0}bridge
"""
VTT = """WEBVTT

00:01.000 --> 00:02.500
<v Bob>The train to <b>London</b>

00:03.000 --> 00:04.000 align:start
leaves at seven &amp; on time
"""
FRENCH = "Le café est très chaud, à côté de la crème brûlée."
RUSSIAN = "Привет, как дела? Сегодня хорошая погода."
POLISH = "Zażółć gęślą jaźń, powiedział źrebak."


def srt_of(line: str) -> str:
    return f"1\n00:00:01,000 --> 00:00:02,000\n{line}\n"


def codecs_bom(encoding: str) -> bytes:
    import codecs

    return {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}[encoding]


def pgs_bytes() -> bytes:
    """A minimal PGS stream (Blu-ray bitmap subtitles): two display sets of a composition and an end
    segment each, enough for FFmpeg to demux it as hdmv_pgs_subtitle."""
    def segment(pts: int, kind: int, data: bytes = b"") -> bytes:
        return b"PG" + struct.pack(">IIBH", pts, 0, kind, len(data)) + data

    def composition(number: int, state: int) -> bytes:
        return struct.pack(">HHBHBBBB", 64, 48, 0x10, number, state, 0, 0, 0)

    return (segment(90000, 0x16, composition(0, 0x80)) + segment(90000, 0x80)
            + segment(180000, 0x16, composition(1, 0)) + segment(180000, 0x80))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos with subtitle streams of each kind, made by FFmpeg's command line."""
    root = tmp_path_factory.mktemp("subtitle-streams")
    for name, text in (("a.srt", SRT), ("a.ass", ASS), ("a.vtt", VTT)):
        (root / name).write_text(text)
    (root / "a.sup").write_bytes(pgs_bytes())
    picture = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=5"]
    sound = ["-f", "lavfi", "-i", "sine=duration=5"]
    ffmpeg(*picture, *sound, "-i", str(root / "a.srt"), "-i", str(root / "a.ass"), "-i", str(root / "a.vtt"),
           "-map", "0", "-map", "1", "-map", "2", "-map", "3", "-map", "4", "-c:v", "libx264", "-c:a", "aac",
           "-c:s:0", "srt", "-c:s:1", "ass", "-c:s:2", "webvtt", "-metadata:s:s:0", "language=eng",
           "-metadata:s:s:1", "language=fre", "-disposition:s:1", "forced", str(root / "streams.mkv"))
    ffmpeg(*picture, "-i", str(root / "a.srt"), "-map", "0", "-map", "1", "-c:v", "libx264", "-c:s", "mov_text",
           str(root / "movtext.mp4"))
    ffmpeg(*picture, "-i", str(root / "a.sup"), "-i", str(root / "a.srt"), "-map", "0", "-map", "1", "-map", "2",
           "-c:v", "libx264", "-c:s:0", "copy", "-c:s:1", "srt", str(root / "bluray.mkv"))
    ffmpeg(*picture, "-c:v", "libx264", str(root / "plain.mp4"))
    return root


@needs_ffmpeg
def test_subrip_ass_and_webvtt_streams_in_matroska(media: Path) -> None:
    tracks, skipped = read_streams(media / "streams.mkv")
    assert skipped == []
    assert [(t.codec, t.stream, t.language, t.forced) for t in tracks] == [
        ("subrip", 2, "eng", False), ("ass", 3, "fre", True), ("webvtt", 4, None, False)]
    subrip, ass, webvtt = (t.cues for t in tracks)
    # Matroska starts every stream after the AAC encoder's delay: the times are still the file's own
    assert subrip == (Cue(1.0, 2.5, "Happy birthday"), Cue(3.0, 4.0, "dear Oliver\nhappy birthday to you"))
    # a line drawn twice (two layers) is one cue; the drawing inside {\p1}...{\p0} is not text
    assert ass == (Cue(1.0, 2.5, "Strawberry jam\nis sweet"), Cue(3.0, 4.0, "Wooden bridge"))
    assert webvtt == (Cue(1.0, 2.5, "The train to London"), Cue(3.0, 4.0, "leaves at seven & on time"))


@needs_ffmpeg
def test_mov_text_stream_in_mp4(media: Path) -> None:
    tracks, skipped = read_streams(media / "movtext.mp4")
    assert skipped == [] and [t.codec for t in tracks] == ["mov_text"]
    assert tracks[0].cues == (Cue(1.0, 2.5, "Happy birthday"), Cue(3.0, 4.0, "dear Oliver\nhappy birthday to you"))


@needs_ffmpeg
def test_bitmap_streams_are_reported_and_skipped(media: Path) -> None:
    tracks, skipped = read_streams(media / "bluray.mkv")
    assert [t.codec for t in tracks] == ["subrip"]
    assert [(s.codec, s.stream) for s in skipped] == [("hdmv_pgs_subtitle", 1)]
    assert "bitmap subtitles (PGS)" in skipped[0].reason


@needs_ffmpeg
def test_a_video_without_subtitle_streams(media: Path, tmp_path: Path) -> None:
    assert read_streams(media / "plain.mp4") == ([], [])
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 not really")
    tracks, skipped = read_streams(broken)
    assert tracks == [] and "not a readable media file" in skipped[0].reason


def write_sidecars(folder: Path) -> Path:
    video = folder / "clip.mp4"
    video.write_bytes(b"")  # sidecars are found by name; the video is never opened
    (folder / "clip.srt").write_text(SRT)
    (folder / "clip.en.srt").write_bytes(SRT.encode("utf-8-sig"))
    (folder / "clip.vtt").write_text(VTT)
    (folder / "clip.fr.forced.ass").write_text(ASS)
    (folder / "clip.sup").write_bytes(pgs_bytes())
    (folder / "clip.part2.mp4").write_bytes(b"")  # another video: clip.part2.srt is its own
    (folder / "clip.part2.srt").write_text(SRT)
    (folder / "clipper.srt").write_text(SRT)
    (folder / "clip.broken.srt").write_text("this is not a subtitle file")
    return video


def test_sidecars_beside_a_video(tmp_path: Path) -> None:
    video = write_sidecars(tmp_path)
    names = [p.name for p in sidecar_paths(video)]
    assert names == ["clip.broken.srt", "clip.en.srt", "clip.fr.forced.ass", "clip.srt", "clip.sup", "clip.vtt"]
    tracks, skipped = read_sidecars(video)
    by_name = {Path(t.path).name: t for t in tracks}
    assert sorted(by_name) == ["clip.en.srt", "clip.fr.forced.ass", "clip.srt", "clip.vtt"]
    assert by_name["clip.srt"].cues == by_name["clip.en.srt"].cues == (
        Cue(1.0, 2.5, "Happy birthday"), Cue(3.0, 4.0, "dear Oliver\nhappy birthday to you"))
    assert (by_name["clip.srt"].language, by_name["clip.en.srt"].language) == (None, "en")
    assert by_name["clip.en.srt"].encoding == "utf-8-bom"
    assert (by_name["clip.fr.forced.ass"].language, by_name["clip.fr.forced.ass"].forced) == ("fr", True)
    assert by_name["clip.fr.forced.ass"].cues[1] == Cue(3.0, 4.0, "Wooden bridge")
    assert [c.text for c in by_name["clip.vtt"].cues] == ["The train to London", "leaves at seven & on time"]
    assert all(t.stream is None for t in tracks)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert "bitmap subtitles (PGS)" in reasons["clip.sup"]
    assert "clip.broken.srt" in reasons  # read, but holds no lines: reported, not a crash


@pytest.mark.parametrize(("name", "data", "text", "encoding"), [
    ("clip.srt", srt_of(FRENCH).encode("utf-8-sig"), FRENCH, "utf-8-bom"),
    ("clip.srt", codecs_bom("utf-16-le") + srt_of(FRENCH).encode("utf-16-le"), FRENCH, "utf-16-le-bom"),
    ("clip.srt", codecs_bom("utf-16-be") + srt_of(RUSSIAN).encode("utf-16-be"), RUSSIAN, "utf-16-be-bom"),
    ("clip.srt", srt_of(FRENCH).encode("utf-16-le"), FRENCH, "utf-16-le"),  # no mark: every other byte zero
    ("clip.srt", srt_of(FRENCH).encode("cp1252"), FRENCH, "cp1252"),
    ("clip.srt", srt_of(RUSSIAN).encode("cp1251"), RUSSIAN, "cp1251"),
    ("clip.pl.srt", srt_of(POLISH).encode("cp1250"), POLISH, "cp1250"),  # the name's language decides
    ("clip.srt", srt_of(POLISH).encode("utf-8"), POLISH, "utf-8"),
], ids=["utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le-no-bom", "cp1252-french", "cp1251-russian",
        "cp1250-by-name", "utf8"])
def test_encodings(tmp_path: Path, name: str, data: bytes, text: str, encoding: str) -> None:
    video = tmp_path / "clip.mkv"
    video.write_bytes(b"")
    (tmp_path / name).write_bytes(data)
    tracks, skipped = read_sidecars(video)
    assert skipped == []
    assert [(t.cues[0].text, t.encoding) for t in tracks] == [(text, encoding)]


def test_decode_text_of_legacy_pages_without_a_name() -> None:
    assert decode_text(FRENCH.encode("cp1252")) == (FRENCH, "cp1252")
    assert decode_text(RUSSIAN.encode("cp1251"))[0] == RUSSIAN


@pytest.mark.parametrize(("markup", "text"), [
    (r"{\an8}{\i1}Hello{\i0}\Nworld", "Hello\nworld"),
    ("<i>Hello</i> <font color=\"#ff0000\">world</font>", "Hello world"),
    (r"{\p1}m 0 0 l 100 0 100 100{\p0}Sign", "Sign"),
    ("Tom &amp; Jerry &lt;3", "Tom & Jerry <3"),
    (r"a\hb   c", "a b c"),
    (r"{\k20}Ka{\k30}ra{\k40}oke", "Karaoke"),
    ("  \n  ", ""),
])
def test_markup_is_stripped(markup: str, text: str) -> None:
    assert plain_text(markup) == text


CUES = [Cue(1.0, 2.5, "Happy birthday"), Cue(3.25, 4.0, "dear Oliver & you\nhappy birthday"), Cue(3661.5, 3662.0, "late")]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_written_subtitles_read_back_the_same(tmp_path: Path, fmt: str) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    digest = write_subtitles(tmp_path / f"clip.{fmt}", CUES)
    assert digest == file_digest(tmp_path / f"clip.{fmt}")
    tracks, _ = read_sidecars(video)
    assert tracks[0].cues == tuple(CUES)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", f"clip.{fmt}"]  # no temporary file left


def test_rendered_formats() -> None:
    srt = render_subtitles(CUES[:2], "srt")
    assert srt.startswith("1\n00:00:01,000 --> 00:00:02,500\nHappy birthday\n\n2\n00:00:03,250 --> 00:00:04,000\n")
    vtt = render_subtitles(CUES, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\n") and "dear Oliver &amp; you" in vtt
    assert "01:01:01.500 --> 01:01:02.000" in vtt
    assert "->" in render_subtitles([Cue(0, 1, "a --> b")], "srt") and "-->" not in render_subtitles(
        [Cue(0, 1, "a --> b")], "srt").splitlines()[2]
    with pytest.raises(SidecarError, match="srt or vtt"):
        render_subtitles(CUES, "ass")


def test_never_overwrites_a_file_vsearch_did_not_write(tmp_path: Path) -> None:
    theirs = tmp_path / "clip.srt"
    theirs.write_text(SRT)
    with pytest.raises(SidecarError, match="vsearch did not write it"):
        write_subtitles(theirs, CUES)
    with pytest.raises(SidecarError, match="not the file vsearch wrote"):
        write_subtitles(theirs, CUES, replaces="0" * 64)  # a record of some other file
    assert theirs.read_text() == SRT and os.listdir(tmp_path) == ["clip.srt"]


def test_replaces_its_own_file_until_someone_edits_it(tmp_path: Path) -> None:
    ours = tmp_path / "clip.vtt"
    first = write_subtitles(ours, CUES[:1])
    second = write_subtitles(ours, CUES, replaces=first)
    assert second != first and file_digest(ours) == second
    ours.write_text(ours.read_text() + "\n00:00:09.000 --> 00:00:10.000\nmy own line\n")  # a person edits it
    with pytest.raises(SidecarError, match="not the file vsearch wrote"):
        write_subtitles(ours, CUES, replaces=second)
    assert "my own line" in ours.read_text()


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the check and the rename another program creates the file: vsearch's is not put over it."""
    target = tmp_path / "clip.srt"
    real_link = os.link

    def link_after_someone(src: str | Path, dst: str | Path) -> None:
        Path(dst).write_text("someone else's\n")
        real_link(src, dst)

    monkeypatch.setattr(subtitles.os, "link", link_after_someone)
    with pytest.raises(SidecarError, match="did not write it"):
        write_subtitles(target, CUES)
    assert target.read_text() == "someone else's\n" and os.listdir(tmp_path) == ["clip.srt"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = tmp_path / "clip.srt"
    digest = write_subtitles(ours, CUES)
    before = ours.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(subtitles.os, "fsync", disk_full)
    with pytest.raises(SidecarError, match="No space left on device"):
        write_subtitles(ours, CUES[:1], replaces=digest)
    assert ours.read_bytes() == before and os.listdir(tmp_path) == ["clip.srt"]
