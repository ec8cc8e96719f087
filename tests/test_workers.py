"""The decode workers' messages: typed requests and replies through real worker processes."""

from __future__ import annotations

import multiprocessing as mp
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


def _waiting_for_room(made: list[float], count: int) -> bool:
    """`count` chunks made, and the decoding thread then waiting for room (or ended): nothing more
    will be made until the model takes a chunk."""
    thread = ([t for t in threading.enumerate() if t.name == "vsearch-decode-ahead"] or [None])[-1]  # the newest
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident is not None else None
    while frame is not None and not (frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__):
        frame = frame.f_back
    return len(made) >= count and (thread is None or frame is not None)


def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def test_frames_are_decoded_ahead_while_the_model_runs_and_no_further_than_asked() -> None:
    made: list[float] = []
    ahead = Ahead(_chunks(made, 10), windows=3)
    try:
        _until(lambda: _waiting_for_room(made, 4))  # the model busy with its first batch
        assert len(made) == 4  # three decoded meanwhile, a fourth waiting for room, and no more
        taken = [next(ahead) for _ in range(3)]
        assert [c.windows[0].index for c in taken] == [0, 1, 2]  # in the order the decoder made them
        _until(lambda: _waiting_for_room(made, 7))
        assert len(made) == 7
        rest = list(ahead)
    finally:
        ahead.close()
    assert [type(e).__name__ for e in rest] == ["Chunk"] * 7 + ["Finished"]


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
