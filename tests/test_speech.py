"""What is said: faster-whisper's tiny.en (a real model, shipped on PyPI) through the user's code path,
on videos in which espeak-ng says known sentences at known times."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.speech_fixtures import BIRTHDAY, LONDON, MITOCHONDRIA, STRAWBERRY, damage_audio, needs_espeak, tiny_en
from vsearch.bench.synthetic import write_talking_video
from vsearch.core.errors import DecodeError, ModelError
from vsearch.model.speech import (
    SpeechModel,
    SpeechOptions,
    SpeechRuntime,
    Transcript,
    Word,
    _spans,
    calibrate_speech,
    find_speech_model,
    load_speech,
    normalized_words,
    pick_runtime,
    speech_runtimes,
    transcribe_file,
)
from vsearch.video.audio import SAMPLE_RATE, AudioPiece

pytestmark = needs_espeak

# How far a word's time may lie outside the sound of its sentence: the VAD keeps 0.4 s of padding
# around speech, the first and last words of a stretch of speech tend to take that padding in, and
# Whisper's word times (cross-attention aligned to the audio in 20-ms steps) are commonly 0.1-0.3 s
# off besides. Measured here: a first word began 0.35 s before its sound, a last one ended 0.63 s
# after it; words inside a sentence stayed within 0.1 s.
TOLERANCE = 0.8
OPTIONS = SpeechOptions(SpeechRuntime("int8", 2))


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    root = tmp_path_factory.mktemp("speech")
    return {
        "talk": (root / "talk.mp4", write_talking_video(root / "talk.mp4", 20, [[(2.0, STRAWBERRY), (9.0, BIRTHDAY),
                                                                                   (15.0, MITOCHONDRIA)]])),
        "tracks": (root / "tracks.mp4", write_talking_video(root / "tracks.mp4", 8, [[(1.0, STRAWBERRY)], [(3.0, LONDON)]],
                                                            default=1)),
        "silent": (root / "silent.mp4", write_talking_video(root / "silent.mp4", 5, [[]])),
        "mute": (root / "mute.mp4", write_talking_video(root / "mute.mp4", 3, [])),
    }


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return load_speech(str(tiny_en()), SpeechRuntime("int8", 2))


def said_within(transcript: Transcript, phrase: str, start: float, end: float) -> list[Word]:
    """The words of `phrase`, in order, found in the transcript, each inside [start, end] give or take
    TOLERANCE; fails the test where a word is missing or elsewhere."""
    words = transcript.words
    wanted = normalized_words(phrase)
    spoken = [normalized_words(w.text)[0] if normalized_words(w.text) else "" for w in words]
    for i in range(len(words) - len(wanted) + 1):
        if spoken[i: i + len(wanted)] == wanted:
            found = words[i: i + len(wanted)]
            assert all(start - TOLERANCE <= w.start <= w.end <= end + TOLERANCE for w in found), (phrase, found)
            return found
    raise AssertionError(f"{phrase!r} not heard in {transcript.text!r}")


def test_words_are_heard_when_they_are_said(talk: dict, model: SpeechModel) -> None:
    path, said = talk["talk"]
    transcript = transcribe_file(str(path), str(tiny_en()), OPTIONS)
    assert transcript is not None
    assert transcript.language == "en" and transcript.language_probability == 1.0  # an English-only model
    assert transcript.duration == pytest.approx(20.0, abs=0.1)
    (strawberry, birthday, mitochondria) = said[0]
    said_within(transcript, "strawberry jam", *strawberry)
    said_within(transcript, "kitchen table", *strawberry)
    said_within(transcript, "happy birthday", *birthday)
    said_within(transcript, "mitochondria is the powerhouse", *mitochondria)
    # no words in the silences: before, between and after the sentences
    assert all(any(s - TOLERANCE <= w.start and w.end <= e + TOLERANCE for s, e in said[0]) for w in transcript.words)
    assert all(0 <= w.probability <= 1 and w.start <= w.end for w in transcript.words)


def test_a_long_file_in_spans_cut_at_pauses_hears_the_same(talk: dict, model: SpeechModel) -> None:
    """Spans of 7 s (5 minutes in use) cut the 20-s video three times: at pauses, so no word is lost
    and every time stays on the video's timeline. (The model hears a little differently without the
    sentence before as context: "dear Ollie" in one piece, "dear Oliver" in spans.)"""
    from vsearch.video.audio import read_audio

    path, said = talk["talk"]
    whole = model.transcribe(read_audio(path))
    spans = model.transcribe(read_audio(path, piece_seconds=2.0), span_seconds=7.0)
    assert len(spans.words) == len(whole.words)
    for phrase, (start, end) in zip(("strawberry jam is on the kitchen table", "happy birthday dear",
                                     "mitochondria is the powerhouse"), said[0]):
        said_within(spans, phrase, start, end)


def test_spans_are_bounded_and_cut_where_it_is_quiet() -> None:
    rate = SAMPLE_RATE
    tone = 0.5 * np.sin(np.arange(rate * 3) / rate * 2 * np.pi * 220).astype(np.float32)
    audio = np.concatenate([tone, np.zeros(rate // 2, np.float32), tone, np.zeros(rate // 2, np.float32), tone])
    pieces = [AudioPiece(10.0 + i / rate, audio[i: i + rate]) for i in range(0, len(audio), rate)]
    spans = list(_spans(pieces, span_seconds=5.0))
    assert all(len(s.samples) <= 5 * rate for s in spans)
    assert np.array_equal(np.concatenate([s.samples for s in spans]), audio)
    assert [round(s.start, 2) for s in spans] == [10.0, pytest.approx(13.25, abs=0.3), pytest.approx(16.75, abs=0.3)]
    for s in spans[1:]:
        assert np.abs(s.samples[:800]).max() < 1e-3  # each cut falls in a pause


def test_the_default_audio_track_is_transcribed(talk: dict) -> None:
    path, said = talk["tracks"]
    transcript = transcribe_file(str(path), str(tiny_en()), OPTIONS)
    assert transcript is not None
    said_within(transcript, "train to london", *said[1][0])
    assert "strawberry" not in normalized_words(transcript.text)


def test_a_silent_video_has_no_words_and_no_error(talk: dict) -> None:
    transcript = transcribe_file(str(talk["silent"][0]), str(tiny_en()), OPTIONS)
    assert transcript is not None and transcript.segments == () and transcript.duration == pytest.approx(5.0, abs=0.1)


def test_a_video_without_audio_gives_none(talk: dict) -> None:
    assert transcribe_file(str(talk["mute"][0]), str(tiny_en()), OPTIONS) is None


def test_a_damaged_audio_stream_is_a_decode_error(talk: dict, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(talk["talk"][0].read_bytes())
    damage_audio(damaged)
    with pytest.raises(DecodeError, match="damaged audio stream"):
        transcribe_file(str(damaged), str(tiny_en()), OPTIONS)


def test_transcribe_file_runs_in_a_spawned_worker_process(talk: dict) -> None:
    """What an index run does: the file, the model's folder and the options go to another process
    (spawned, as the decode workers are) and the transcript comes back."""
    path, said = talk["tracks"]
    args = (str(path), str(tiny_en()), OPTIONS)
    assert pickle.loads(pickle.dumps(args)) == args
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        transcript = pool.submit(transcribe_file, *args).result(timeout=120)
    assert transcript is not None
    said_within(transcript, "train to london", *said[1][0])


def test_cues_for_subtitles_stay_short(talk: dict, model: SpeechModel) -> None:
    from vsearch.video.audio import read_audio

    transcript = model.transcribe(read_audio(talk["talk"][0]))
    cues = transcript.cues(max_chars=20, max_seconds=2.0)
    assert all(len(c.text) <= 20 or " " not in c.text for c in cues)
    assert all(c.end - c.start <= 2.0 + 1.0 for c in cues)  # a cue may hold one word longer than the limit
    assert normalized_words(" ".join(c.text for c in cues)) == normalized_words(transcript.text)


def test_the_model_is_loaded_through_the_users_path() -> None:
    files = find_speech_model(str(tiny_en()))
    assert files.folder == tiny_en().resolve() and "weights=" in files.model_id
    speech = load_speech(str(tiny_en()))
    assert speech.multilingual is False and speech.runtime == SpeechRuntime()


def test_models_that_cannot_be_had_are_model_errors(tmp_path: Path) -> None:
    # tests run offline (HF_HUB_OFFLINE=1) with no speech model in the cache
    with pytest.raises(ModelError, match="not in the Hugging Face cache.*--speech-model a local CTranslate2"):
        find_speech_model("small")
    with pytest.raises(ModelError, match="unknown speech model 'gigantic'"):
        find_speech_model("gigantic")
    with pytest.raises(ModelError, match="no such folder"):
        find_speech_model(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model folder .no model.bin, tokenizer.json"):
        find_speech_model(str(tmp_path))


def test_calibration_picks_a_runtime_that_agrees_with_float32_and_caches_it(talk: dict, tmp_path: Path) -> None:
    calls: list[str] = []
    sample = talk["tracks"][0]  # one sentence (the shipped sample has three: the same work, 3x the time)
    first = calibrate_speech(str(tiny_en()), tmp_path, on_measure=lambda: calls.append("measuring"), sample=sample)
    configs = speech_runtimes()
    assert first.how == "calibrated" and calls == ["measuring"]
    assert first.runtime in configs and configs[0].compute_type == "float32"
    assert set(first.timings) | set(first.differed) == {c.label for c in configs}
    assert first.runtime.label in first.timings and all(t > 0 for t in first.timings.values())
    again = calibrate_speech(str(tiny_en()), tmp_path, on_measure=lambda: calls.append("measuring"), sample=sample)
    assert again.how == "cached" and again.runtime == first.runtime and calls == ["measuring"]


def test_pick_prefers_fewer_threads_and_more_precision_within_the_margin() -> None:
    order = [SpeechRuntime("float32", 2), SpeechRuntime("float32", 1), SpeechRuntime("int8", 2), SpeechRuntime("int8", 1)]
    assert pick_runtime(dict(zip(order, (0.10, 0.15, 0.050, 0.052))), order) == SpeechRuntime("int8", 1)
    assert pick_runtime(dict(zip(order, (0.10, 0.15, 0.050, 0.080))), order) == SpeechRuntime("int8", 2)
    assert pick_runtime({order[0]: 0.05, order[2]: 0.049}, order) == order[0]
