"""Speech: what is said in a video, word by word with times, by a Whisper model run by faster-whisper.

Models. faster-whisper runs Whisper converted for CTranslate2: `load_speech` takes one of its hub
names (tiny, base, small, medium, large-v3, turbo, and the English-only tiny.en, base.en, ...),
fetched on first use into the Hugging Face cache like the other models, a hub id of another
converted model ("org/name"), or the path of a local CTranslate2 model folder (model.bin,
config.json, tokenizer.json). Offline and not cached, it raises ModelError saying how to get one,
so that an index run can say so once and go on without speech. The default model and why are in
docs/speech.md.

Transcribing. The audio comes in pieces (vsearch.video.audio.read_audio) and is transcribed in
spans of at most SPAN_SECONDS, each cut at its quietest moment near the end, so that a two-hour
film costs the memory of five minutes of audio and its features (about 30 MB), not of the whole
(faster-whisper computes the features of all the audio it is given at once). Times are offset by
each span's start. Within a span, Silero VAD (shipped inside faster-whisper, run by onnxruntime,
no download) skips the silence and the decoder never sees it; the words get their times from the
model's cross-attention (word_timestamps). A multilingual model detects the language once per video,
on the first span with enough speech, and keeps it for the rest; an English-only one is English.

Runtime. CTranslate2 runs int8, int16 or float32 on a CPU (and bf16 where it supports it), on a
number of threads; `calibrate_speech` times each on a spoken sample shipped with vsearch, keeps
those that transcribe it with the same words as float32, and caches the fastest per CPU and model
in the index home's calibration file, beside the video model's choices. One transcription runs per
process (CTranslate2's num_workers = 1): files are transcribed side by side by worker processes.

`transcribe_file` is the whole job for one video, with picklable arguments only, for a worker
process that a bad audio stream may hang or crash without harm. Nothing here imports torch;
faster-whisper is imported on first use.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.core.home import Home, read_measurements, store_measurement
from vsearch.model.calibrate import MARGIN, cpu_key
from vsearch.model.checkpoint import _looks_like_path, cache_only, first_line, weights_fingerprint
from vsearch.video.audio import SAMPLE_RATE, AudioPiece, audio_tracks, main_track, read_audio
from vsearch.video.subtitles import Cue

# What a user gets without asking: see docs/speech.md ("The default model").
DEFAULT_SPEECH_MODEL = "base"
SPEECH_OFFLINE_HINT = ("If this machine is offline, let vsearch fetch the model once where there is a connection and copy "
                       "the Hugging Face cache here (with HF_HUB_OFFLINE=1), or pass --speech-model a local CTranslate2 "
                       "model folder (faster-whisper's format), or --speech-model none to index without speech.")
SPAN_SECONDS = 300.0  # audio transcribed at once: 19 MB of samples and 10 MB of features
QUIET_SEARCH_SECONDS = 20.0  # a span is cut at the quietest 0.1 s of its last 20 s
LANGUAGE_SPEECH_SECONDS = 6.0  # speech needed in a span for its detected language to hold for the video
# Silero VAD as faster-whisper's defaults, but a pause of 1 s (not 2) ends a stretch of speech: the
# decoder then never sees the silence between two sentences of a home video.
VAD = {"min_silence_duration_ms": 1000, "speech_pad_ms": 400}
# What CTranslate2 may run on each device, most precise first; what this machine has is asked of it.
COMPUTE_TYPES = {"cpu": ("float32", "int16", "bfloat16", "int8_bfloat16", "int8"),
                 "cuda": ("float32", "float16", "bfloat16", "int8_float16", "int8_bfloat16", "int8")}


@dataclass(frozen=True)
class Word:
    start: float  # seconds on the video's timeline
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """A stretch of speech the model wrote as one piece of text (a sentence or two, at most 30 s)."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """What was said in a video. `language` is None where nothing was said (a multilingual model had
    nothing to detect it from); `duration` is the seconds of audio heard."""

    language: str | None
    language_probability: float
    duration: float
    segments: tuple[Segment, ...] = ()

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    def cues(self, max_chars: int = 84, max_seconds: float = 6.0) -> list[Cue]:
        """The transcript as subtitle cues: each at most `max_chars` (two lines of 42, the usual
        limit) and `max_seconds`, cut between words, timed from its first word to its last."""
        cues: list[Cue] = []
        for segment in self.segments:
            if not segment.words:
                cues.append(Cue(segment.start, segment.end, segment.text))
                continue
            line: list[Word] = []
            for word in segment.words:
                text = " ".join(w.text for w in [*line, word])
                if line and (len(text) > max_chars or word.end - line[0].start > max_seconds):
                    cues.append(Cue(line[0].start, line[-1].end, " ".join(w.text for w in line)))
                    line = []
                line.append(word)
            if line:
                cues.append(Cue(line[0].start, line[-1].end, " ".join(w.text for w in line)))
        return cues


@dataclass(frozen=True)
class SpeechRuntime:
    """How CTranslate2 runs the model: its compute type and CPU threads (0: one per core)."""

    compute_type: str = "int8"
    threads: int = 0

    @property
    def label(self) -> str:
        """"int8 x2": how the calibration cache and the bench name it."""
        return f"{self.compute_type} x{self.threads}"

    @classmethod
    def from_label(cls, label: str) -> SpeechRuntime:
        compute_type, _, threads = label.partition(" x")
        return cls(compute_type, int(threads or 0))


@dataclass(frozen=True)
class SpeechOptions:
    """How `transcribe_file` runs, as plain values a worker process can be sent."""

    runtime: SpeechRuntime = field(default_factory=SpeechRuntime)
    device: str = "cpu"
    language: str | None = None  # None: detected per video (multilingual models)
    beam_size: int = 5
    vad: bool = True
    span_seconds: float = SPAN_SECONDS


@dataclass(frozen=True)
class SpeechCalibration:
    """The runtime chosen and how: "calibrated" or "cached"; real-time factors measured per
    runtime (seconds of work per second of speech); runtimes left out for other words than float32's."""

    runtime: SpeechRuntime
    how: str
    timings: dict[str, float] = field(default_factory=dict)
    differed: tuple[str, ...] = ()
    took: float = 0.0

    def describe(self) -> str:
        measured = ", ".join(f"{k} {v:.3g}" for k, v in self.timings.items())
        left = f"; left out, other words than float32's: {', '.join(self.differed)}" if self.differed else ""
        took = f" in {self.took:.0f} s" if self.took else ""
        return f"{self.runtime.label} ({self.how}{took}{': real-time factor ' + measured if measured else ''}{left})"


