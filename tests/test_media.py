"""Thumbnails made at index time, frame-accurate clip export, and transcoding for the browser."""

from __future__ import annotations

import shutil
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import FakeEncoder
from vsearch.core.home import Home
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search.catalog import Catalog
from vsearch.video import media
from vsearch.video.media import MediaBusy, MediaError, export_clip, export_moments, playable
from vsearch.video.thumbs import thumb_path

FPS = 10
STEP = 4  # grey level per frame: frame i is a flat image of brightness STEP * i


def counter_video(path: Path, frames: int = 60, size: tuple[int, int] = (96, 64), audio: bool = True,
                  codec: str = "libx264", gop: int = 30) -> Path:
    """Frame i is a flat grey of level STEP * i, so a decoded frame tells its own index; keyframes
    every `gop` frames, so most cut points are not keyframes. Audio: a 440 Hz tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=FPS)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.codec_context.gop_size = gop
        v.bit_rate = 4_000_000  # flat frames stay exact even with older codecs (MPEG-4 Part 2)
        a = out.add_stream("aac", rate=48000) if audio else None
        samples = 0
        for i in range(frames):
            image = np.full((h, w, 3), STEP * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(v.encode(frame))
            while a is not None and samples < (i + 1) * 48000 // FPS:
                t = (samples + np.arange(1024)) / 48000
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, samples
                out.mux(a.encode(chunk))
                samples += 1024
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return path


def frame_levels(path: Path) -> list[int]:
    """The frame index each decoded frame shows, read from its brightness."""
    with av.open(str(path)) as c:
        return [int(round(f.to_ndarray(format="gray").mean() / STEP)) for f in c.decode(video=0)]


def streams(path: Path) -> dict[str, object]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        audio_seconds = 0.0
        if audio is not None:
            audio_seconds = sum(f.samples for f in c.decode(audio=0)) / audio.codec_context.sample_rate
        return {"video": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt,
                "audio": audio.codec_context.name if audio else None, "audio_seconds": audio_seconds}


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return counter_video(tmp_path_factory.mktemp("media") / "counter.mp4")


# -- thumbnails at index time -----------------------------------------------------------------

def index(home: Path, root: Path, **settings) -> Catalog:
    cat = Catalog(home)
    Indexer(cat, FakeEncoder, IndexSettings(batch_size=4, workers=1, timeout=20, **settings)).run([root])
    return cat


def windows_of(cat: Catalog) -> list[tuple[int, float, float]]:
    return [tuple(r) for r in cat.db.execute("SELECT id, start, end FROM windows ORDER BY id")]


def test_index_writes_a_thumbnail_of_each_windows_middle_frame(tmp_path: Path, vsearch_home: Path) -> None:
    counter_video(tmp_path / "v" / "counter.mp4", frames=60, size=(640, 360), audio=False)
    cat = index(vsearch_home, tmp_path / "v", sampling=media_sampling(2.0))
    windows = windows_of(cat)
    assert len(windows) == 3  # 6 s in windows of 2 s
    for window_id, start, end in windows:
        jpeg = thumb_path(vsearch_home, window_id)
        with av.open(str(jpeg)) as c:
            image = next(c.decode(video=0))
        assert (image.width, image.height) == (320, 180)
        shown = image.to_ndarray(format="gray").mean() / STEP
        # FakeEncoder takes 4 frames per window; the thumbnail is the third, as in Window.frames
        window_frames = np.minimum((start + (np.arange(4) + 0.5) * (end - start) / 4) * FPS, 59).astype(int)
        assert abs(shown - window_frames[2]) < 1


def test_thumbnails_go_with_their_video(tmp_path: Path, vsearch_home: Path) -> None:
    video = counter_video(tmp_path / "v" / "a.mp4", size=(320, 180), audio=False)
    cat = index(vsearch_home, tmp_path / "v", sampling=media_sampling(2.0))
    first = [thumb_path(vsearch_home, c) for c, _, _ in windows_of(cat)]
    assert first and all(p.exists() for p in first)
    counter_video(video, frames=40, size=(320, 180), audio=False)  # changed: old windows and thumbs go
    cat = index(vsearch_home, tmp_path / "v", sampling=media_sampling(2.0))
    assert not any(p.exists() for p in first)
    second = [thumb_path(vsearch_home, c) for c, _, _ in windows_of(cat)]
    assert second and all(p.exists() for p in second)
    shutil.copy2(video, tmp_path / "v" / "copy.mp4")  # a copy reuses the results, thumbnails too
    cat = index(vsearch_home, tmp_path / "v", sampling=media_sampling(2.0))
    copies = [thumb_path(vsearch_home, c) for c, _, _ in windows_of(cat)][len(second):]
    assert [p.read_bytes() for p in copies] == [p.read_bytes() for p in second]
    video.unlink()  # deleted: its thumbs go too, the copy's stay
    index(vsearch_home, tmp_path / "v")
    assert not any(p.exists() for p in second) and all(p.exists() for p in copies)


def test_a_stopped_run_leaves_no_thumbnail_without_its_clip(tmp_path: Path, vsearch_home: Path) -> None:
    from vsearch.video.thumbs import check_thumbs

    for name, frames in (("a.mp4", 60), ("b.mp4", 59)):
        counter_video(tmp_path / "v" / name, frames=frames, audio=False)  # 6 windows each
    cat = Catalog(vsearch_home)
    progress: list[object] = []
    settings = IndexSettings(batch_size=4, workers=1, timeout=20, sampling=media_sampling(1.0))
    Indexer(cat, FakeEncoder, settings, on_progress=progress.append, should_stop=lambda: bool(progress)).run(
        [tmp_path / "v"])
    assert len(windows_of(cat)) == 6  # a.mp4 whole; b.mp4's first windows were stored, then dropped
    finding = check_thumbs(cat, repair=False)
    assert finding.ok, finding.detail
    Indexer(cat, FakeEncoder, settings).run([tmp_path / "v"])
    assert len(windows_of(cat)) == 12 and check_thumbs(cat, repair=False).ok


def test_thumbnails_can_be_turned_off(tmp_path: Path, vsearch_home: Path) -> None:
    counter_video(tmp_path / "v" / "a.mp4", audio=False)
    cat = index(vsearch_home, tmp_path / "v", thumbnails=False)
    assert windows_of(cat) and not (vsearch_home / "thumbs").exists()


def media_sampling(seconds: float):
    from vsearch.video.decode import Sampling

    return Sampling(window_seconds=seconds)


# -- clip export ------------------------------------------------------------------------------

@pytest.mark.parametrize("start, end", [(1.3, 2.1), (0.0, 1.0), (3.0, 4.5)])  # 3.0 is a keyframe
def test_export_is_frame_accurate_and_keeps_audio(counter: Path, tmp_path: Path, start: float, end: float) -> None:
    out = export_clip(str(counter), start, end, tmp_path / "cut.mp4")
    levels = frame_levels(out)
    first = int(round(start * FPS))
    assert levels == list(range(first, int(round(end * FPS))))  # every frame, in order, none extra
    info = streams(out)
    assert info["video"] == "h264" and info["pix_fmt"] == "yuv420p" and info["audio"] == "aac"
    assert abs(info["audio_seconds"] - (end - start)) < 0.1  # AAC pads to whole 1024-sample frames
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # +faststart: the index comes first


def test_export_times_count_from_the_first_frame(tmp_path: Path) -> None:
    ts = counter_video(tmp_path / "broadcast.ts", audio=False)  # MPEG-TS starts its clock late
    with av.open(str(ts)) as c:
        assert c.streams.video[0].start_time * c.streams.video[0].time_base > 1 / FPS  # 2 frames late
    assert frame_levels(export_clip(str(ts), 1.0, 2.0, tmp_path / "cut.mp4")) == list(range(10, 20))


def test_export_without_audio_and_bad_requests(tmp_path: Path) -> None:
    silent = counter_video(tmp_path / "silent.mp4", audio=False)
    out = export_clip(str(silent), 0.5, 1.0, tmp_path / "a.mp4")
    assert streams(out)["audio"] is None and frame_levels(out) == [5, 6, 7, 8, 9]
    with pytest.raises(MediaError, match="end after"):
        export_clip(str(silent), 2.0, 1.0, tmp_path / "b.mp4")
    with pytest.raises(MediaError, match="no video frames"):
        export_clip(str(silent), 100.0, 101.0, tmp_path / "c.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(MediaError, match="junk.mp4"):
        export_clip(str(junk), 0.0, 1.0, tmp_path / "d.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "junk.mp4", "silent.mp4"]  # no leftovers


def test_export_moments_names_files_by_source_and_time(counter: Path, tmp_path: Path) -> None:
    odd = tmp_path / "src" / "a b;<x>.mp4"
    odd.parent.mkdir()
    odd.write_bytes(counter.read_bytes())
    results = list(export_moments([(str(odd), 1.0, 2.0), (str(odd), 1.0, 2.0), (str(counter), 0.0, 0.5)],
                                  tmp_path / "out"))
    names = [r.name for _, r in results]
    assert names == ["a_b_x_1.0-2.0s.mp4", "a_b_x_1.0-2.0s-2.mp4", "counter_0.0-0.5s.mp4"]


# -- playable: the original or a cached transcode -----------------------------------------------

def test_browser_formats_are_served_as_they_are(counter: Path, tmp_path: Path) -> None:
    assert playable(tmp_path, str(counter), 1.0, 2.0) == (counter, "video/mp4", 0.0)
    assert not Home(tmp_path).transcodes.exists()


@pytest.mark.parametrize("name, codec", [("old.avi", "mpeg4"), ("phone.mkv", "libx265")])
def test_other_formats_are_transcoded_once_and_cached(tmp_path: Path, name: str, codec: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = counter_video(tmp_path / name, codec=codec, gop=12)
    out, mime, offset = playable(tmp_path / "home", str(src), 1.5, 2.5)
    assert mime == "video/mp4" and offset == 1.5 and out.is_relative_to(tmp_path / "home")
    assert streams(out)["video"] == "h264" and streams(out)["audio"] == "aac"
    # The AVI muxer shifts the writer's timestamps by a frame: compare with what the source shows
    with av.open(str(src)) as c:
        shown = {int(round(f.time * FPS)): round(f.to_ndarray(format="gray").mean() / STEP) for f in c.decode(video=0)}
    assert frame_levels(out) == [shown[i] for i in range(15, 25)]

    def no_second_transcode(*args: object) -> Path:
        raise AssertionError("transcoded again")

    monkeypatch.setattr(media, "export_clip", no_second_transcode)
    assert playable(tmp_path / "home", str(src), 1.5, 2.5) == (out, "video/mp4", 1.5)
    src.touch()  # an edited file never gets the old transcode
    with pytest.raises(AssertionError, match="again"):
        playable(tmp_path / "home", str(src), 1.5, 2.5)


def test_transcodes_are_limited_and_a_busy_server_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = counter_video(tmp_path / "old.avi", codec="mpeg4")
    started, release = threading.Event(), threading.Event()
    real = media.export_clip

    def slow_export(*args, **kwargs):
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(media, "export_clip", slow_export)
    threads = [threading.Thread(target=playable, args=(tmp_path, str(src), float(i), i + 1.0))
               for i in range(media.TRANSCODE_LIMIT)]
    for t in threads:
        t.start()
    started.wait(10)
    while media._slots._value:  # every slot taken by a running transcode
        threading.Event().wait(0.01)
    with pytest.raises(MediaBusy, match="busy"):
        playable(tmp_path, str(src), 4.0, 5.0)
    release.set()
    for t in threads:
        t.join()
    assert playable(tmp_path, str(src), 4.0, 5.0)[1] == "video/mp4"  # slots freed


# -- the CLI ----------------------------------------------------------------------------------

def invoke(*args: object):
    from typer.testing import CliRunner

    from vsearch.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_clip_command(counter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Example: vsearch clip" in invoke("clip", "--help").output
    out = tmp_path / "cut.mp4"
    result = invoke("clip", counter, "--start", "0:01.3", "--end", "2.1", "-o", out)
    assert result.exit_code == 0, result.output
    assert frame_levels(out) == list(range(13, 21))
    monkeypatch.chdir(tmp_path)
    assert invoke("clip", counter, "-s", "1", "-e", "1.5").exit_code == 0
    assert frame_levels(tmp_path / "counter_1.0-1.5s.mp4") == [10, 11, 12, 13, 14]
    for args, message in [(("-s", "2", "-e", "1"), "must come after"), (("-s", "x", "-e", "1"), "not a time")]:
        bad = invoke("clip", counter, *args)
        assert bad.exit_code == 2 and message in bad.stderr
    missing = invoke("clip", tmp_path / "nope.mp4", "-s", "0", "-e", "1")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_search_export_writes_one_clip_per_hit(tmp_path: Path, tiny_model: Path) -> None:
    for name in ("party one.mp4", "party two.mp4"):
        counter_video(tmp_path / "lib" / name, frames=40)
    assert invoke("index", tmp_path / "lib", "--model", tiny_model, "-q").exit_code == 0
    result = invoke("search", "party", "--json", "--export", tmp_path / "out")
    assert result.exit_code == 0, result.output
    import json

    hits = json.loads(result.stdout)
    written = sorted((tmp_path / "out").iterdir())
    assert len(hits) == len(written) == 2
    for hit in hits:
        name = f"{Path(hit['path']).stem.replace(' ', '_')}_{hit['start']:.1f}-{hit['end']:.1f}s.mp4"
        levels = frame_levels(tmp_path / "out" / name)
        assert levels[0] == round(hit["start"] * FPS) and len(levels) == round((hit["end"] - hit["start"]) * FPS)


def test_doctor_checks_and_rebuilds_thumbnails(tmp_path: Path, vsearch_home: Path) -> None:
    counter_video(tmp_path / "v" / "a.mp4", size=(320, 180), audio=False)
    changed = counter_video(tmp_path / "v" / "b.mp4", size=(320, 180), audio=False)
    cat = index(vsearch_home, tmp_path / "v", sampling=media_sampling(2.0))
    windows = windows_of(cat)
    cat.close()
    assert invoke("doctor").exit_code == 0
    lost = [thumb_path(vsearch_home, c) for c, _, _ in windows[:2]]  # a.mp4's first two windows
    before = [p.read_bytes() for p in lost]
    for p in lost:
        p.unlink()
    orphan = thumb_path(vsearch_home, 999_999)
    write_thumb_bytes(orphan)
    check = invoke("doctor", "--check-only")
    assert check.exit_code == 1 and "PROBLEM  thumbnails: 2 missing, 1 left by removed windows" in check.stdout
    assert orphan.exists() and not any(p.exists() for p in lost)
    result = invoke("doctor")
    assert result.exit_code == 0 and "repaired  thumbnails" in result.stdout, result.stdout
    assert not orphan.exists()
    # Made again from the video: the window's exact middle, where index time took the sampled frame
    # next to it (FakeEncoder samples 4 frames per 2 s window: 2 frames apart at 10 fps).
    for p, old in zip(lost, before):
        with av.open(str(p)) as a, av.open(old_copy(tmp_path, old)) as b:
            x, y = (next(c.decode(video=0)).to_ndarray(format="gray").astype(float) for c in (a, b))
        assert x.shape == y.shape and abs(x.mean() - y.mean()) <= 2.5 * STEP
    assert "index is clean" in invoke("doctor").stdout
    # A file changed since indexing gets no thumbnail from the wrong frames.
    b_thumb = thumb_path(vsearch_home, windows[-1][0])
    b_thumb.unlink()
    counter_video(changed, frames=20, size=(320, 180), audio=False)
    result = invoke("doctor")
    assert result.exit_code == 1 and "1 could not be made" in result.stdout and not b_thumb.exists()


def write_thumb_bytes(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 stale")


def old_copy(tmp_path: Path, data: bytes) -> str:
    out = tmp_path / f"old-{hash(data)}.jpg"
    out.write_bytes(data)
    return str(out)
