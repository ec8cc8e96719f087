"""Hostile inputs: each gets a clear recorded reason or a correct result, never a crash of the run."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import faulty
from tests.conftest import FakeEncoder
from vsearch.bench.synthetic import MOTIONS, render_motion, write_video
from vsearch.indexer.pipeline import Indexer, IndexSettings
from vsearch.search.catalog import Catalog
from vsearch.video.decode import FrameSpec, Sampling, probe, read_windows


def index(home: Path, root: Path, read=read_windows, **settings) -> tuple:
    cat = Catalog(home)
    enc = FakeEncoder()
    report = Indexer(cat, lambda: enc, IndexSettings(**{"workers": 1, "timeout": 20, **settings}), read=read).run([root])
    ok = {Path(r[0]).name: r[1] for r in cat.db.execute(
        "SELECT v.path, count(c.id) FROM videos v JOIN windows c ON c.video_id = v.id WHERE v.status='ok' GROUP BY v.id")}
    cat.close()
    return report, ok, {Path(p).name: r for p, r in report.failed}


def test_one_frame_video_is_indexed(tmp_path: Path, vsearch_home: Path) -> None:
    write_video(tmp_path / "v" / "still.mp4", [np.full((32, 32, 3), 200, np.uint8)], 8)
    report, ok, failed = index(vsearch_home, tmp_path / "v")
    assert ok == {"still.mp4": 1} and not failed


def test_header_claiming_more_frames_than_the_file_holds(tmp_path: Path, vsearch_home: Path) -> None:
    frames = [np.full((32, 32, 3), 4 * i, np.uint8) for i in range(64)]  # brightness encodes the index
    path = write_video(tmp_path / "v" / "liar.mp4", frames, 8, faststart=True)  # index first, then data
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    import av

    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 64  # the header still claims all 64
    chunks = list(read_windows(str(path), FrameSpec(4, None, None), Sampling(), backend="pyav"))
    planned = [i for _, part, _ in chunks for w in part for i in w.frames]
    got = [round(f.mean() / 4) for _, _, frames in chunks for f in frames.reshape(-1, 32, 32, 3)]
    last = max(got)  # the last frame the file still holds
    assert 32 <= last < 60 and got == [min(i, last) for i in planned]  # the frames it has, then the last again
    report, ok, failed = index(vsearch_home, tmp_path / "v")
    assert ok == {"liar.mp4": 2} and not failed


def test_very_large_resolution_is_decoded_to_model_size(tmp_path: Path, vsearch_home: Path) -> None:
    big = np.zeros((2160, 3840, 3), np.uint8)
    big[:, :1920] = 255
    write_video(tmp_path / "v" / "uhd.mp4", [big] * 4, 8)
    chunks = list(read_windows(str(tmp_path / "v" / "uhd.mp4"), FrameSpec(4, ("shortest_edge", 16), (16, 16)), Sampling()))
    assert chunks[0][2].shape == (1, 4, 16, 16, 3)
    report, ok, failed = index(vsearch_home, tmp_path / "v")
    assert ok == {"uhd.mp4": 1}


def test_variable_frame_rate(tmp_path: Path, vsearch_home: Path) -> None:
    frames = list(render_motion("moving left", np.random.default_rng(1), frames=40))
    pts = list(np.cumsum(np.random.default_rng(2).integers(20, 200, 40)))  # 5 to 50 fps, jittering
    write_video(tmp_path / "v" / "vfr.mp4", frames, 8, pts_ms=[int(p) for p in pts])
    report, ok, failed = index(vsearch_home, tmp_path / "v", sampling=Sampling(window_seconds=1.0))
    assert ok.get("vfr.mp4", 0) >= 1 and not failed


def test_rotation_metadata_gives_upright_frames(tmp_path: Path) -> None:
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :16] = 255  # a white band on the left of the stored frame
    plain = write_video(tmp_path / "plain.mp4", [img] * 8, 8)
    turned = write_video(tmp_path / "turned.mp4", [img] * 8, 8, rotation=90)
    info = probe(turned)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    spec = FrameSpec(8, ("shortest_edge", 32), None)
    upright = next(read_windows(str(turned), spec, Sampling()))[2][0, 0]
    stored = next(read_windows(str(plain), spec, Sampling()))[2][0, 0]
    assert upright.shape == (64, 32, 3) and stored.shape == (32, 64, 3)
    # shown turned 90 degrees counter-clockwise: the left band ends up along the bottom
    assert np.abs(upright.astype(int) - np.rot90(stored, 1).astype(int)).mean() < 10


def test_symlink_loops_and_duplicate_links_are_walked_once(tmp_path: Path, vsearch_home: Path) -> None:
    root = tmp_path / "lib"
    write_video(root / "a" / "clip.mp4", render_motion("growing", np.random.default_rng(0)))
    os.symlink(root, root / "a" / "loop")  # a folder that contains itself
    os.symlink(root / "a", root / "again")
    report, ok, failed = index(vsearch_home, root)
    assert report.found == 1 and ok == {"clip.mp4": 1}


def test_fifo_named_like_a_video_is_skipped_not_read(tmp_path: Path, vsearch_home: Path) -> None:
    root = tmp_path / "lib"
    write_video(root / "good.mp4", render_motion("growing", np.random.default_rng(0)))
    os.mkfifo(root / "pipe.mp4")  # reading it would block forever
    report, ok, failed = index(vsearch_home, root)
    assert ok == {"good.mp4": 1} and failed == {"pipe.mp4": "not a regular file"}
    report, ok, failed = index(vsearch_home, root)  # still skipped, never counted as removed
    assert report.removed == 0 and ok == {"good.mp4": 1}


def test_unreadable_file(tmp_path: Path, vsearch_home: Path) -> None:
    """A file nobody may read: the indexer (checked by the kernel as an ordinary user would be, even
    as root) records why and indexes the rest."""
    root = tmp_path / "lib"
    write_video(root / "good.mp4", render_motion("growing", np.random.default_rng(0)))
    secret = write_video(root / "secret.mp4", render_motion("moving up", np.random.default_rng(1)))
    secret.chmod(0)
    report, ok, failed = faulty.as_ordinary_user(lambda: index(vsearch_home, root))
    assert ok == {"good.mp4": 1} and failed == {"secret.mp4": "cannot read (Permission denied)"}


@pytest.mark.parametrize(("where", "reason"), [
    ("secret.mp4", "not a readable video (Permission denied)"),  # the file: the decoder cannot open it
    ("private/clip.mp4", "permission denied"),  # its folder: the file cannot even be looked at
])
def test_file_made_unreadable_while_indexing(tmp_path: Path, vsearch_home: Path, where: str, reason: str) -> None:
    """Permission taken away after the run planned the file: the decoder's own file access fails (as
    for an ordinary user, even as root), and the worker reports why for that file alone."""
    root = tmp_path / "lib"
    write_video(root / "good.mp4", render_motion("growing", np.random.default_rng(0)))
    write_video(root / where, render_motion("moving up", np.random.default_rng(1)))
    report, ok, failed = index(vsearch_home, root, read=faulty.revoked_read_windows)
    assert ok == {"good.mp4": 1} and failed == {Path(where).name: reason}


def test_file_deleted_while_indexing(tmp_path: Path, vsearch_home: Path) -> None:
    root = tmp_path / "lib"
    write_video(root / "good.mp4", render_motion("growing", np.random.default_rng(0)))
    write_video(root / "vanish.mp4", render_motion("moving up", np.random.default_rng(1)))
    report, ok, failed = index(vsearch_home, root, read=faulty.vanishing_read_windows)
    assert ok == {"good.mp4": 1}
    assert failed == {"vanish.mp4": "file disappeared while indexing"}
    report, ok, failed = index(vsearch_home, root)  # the next run forgets it
    assert report.found == 1 and ok == {"good.mp4": 1}


def test_file_growing_while_indexed_is_redone_next_run(tmp_path: Path, vsearch_home: Path) -> None:
    root = tmp_path / "lib"
    path = write_video(root / "recording.mp4", render_motion("growing", np.random.default_rng(0)))
    index(vsearch_home, root)
    write_video(path, render_motion("growing", np.random.default_rng(0), frames=64))  # it kept recording
    report, ok, failed = index(vsearch_home, root, sampling=Sampling(window_seconds=2.0))
    assert report.indexed == 1 and ok == {"recording.mp4": 2}


def test_retry_failed(library: Path, vsearch_home: Path) -> None:
    shutil.copy2(next(library.glob("*.mp4")), library / "hang.mp4")
    report, _, failed = index(vsearch_home, library, timeout=3, read=faulty.read_windows)
    assert "decoder hung" in failed["hang.mp4"]
    report, ok, failed = index(vsearch_home, library)  # unchanged and failed: not tried again
    assert report.indexed == 0 and "hang.mp4" not in ok
    report, ok, failed = index(vsearch_home, library, retry_failed=True)
    assert "hang.mp4" in ok  # the normal decoder reads it fine
    assert set(failed) == {"empty.mp4", "random.mp4", "notes.mkv", "truncated.mp4"}


def test_models_never_run_remote_code(tmp_path: Path, tiny_model: Path) -> None:
    from vsearch.model.encoder import load_encoder

    model = tmp_path / "sneaky"
    shutil.copytree(tiny_model, model)
    marker = tmp_path / "pwned"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    cfg = (model / "config.json").read_text().replace(
        '"architectures"', '"auto_map": {"AutoModelForVideoClassification": "evil.Evil"}, "architectures"')
    (model / "config.json").write_text(cfg)
    encoder = load_encoder(str(model))  # auto_map is ignored: the plain VideoMAE class loads the weights
    assert encoder.labels == list(MOTIONS)
    assert not marker.exists()


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('BOOM_MARKER', '/tmp/vsearch-boom')}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_weights_cannot_run_code(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vsearch import ModelError
    from vsearch.model.encoder import load_encoder

    marker = tmp_path / "boom"
    monkeypatch.setenv("BOOM_MARKER", str(marker))
    model = tmp_path / "pickled"
    model.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy2(tiny_model / name, model / name)
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": _Boom()}))
    with pytest.raises(ModelError):
        load_encoder(str(model))
    assert not marker.exists()


def test_dangling_link_named_like_a_video_is_reported(tmp_path: Path, vsearch_home: Path) -> None:
    root = tmp_path / "lib"
    write_video(root / "good.mp4", render_motion("growing", np.random.default_rng(0)))
    os.symlink(tmp_path / "gone.mp4", root / "dangling.mp4")
    report, ok, failed = index(vsearch_home, root)
    assert ok == {"good.mp4": 1} and "cannot read" in failed["dangling.mp4"]


def test_stream_that_starts_late_is_sampled_from_its_first_frame(tmp_path: Path) -> None:
    """MPEG-TS files and cut recordings often start at a timestamp well after zero."""
    frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(12)]  # brightness encodes the index
    late = write_video(tmp_path / "late.mp4", frames, 8, pts_ms=[5000 + 125 * i for i in range(12)])  # starts at 5 s
    info = probe(late)
    assert info.start == pytest.approx(5.0, abs=0.01)
    spec = FrameSpec(4, None, None)
    got = next(read_windows(str(late), spec, Sampling(), backend="pyav"))[2][0]
    brightness = [int(f.mean()) for f in got]
    window = plan_windows_for(info)
    assert brightness == pytest.approx([20 * i for i in window], abs=6)


def plan_windows_for(info):
    from vsearch.video.decode import plan_windows

    return list(plan_windows(info, 4, Sampling())[0].frames)