@dataclass(frozen=True)
class SpeechModelFiles:
    """A speech model found on disk: the name a person gave, its folder, and what identifies its
    weights (an index's transcripts are tagged with it: other weights, transcribe again)."""

    name: str
    folder: Path
    model_id: str


class SpeechModel:
    """A Whisper model loaded by CTranslate2 in one runtime, transcribing audio pieces."""

    def __init__(self, files: SpeechModelFiles, whisper: Any, runtime: SpeechRuntime, device: str):
        self.files, self.runtime, self.device = files, runtime, device
        self._whisper = whisper

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def model_id(self) -> str:
        return self.files.model_id

    @property
    def multilingual(self) -> bool:
        return bool(self._whisper.model.is_multilingual)

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.runtime.label})"

    def transcribe(self, pieces: Iterable[AudioPiece], language: str | None = None, beam_size: int = 5,
                   vad: bool = True, span_seconds: float = SPAN_SECONDS) -> Transcript:
        """What is said in consecutive audio pieces (16 kHz mono, times on the video's timeline):
        segments and words with their times. `language` fixes it; else a multilingual model detects
        it (see the module docstring) and an English-only one says "en"."""
        if not self.multilingual:
            language = "en"
        fixed = language is not None
        probability = 1.0 if fixed else 0.0
        heard = 0.0  # speech behind the detected language, seconds
        duration = 0.0
        segments: list[Segment] = []
        for span in _spans(pieces, span_seconds):
            duration = max(duration, span.end)
            try:
                found, info = self._whisper.transcribe(
                    span.samples, language=language if fixed else None, beam_size=beam_size, word_timestamps=True,
                    vad_filter=vad, vad_parameters=VAD)
                new = [_segment(s, span.start) for s in found]  # the generator does the decoding
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"speech model {self.name!r} failed: {first_line(exc)}") from None
            segments.extend(s for s in new if s.text)
            speech = float(info.duration_after_vad) if vad else float(info.duration)
            if not fixed and new and speech > heard:
                # the language of the span with the most speech so far, until one has enough to trust
                language, probability, heard = info.language, float(info.language_probability), speech
                fixed = speech >= LANGUAGE_SPEECH_SECONDS
        return Transcript(language if segments or not self.multilingual else None,
                          probability if segments else 0.0, round(duration, 3), tuple(segments))


