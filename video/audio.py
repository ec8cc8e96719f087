"""The sound of a video: which audio tracks it has, and its main track as 16 kHz mono, piece by piece.

A file may hold several audio tracks (a film's languages, a director's commentary): the one a
player starts with is the main one, the track marked default, else the first. A file without
audio is an ordinary case (screen recordings, GIF-like windows), not an error: `main_track` is None.

`read_audio` decodes the main track to what speech models read, 16 kHz mono float32 in [-1, 1],
through FFmpeg's resampler (which also mixes any channel layout down to mono), and yields it in
pieces of a few seconds: a two-hour film is never in memory whole. The times of the pieces are on
the video's timeline, whose zero is the first video frame (as the frames' windows are), so that a
word said at 0:42 in the sound is found at 0:42 in the picture. Gaps in the sound's timestamps are
not filled: the samples are taken as one continuous run from the first one, as players do.

A damaged audio stream (packets that do not decode) is tolerated in patches, as a player plays
past a glitch; where most of it does not decode, `read_audio` raises DecodeError with the reason.
Nothing here imports torch: it runs inside worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.core.errors import DecodeError
from vsearch.video.decode import error_reason

if TYPE_CHECKING:
    import av

SAMPLE_RATE = 16_000  # what Whisper and Silero VAD read
PIECE_SECONDS = 30.0  # one piece of decoded audio: 1.9 MB of float32 at 16 kHz
# A stream is judged damaged past this many undecodable packets, when they outnumber the good ones:
# a few bad packets in a long recording are a glitch, not a reason to give up on its sound.
MAX_BAD_PACKETS = 8


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream of a file, as its container describes it."""

    index: int  # the stream's index in the file (what `read_audio` is given)
    codec: str
    channels: int
    sample_rate: int
    language: str | None = None  # the container's tag ("eng", "fre"), if any
    title: str | None = None
    default: bool = False  # the container marks it as the one to play


@dataclass(frozen=True)
class AudioPiece:
    """A run of samples at SAMPLE_RATE, mono float32, starting `start` seconds into the video."""

    start: float
    samples: np.ndarray

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE


def audio_tracks(path: str | Path) -> list[AudioTrack]:
    """The audio streams of a file, in stream order; [] when it has none. DecodeError when the file
    cannot be opened at all."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return [_track(s) for s in container.streams.audio]
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"not a readable media file ({error_reason(exc)})") from None


def main_track(tracks: list[AudioTrack]) -> AudioTrack | None:
    """The track a player starts with: the first marked default, else the first; None without audio."""
    return next((t for t in tracks if t.default), tracks[0] if tracks else None)


def read_audio(path: str | Path, track: int | None = None, piece_seconds: float = PIECE_SECONDS) -> Iterator[AudioPiece]:
    """The audio of `path` (stream index `track`, else the main track) as 16 kHz mono float32 pieces
    of `piece_seconds` (the last one shorter), in order. A file without audio yields nothing.

    Raises DecodeError when the track cannot be decoded: an unknown codec, or a stream where most
    packets fail (a few bad packets are skipped, as a player would)."""
    import av

    size = max(1, int(piece_seconds * SAMPLE_RATE))
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"not a readable media file ({error_reason(exc)})") from None
    with container:
        chosen = _chosen_stream(container, track)
        if chosen is None:
            return
        chosen.thread_type = "AUTO"
        origin = timeline_origin(container)
        pending: list[np.ndarray] = []
        held = 0  # samples in `pending`
        start: float | None = None  # video time of pending's first sample
        for chunk, first_time in _resampled(container, chosen):
            if start is None:
                start = (first_time if first_time is not None else origin) - origin
                if start < 0:  # sound before the first picture (encoder priming): not on the timeline
                    chunk = chunk[int(round(-start * SAMPLE_RATE)):]
                    start = 0.0
            pending.append(chunk)
            held += len(chunk)
            while held >= size:
                joined = np.concatenate(pending)
                yield AudioPiece(start, joined[:size])
                start += size / SAMPLE_RATE
                pending, held = [joined[size:]], len(joined) - size
        if held and start is not None:
            yield AudioPiece(start, np.concatenate(pending))


def timeline_origin(container: Any) -> float:
    """Seconds of the first video frame's timestamp: zero on the video's timeline (MPEG-TS files and
    cut recordings start late; MP4 and MKV shift all streams by the audio encoder's delay)."""
    for stream in container.streams.video:
        if stream.start_time is not None and stream.time_base:
            return float(stream.start_time * stream.time_base)
    if container.start_time is not None:
        return container.start_time / 1_000_000
    return 0.0


def _track(stream: Any) -> AudioTrack:
    import av

    ctx = stream.codec_context
    metadata = stream.metadata or {}
    return AudioTrack(index=stream.index, codec=ctx.name if ctx else "unknown", channels=int(ctx.channels or 0),
                      sample_rate=int(ctx.sample_rate or 0), language=stream_language(stream),
                      title=metadata.get("title"), default=bool(stream.disposition & av.stream.Disposition.default))


def stream_language(stream: Any) -> str | None:
    """The stream's language tag; "und" (undetermined, what muxers write by default) is none."""
    language = stream.language or (stream.metadata or {}).get("language")
    return None if language in (None, "", "und") else language


def _chosen_stream(container: Any, track: int | None) -> Any:
    streams = list(container.streams.audio)
    if track is None:
        chosen = main_track([_track(s) for s in streams])
        return None if chosen is None else container.streams[chosen.index]
    found = next((s for s in streams if s.index == track), None)
    if found is None:
        raise DecodeError(f"no audio track {track} in this file")
    return found


def _resampled(container: Any, stream: Any) -> Iterator[tuple[np.ndarray, float | None]]:
    """(mono float32 samples, time of the first decoded frame or None) per decoded packet; then
    whatever the resampler still holds. Counts the packets that do not decode, and gives up as the
    module docstring says."""
    import av

    resampler: Any = None
    good = bad = 0
    first: float | None = None
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.codec_context.decode(packet) if packet.size else stream.codec_context.decode(None)
            except (av.FFmpegError, ValueError) as exc:  # FFmpeg's codecs say EINVAL, EPERM, ... for bad data
                bad += 1
                if bad >= MAX_BAD_PACKETS and bad > good:
                    raise DecodeError(f"damaged audio stream: {bad} of {good + bad} packets do not decode "
                                      f"({error_reason(exc)})") from None
                continue
            for frame in frames:
                good += 1
                if first is None and frame.time is not None:
                    first = float(frame.time)
                frame.pts = None  # the resampler need not check timestamps: gaps are not filled
                resampler, out = _resample(resampler, frame)
                if out.size:
                    yield out, first
    except av.FFmpegError as exc:
        raise DecodeError(f"unreadable audio stream ({error_reason(exc)})") from None
    if bad and not good:
        raise DecodeError(f"damaged audio stream: none of its {bad} packets decode")
    if resampler is not None:
        rest = _to_mono(resampler.resample(None))
        if rest.size:
            yield rest, first


def _resample(resampler: Any, frame: av.AudioFrame) -> tuple[Any, np.ndarray]:
    """Frames to 16 kHz mono float32. A stream whose layout or rate changes midway (broadcast
    recordings switch between stereo and 5.1) gets a fresh resampler, the old one flushed first."""
    import av

    if resampler is None:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    try:
        return resampler, _to_mono(resampler.resample(frame))
    except ValueError:  # "Frame does not match AudioResampler setup"
        flushed = _to_mono(resampler.resample(None))
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        return resampler, np.concatenate([flushed, _to_mono(resampler.resample(frame))])


def _to_mono(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)
