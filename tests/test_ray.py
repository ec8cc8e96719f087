"""`vsearch index --ray` on a local Ray cluster: one `ray.init(num_cpus=2)` for the whole session,
because each start costs seconds. The real (tiny) VideoMAE runs in the model actors."""

from __future__ import annotations

import functools
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vsearch[ray]')")

from typer.testing import CliRunner  # noqa: E402

from tests import faulty  # noqa: E402
from vsearch.cli.main import app  # noqa: E402
from vsearch.indexer.distributed import RayIndexer, RayIndexError, check_shared_files  # noqa: E402
from vsearch.indexer.pipeline import Indexer, IndexSettings  # noqa: E402
from vsearch.model.encoder import load_encoder  # noqa: E402
from vsearch.search.catalog import Catalog, from_blobs  # noqa: E402
from vsearch.search.vectors import open_vectors  # noqa: E402

SETTINGS = IndexSettings(batch_size=4, workers=1, timeout=60)


@pytest.fixture(scope="session", autouse=True)
def ray_cluster() -> object:
    # Workers import tests.faulty (the misbehaving decoder) and this module's model loader.
    root = str(Path(__file__).resolve().parent.parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": root}})
    yield ray
    ray.shutdown()


def stored_windows(home: Path) -> dict[tuple[str, int], tuple[str, np.ndarray]]:
    """(path, window) -> (top-1 label, embedding) of every stored window."""
    cat = Catalog(home)
    try:
        rows = cat.db.execute(
            "SELECT v.path, c.idx, c.embedding, (SELECT l.name FROM window_labels cl JOIN labels l ON l.id = cl.label_id "
            "WHERE cl.window_id = c.id ORDER BY cl.score DESC LIMIT 1) FROM windows c JOIN videos v ON v.id = c.video_id "
            "WHERE v.status = 'ok'"
        ).fetchall()
        return {(r[0], r[1]): (r[3], from_blobs([r[2]], cat.dim)[0]) for r in rows}
    finally:
        cat.close()


def test_ray_run_matches_local_run_and_a_second_run_does_no_work(library: Path, tiny_model: Path, tmp_path: Path) -> None:
    local_home, ray_home = tmp_path / "local", tmp_path / "ray"
    cat = Catalog(local_home)
    local = Indexer(cat, functools.partial(load_encoder, str(tiny_model), device="cpu"), SETTINGS).run([library])
    cat.close()

    runner = CliRunner()
    args = ["index", str(library), "--home", str(ray_home), "--model", str(tiny_model), "--device", "cpu",
            "--batch-size", "4", "--ray"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "12 indexed" in first.output and "4 failed" in first.output

    ours, theirs = stored_windows(local_home), stored_windows(ray_home)
    assert set(ours) == set(theirs) and len(ours) >= 12
    same_label = sum(ours[k][0] == theirs[k][0] for k in ours) / len(ours)
    cosines = [float(np.dot(ours[k][1], theirs[k][1])) for k in ours]
    assert same_label >= 0.95
    assert min(cosines) >= 0.99
    cat = Catalog(ray_home)
    assert cat.failures() == sorted(local.failed)  # the same files, with the same reasons
    assert len(open_vectors(cat)[0]) == cat.window_count() == len(theirs)
    cat.close()

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 indexed (0 windows), 16 unchanged" in again.output


@dataclass(frozen=True)
class PidLoader:
    """Loads the tiny model in a model actor and notes the actor's process id, so a test can kill it."""

    model: str
    pids: str

    def __call__(self):
        if ray.get_runtime_context().get_actor_id() is not None:  # not the driver's own load
            with open(self.pids, "a") as f:
                f.write(f"{os.getpid()}\n")
        return load_encoder(self.model, device="cpu")


def test_killed_model_actor_is_restarted_and_no_window_is_stored_twice(library: Path, tiny_model: Path, tmp_path: Path) -> None:
    pids = tmp_path / "actor-pids"
    pids.touch()
    killed: list[int] = []

    def kill_actor_once(progress: object) -> None:
        if not killed:
            killed.append(int(pids.read_text().split()[0]))
            os.kill(killed[0], signal.SIGKILL)

    cat = Catalog(tmp_path / "home")
    report = RayIndexer(cat, PidLoader(str(tiny_model), str(pids)), SETTINGS, on_progress=kill_actor_once).run([library])
    assert killed and len(set(pids.read_text().split())) >= 2  # the actor died and Ray started another
    assert report.indexed == 12 and len(report.failed) == 4 and not report.interrupted
    duplicates = cat.db.execute("SELECT count(*) FROM (SELECT 1 FROM windows GROUP BY video_id, idx HAVING count(*) > 1)")
    assert duplicates.fetchone()[0] == 0
    assert cat.window_count() == report.windows == len(open_vectors(cat)[0])
    per_video = cat.db.execute("SELECT count(*), max(idx) + 1 FROM windows GROUP BY video_id").fetchall()
    assert all(count == windows for count, windows in per_video)  # every window once, none missing
    cat.close()


@dataclass(frozen=True)
class WorkerlessLoader:
    """A model the driver can load and the workers cannot (not on a shared filesystem there)."""

    model: str

    def __call__(self):
        if ray.get_runtime_context().get_actor_id() is not None:
            raise FileNotFoundError(f"{self.model}/config.json")
        return load_encoder(self.model, device="cpu")


def test_a_model_the_workers_cannot_load_stops_the_run_with_a_clear_error(library: Path, tiny_model: Path,
                                                                          tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "home")
    with pytest.raises(RayIndexError, match="the Ray pipeline failed .*config.json"):
        RayIndexer(cat, WorkerlessLoader(str(tiny_model)), SETTINGS).run([library])
    assert cat.stats()["incomplete"] == 0
    cat.close()


def test_a_decoder_that_hangs_or_crashes_on_a_ray_worker_loses_only_its_file(library: Path, tiny_model: Path,
                                                                              tmp_path: Path) -> None:
    good = next(library.glob("*.mp4"))
    shutil.copy2(good, library / "hang.mp4")
    shutil.copy2(good, library / "crash.mp4")
    settings = IndexSettings(batch_size=4, timeout=10)
    cat = Catalog(tmp_path / "home")
    report = RayIndexer(cat, functools.partial(load_encoder, str(tiny_model), device="cpu"), settings,
                        read=faulty.read_windows).run([library])
    failed = {Path(p).name: r for p, r in report.failed}
    assert "decoder hung" in failed["hang.mp4"]
    assert failed["crash.mp4"] == "decoder crashed (SIGSEGV), again in a second worker"  # as a local run stores it
    assert report.indexed == 12, report.failed
    cat.close()


def test_stopped_run_keeps_what_was_stored_and_the_next_run_does_only_the_rest(library: Path, tiny_model: Path,
                                                                              tmp_path: Path) -> None:
    home = tmp_path / "home"
    loader = functools.partial(load_encoder, str(tiny_model), device="cpu")
    progress: list[object] = []
    cat = Catalog(home)
    first = RayIndexer(cat, loader, SETTINGS, on_progress=progress.append, should_stop=lambda: bool(progress)).run([library])
    assert first.interrupted and 0 < first.indexed + len(first.failed) < 16
    assert cat.stats()["incomplete"] == 0  # half-stored videos are dropped, to be redone whole
    second = RayIndexer(cat, loader, SETTINGS).run([library])
    assert not second.interrupted
    assert first.indexed + second.indexed == 12
    assert second.unchanged == first.indexed + len(first.failed)
    assert cat.stats()["videos"] == 12
    cat.close()


def test_shared_filesystem_check_names_the_node_and_the_unreadable_path(library: Path) -> None:
    good = [str(p) for p in sorted(library.glob("*.mp4"))]
    check_shared_files(good)  # one node, all readable: passes
    with pytest.raises(RayIndexError, match=r"node \S+ .*cannot read /nonexistent/a\.mp4: No such file"):
        check_shared_files(good + ["/nonexistent/a.mp4"])


@pytest.mark.parametrize(
    ("args", "address", "paths"),
    [(["/v"], None, ["/v"]), (["/v", "auto"], "auto", ["/v"]), (["ray://10.0.0.1:10001", "/v", "/w"],
                                                              "ray://10.0.0.1:10001", ["/v", "/w"])],
)
def test_ray_address_is_told_apart_from_the_paths(args: list[str], address: str | None, paths: list[str]) -> None:
    from vsearch.cli.indexing import _ray_address

    assert _ray_address([Path(a) for a in args]) == (address, [Path(p) for p in paths])


def test_ray_with_an_address_but_no_path_is_refused() -> None:
    result = CliRunner().invoke(app, ["index", "--ray", "auto"])
    assert result.exit_code == 2
    assert "no folders or files to index" in result.output