def find_speech_model(name: str) -> SpeechModelFiles:
    """The folder of a speech model: a local CTranslate2 folder as it is, a hub name or id from the
    Hugging Face cache, fetched there first if it is not and the hub can be reached.

    Raises ModelError: an unknown name, a folder that is not a CTranslate2 Whisper model, offline
    and not cached (the message says how to get it)."""
    local = Path(name).expanduser()
    if local.is_dir():
        folder = local.resolve()
        missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not (folder / f).is_file()]
        if missing:
            raise ModelError(f"{name!r} is not a CTranslate2 Whisper model folder (no {', '.join(missing)}); convert one "
                             "with ct2-transformers-converter --copy_files tokenizer.json, or pass a model name such as "
                             f"{DEFAULT_SPEECH_MODEL}")
        return SpeechModelFiles(str(folder), folder, f"{folder}|weights={weights_fingerprint(str(folder), None)}")
    if _looks_like_path(name):
        raise ModelError(f"cannot load speech model {name!r}: no such folder")
    from faster_whisper.utils import _MODELS, download_model

    repo = name if "/" in name else _MODELS.get(name)
    if repo is None:
        raise ModelError(f"unknown speech model {name!r}; choose from {', '.join(_MODELS)}, a hub id of a CTranslate2 "
                         "Whisper model, or a local model folder")
    local_only = cache_only(repo, SPEECH_OFFLINE_HINT)
    try:
        folder = Path(download_model(repo, local_files_only=local_only))
    except Exception as exc:  # huggingface_hub's many errors (network, missing repo, disk): one line each
        raise ModelError(f"cannot fetch speech model {name!r}: {first_line(exc)}. {SPEECH_OFFLINE_HINT}") from None
    return SpeechModelFiles(name, folder, f"{repo}@{folder.name}")  # the cache's snapshot folder is the commit


def load_speech(name_or_path: str, runtime: SpeechRuntime | None = None, device: str = "cpu") -> SpeechModel:
    """A speech model (see `find_speech_model`) loaded in `runtime` (default: int8 on every core)."""
    files = find_speech_model(name_or_path)
    runtime = runtime or SpeechRuntime()
    return SpeechModel(files, _whisper(str(files.folder), runtime, device), runtime, device)


def transcribe_file(path: str, model: str, options: SpeechOptions,
                    alive: Callable[[], None] | None = None) -> Transcript | None:
    """What is said in a video's main audio track; None when it has no audio. The model (a folder,
    or a name already in the cache) is loaded once per process and kept for the next file.
    `alive` is called as each piece of audio is read: a worker's way of saying a long file is still
    being transcribed, not hung.

    Raises DecodeError for an audio stream that cannot be decoded, ModelError for a model that
    cannot be loaded or fails."""
    track = main_track(audio_tracks(path))
    if track is None:
        return None
    speech = _loaded(model, options.runtime, options.device)
    pieces = read_audio(path, track.index)
    if alive is not None:
        pieces = _saying(alive, pieces)
    return speech.transcribe(pieces, options.language, options.beam_size, options.vad, options.span_seconds)


def _saying(alive: Callable[[], None], pieces: Iterator[AudioPiece]) -> Iterator[AudioPiece]:
    for piece in pieces:
        alive()
        yield piece


