"""The decode workers' messages: typed requests and replies through real worker processes."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vsearch.bench.synthetic import write_video
from vsearch.video.decode import FrameSpec, Sampling, VideoInfo, Window
from vsearch.video.workers import (
    Ahead,
    Chunk,
    DecodePool,
    DecodeSettings,
    Failed,
    Finished,
    Next,
    Open,
    Ready,
    Stop,
    worker_main,
)

SPEC = FrameSpec(num_frames=4, resize=("shortest_edge", 16), crop=(16, 16))


def _video(path: Path, seconds: int) -> Path:
    """Brightness steps up once a second, so each window's frames show where they came from."""
    frames = np.concatenate([np.full((4, 32, 32, 3), 40 * s + 20, np.uint8) for s in range(seconds)])
    write_video(path, frames, fps=4)
    return path


def test_a_worker_answers_each_typed_request_with_a_typed_reply(tmp_path: Path) -> None:
    video = _video(tmp_path / "v.mp4", 3)
    settings = DecodeSettings(spec=SPEC, sampling=Sampling(window_seconds=1), chunk=2)
    parent, child = mp.get_context("spawn").Pipe()
    worker = mp.get_context("spawn").Process(target=worker_main, args=(child, settings), daemon=True)
    worker.start()
    try:
        hello = parent.recv()
        parent.send(Open(7, str(video)))
        first = parent.recv()
        parent.send(Next())
        second = parent.recv()
        parent.send(Next())
        done = parent.recv()
        parent.send(Open(8, str(tmp_path / "missing.mp4")))
        missing = parent.recv()
        parent.send(Stop())
        worker.join(timeout=10)
        assert worker.exitcode == 0  # Stop ends the worker
    finally:
        if worker.is_alive():
            worker.kill()
    assert isinstance(hello, Ready) and hello.pid == worker.pid  # said first, before any request
    assert isinstance(first, Chunk) and isinstance(second, Chunk)
    assert (first.key, second.key) == (7, 7)
    assert isinstance(first.info, VideoInfo) and first.info.frames == 12
    assert [w.index for w in first.windows + second.windows] == [0, 1, 2]
    assert all(isinstance(w, Window) for w in first.windows)
    assert first.frames.shape == (2, 4, 16, 16, 3) and second.frames.shape == (1, 4, 16, 16, 3)
    brightness = [int(first.frames[i].mean()) for i in range(2)] + [int(second.frames[0].mean())]
    assert np.allclose(brightness, [20, 60, 100], atol=6)  # each window from its own second
    assert first.decode_seconds > 0
    assert done == Finished(7)
    assert isinstance(missing, Failed) and missing.key == 8 and missing.reason


def test_the_pool_hands_on_the_workers_replies_for_every_file(tmp_path: Path) -> None:
    good = [_video(tmp_path / f"g{i}.mp4", 2 + i) for i in range(3)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    settings = DecodeSettings(spec=SPEC, sampling=Sampling(window_seconds=1), workers=2, chunk=1, prefetch=2)
    jobs = [(i, str(p)) for i, p in enumerate(good + [bad])]
    with DecodePool(settings) as pool:
        events = list(pool.run(jobs))
    assert {type(e) for e in events} == {Chunk, Finished, Failed}
    windows: dict[int, list[int]] = {}
    finished: list[int] = []
    for e in events:
        if isinstance(e, Chunk):
            assert e.key not in finished  # no chunk after its file's Finished
            windows.setdefault(e.key, []).extend(w.index for w in e.windows)
        elif isinstance(e, Finished):
            finished.append(e.key)
    assert windows == {0: [0, 1], 1: [0, 1, 2], 2: [0, 1, 2, 3]}  # a file's chunks in order
    assert sorted(finished) == [0, 1, 2]
    [failed] = [e for e in events if isinstance(e, Failed)]
    assert failed.key == 3 and "not a readable video" in failed.reason


def _chunks(made: list[float], n: int, fail: bool = False) -> Iterator[Chunk | Finished]:
    """One-window chunks, noting when each was made."""
    info = VideoInfo(fps=4, frames=4, width=16, height=16)
    for i in range(n):
        made.append(time.perf_counter())
        yield Chunk(0, info, [Window(i, i, i + 1, (0, 1, 2, 3))], np.zeros((1, 4, 16, 16, 3), np.uint8), 0.01)
    if fail:
        raise OSError("disk went away")
    yield Finished(0)


def test_frames_are_decoded_ahead_while_the_model_runs_and_no_further_than_asked() -> None:
    asked = 0  # chunks the model has asked for so far
    asked_when_made: list[int] = []  # for each chunk made, how many the model had asked for by then
    made = threading.Event()

    def chunks() -> Iterator[Chunk | Finished]:
        for event in _chunks([], 10):
            if isinstance(event, Chunk):
                asked_when_made.append(asked)
                if len(asked_when_made) == 4:
                    made.set()
            yield event

    ahead = Ahead(chunks(), windows=3)
    try:
        # the model busy with its first batch: three decoded meanwhile, a fourth waiting for room
        assert made.wait(timeout=30)
        taken = []
        while True:
            asked += 1
            try:
                taken.append(next(ahead))
            except StopIteration:
                break
    finally:
        ahead.close()
    assert [type(e).__name__ for e in taken] == ["Chunk"] * 10 + ["Finished"]
    assert [c.windows[0].index for c in taken[:-1]] == list(range(10))  # in the order the decoder made them
    # ...and no further than asked: chunk k is made only once the model asked for k - 3 of them
    assert asked_when_made[:4] == [0, 0, 0, 0]
    assert all(n >= k - 3 for k, n in enumerate(asked_when_made)), asked_when_made


def test_a_decoder_error_reaches_the_model_after_what_was_decoded_before_it() -> None:
    ahead = Ahead(_chunks([], 2, fail=True), windows=8)
    try:
        assert len([next(ahead), next(ahead)]) == 2
        with pytest.raises(OSError, match="disk went away"):
            next(ahead)
    finally:
        ahead.close()


def test_stopping_early_lets_go_of_the_pool_and_its_workers(tmp_path: Path) -> None:
    videos = [_video(tmp_path / f"v{i}.mp4", 4) for i in range(3)]
    settings = DecodeSettings(spec=SPEC, sampling=Sampling(window_seconds=1), workers=2, chunk=1)
    with DecodePool(settings) as pool:
        ahead = Ahead(pool.run((i, str(p)) for i, p in enumerate(videos)), windows=2)
        first = next(ahead)
        closing = threading.Thread(target=ahead.close)
        closing.start()
        closing.join(timeout=60)
        assert not closing.is_alive()  # close returned: the decoding thread let go of the pool
        assert isinstance(first, Chunk)
        assert "vsearch-decode-ahead" not in {t.name for t in threading.enumerate()}
