"""The sound of a video: its tracks, the default one, decoding in bounded pieces on the video's timeline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.speech_fixtures import BIRTHDAY, LONDON, STRAWBERRY, damage_audio, loud_spans, needs_espeak, needs_ffmpeg
from vsearch.bench.synthetic import write_talking_video
from vsearch.core.errors import DecodeError
from vsearch.video.audio import SAMPLE_RATE, AudioTrack, audio_tracks, main_track, read_audio

pytestmark = needs_espeak


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    root = tmp_path_factory.mktemp("audio")
    made = {}
    # two tracks, the second marked default: a commentary first, the film's sound second
    made["two"] = (root / "two.mp4", write_talking_video(root / "two.mp4", 8, [[(1.0, STRAWBERRY)], [(4.0, LONDON)]], default=1))
    made["first"] = (root / "first.mp4", write_talking_video(root / "first.mp4", 8, [[(1.0, STRAWBERRY)], [(4.0, LONDON)]]))
    made["mute"] = (root / "mute.mp4", write_talking_video(root / "mute.mp4", 3, []))
    made["damaged"] = (root / "damaged.mp4", write_talking_video(root / "damaged.mp4", 6, [[(1.0, BIRTHDAY)]]))
    damage_audio(made["damaged"][0])
    return made


def test_tracks_and_the_default_one(clips: dict) -> None:
    tracks = audio_tracks(clips["two"][0])
    assert [(t.index, t.codec, t.channels, t.default) for t in tracks] == [(1, "aac", 1, False), (2, "aac", 1, True)]
    assert main_track(tracks) == tracks[1]
    first = audio_tracks(clips["first"][0])
    assert main_track(first) == first[0]  # none asked for: the MP4 muxer marks the first
    plain = [AudioTrack(3, "aac", 2, 48000), AudioTrack(5, "ac3", 6, 48000)]  # no container marked one
    assert main_track(plain) == plain[0]


def test_a_video_without_audio_has_no_track_and_no_pieces(clips: dict) -> None:
    path = clips["mute"][0]
    assert audio_tracks(path) == [] and main_track([]) is None
    assert list(read_audio(path)) == []


def test_pieces_are_bounded_contiguous_and_on_the_video_timeline(clips: dict) -> None:
    path, said = clips["two"]
    pieces = list(read_audio(path, piece_seconds=1.5))
    assert all(p.samples.dtype == np.float32 and len(p.samples) <= 1.5 * SAMPLE_RATE for p in pieces)
    assert all(abs(a.end - b.start) < 1e-6 for a, b in zip(pieces, pieces[1:]))
    assert pieces[0].start == 0.0 and pieces[-1].end == pytest.approx(8.0, abs=0.1)
    # the default track (the second) is read: London at 4 s, not the strawberries at 1 s
    first, last = loud_spans(np.concatenate([p.samples for p in pieces]), 0.0)
    assert first == pytest.approx(said[1][0][0], abs=0.05) and last == pytest.approx(said[1][0][1], abs=0.05)


def test_another_track_by_its_index(clips: dict) -> None:
    path, said = clips["two"]
    first, last = loud_spans(np.concatenate([p.samples for p in read_audio(path, track=1)]), 0.0)
    assert first == pytest.approx(said[0][0][0], abs=0.05) and last == pytest.approx(said[0][0][1], abs=0.05)
    with pytest.raises(DecodeError, match="no audio track 0"):
        list(read_audio(path, track=0))  # the video stream


@needs_ffmpeg
def test_matroska_shifts_its_streams_and_the_times_stay_on_the_picture(clips: dict, tmp_path: Path) -> None:
    """MKV starts every stream after the AAC encoder's delay; the sound must stay where the picture is."""
    path, said = clips["two"]
    mkv = tmp_path / "two.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-map", "0", "-c", "copy", str(mkv)], check=True)
    pieces = list(read_audio(mkv))
    first, _ = loud_spans(np.concatenate([p.samples for p in pieces]), pieces[0].start)
    assert first == pytest.approx(said[1][0][0], abs=0.05)


def test_a_damaged_audio_stream_is_a_decode_error_with_its_reason(clips: dict) -> None:
    with pytest.raises(DecodeError, match="damaged audio stream: .* packets do not decode"):
        list(read_audio(clips["damaged"][0]))


def test_a_file_that_is_no_media_is_a_decode_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(DecodeError, match="not a readable media file"):
        audio_tracks(bad)
    with pytest.raises(DecodeError, match="not a readable media file"):
        list(read_audio(bad))


def test_a_few_bad_packets_are_played_past(clips: dict, tmp_path: Path) -> None:
    """One damaged packet in a stream is a glitch: the rest of the sound is still read."""
    import av

    path = tmp_path / "glitch.mp4"
    shutil.copy(clips["two"][0], path)
    with av.open(str(path)) as container:
        spots = [(p.pos, p.size) for p in container.demux(container.streams.audio[1]) if p.size]
    pos, size = spots[len(spots) // 2]
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(bytes(size))
    seconds = sum(len(p.samples) for p in read_audio(path)) / SAMPLE_RATE
    assert seconds == pytest.approx(8.0, abs=0.2)