def speech_runtimes(device: str = "cpu") -> list[SpeechRuntime]:
    """The runtimes worth timing here: every compute type CTranslate2 supports on this device
    ("int8_float32" is int8 on a CPU, so it is left out), on half the cores and on all of them.
    The first is the reference, float32 on every core."""
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types(device)
    types = [t for t in COMPUTE_TYPES.get(device, COMPUTE_TYPES["cpu"]) if t in supported]
    cores = os.cpu_count() or 1
    threads = sorted({cores, max(1, cores // 2)}, reverse=True) if device == "cpu" else [0]
    return [SpeechRuntime(t, n) for t in types for n in threads]


def calibrate_speech(model: str, home: Path | Home | None = None, device: str = "cpu",
                     on_measure: Callable[[], None] | None = None, sample: Path | None = None) -> SpeechCalibration:
    """The fastest runtime here that transcribes a spoken sample with the same words as float32;
    measured once per CPU and model, then read from the cache. `on_measure` is called before a
    measurement (tiny: seconds; small: about a minute on 2 cores)."""
    import ctranslate2
    import faster_whisper

    files = find_speech_model(model)
    configs = speech_runtimes(device)
    key = (f"speech | {cpu_key()} | ctranslate2 {ctranslate2.__version__} | faster-whisper {faster_whisper.__version__} | "
           f"{device} | {files.model_id} | {'/'.join(c.label for c in configs)}")
    cache = Home.at(home).calibration
    stored = read_measurements(cache).get(key)
    if stored is not None:
        return SpeechCalibration(SpeechRuntime.from_label(stored["runtime"]), "cached", stored.get("timings", {}),
                                 tuple(stored.get("differed", ())), float(stored.get("took", 0.0)))
    if on_measure:
        on_measure()
    started = time.perf_counter()
    audio = np.concatenate([p.samples for p in read_audio(sample or _sample())])
    timings: dict[SpeechRuntime, float] = {}
    differed: list[str] = []
    expected: list[str] | None = None
    for config in configs:
        speech = SpeechModel(files, _whisper(str(files.folder), config, device), config, device)
        words, seconds = _timed(speech, audio)
        if expected is None:
            expected = words  # the reference: float32 on every core
        elif words != expected:
            differed.append(config.label)
            continue
        timings[config] = seconds / (len(audio) / SAMPLE_RATE)
    chosen = pick_runtime(timings, configs)
    calibration = SpeechCalibration(chosen, "calibrated", {c.label: round(t, 4) for c, t in timings.items()},
                                    tuple(differed), round(time.perf_counter() - started, 1))
    store_measurement(cache, key, {"runtime": chosen.label, "timings": calibration.timings,
                                   "differed": list(calibration.differed), "took": calibration.took})
    return calibration


def pick_runtime(timings: dict[SpeechRuntime, float], order: list[SpeechRuntime], margin: float = MARGIN) -> SpeechRuntime:
    """The fastest; of those within `margin` of it, the one on fewer threads (the other cores run the
    video model meanwhile), then the more precise (earlier in `order`)."""
    fastest = min(timings.values())
    near = [c for c in timings if timings[c] <= fastest * (1 + margin)]
    return min(near, key=lambda c: (c.threads or os.cpu_count() or 1, order.index(c)))


def normalized_words(text: str) -> list[str]:
    """Words as a comparison sees them: lower case, without punctuation."""
    return re.findall(r"[\w']+", text.lower())


def _timed(speech: SpeechModel, audio: np.ndarray, repeats: int = 2) -> tuple[list[str], float]:
    """The words said in `audio`, and the best seconds of `repeats` transcriptions (the first also
    warms CTranslate2's caches)."""
    best, words = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        transcript = speech.transcribe([AudioPiece(0.0, audio)])
        best = min(best, time.perf_counter() - started)
        words = normalized_words(transcript.text)
    return words, best


def _sample() -> Path:
    from vsearch.data import path

    return path("speech-sample.ogg")


def _spans(pieces: Iterable[AudioPiece], span_seconds: float) -> Iterator[AudioPiece]:
    """Consecutive pieces joined into spans of at most `span_seconds`, each cut at the quietest
    0.1 s of its last QUIET_SEARCH_SECONDS (a pause between words, seldom inside one)."""
    size = max(SAMPLE_RATE, int(span_seconds * SAMPLE_RATE))
    held: list[np.ndarray] = []
    count = 0
    start: float | None = None
    for piece in pieces:
        if start is None:
            start = piece.start
        held.append(piece.samples)
        count += len(piece.samples)
        while count > size:
            joined = np.concatenate(held)
            cut = _quietest(joined, max(size // 2, size - int(QUIET_SEARCH_SECONDS * SAMPLE_RATE)), size)
            yield AudioPiece(start, joined[:cut])
            start += cut / SAMPLE_RATE
            held, count = [joined[cut:]], len(joined) - cut
    if count and start is not None:
        yield AudioPiece(start, np.concatenate(held))


def _quietest(samples: np.ndarray, lo: int, hi: int, frame: int = SAMPLE_RATE // 10) -> int:
    """The middle of the frame of `samples[lo:hi]` with the least energy."""
    frames = (hi - lo) // frame
    if frames < 1:
        return hi
    energy = (samples[lo: lo + frames * frame].reshape(frames, frame) ** 2).sum(1)
    return lo + int(np.argmin(energy)) * frame + frame // 2


def _segment(found: Any, offset: float) -> Segment:
    words = tuple(Word(round(float(w.start) + offset, 3), round(float(w.end) + offset, 3), w.word.strip(),
                       round(float(w.probability), 4)) for w in (found.words or ()) if w.word.strip())
    return Segment(round(float(found.start) + offset, 3), round(float(found.end) + offset, 3), found.text.strip(), words)


def _whisper(folder: str, runtime: SpeechRuntime, device: str) -> Any:
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(folder, device=device, compute_type=runtime.compute_type, cpu_threads=runtime.threads,
                            num_workers=1, local_files_only=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot load speech model {folder!r} ({runtime.label}): {first_line(exc)}") from None


@functools.lru_cache(maxsize=1)
def _loaded(model: str, runtime: SpeechRuntime, device: str) -> SpeechModel:
    """One model per worker process, kept from file to file (loading base takes about a second)."""
    return load_speech(model, runtime, device)

