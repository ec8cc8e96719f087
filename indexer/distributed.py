"""`vsearch index --ray`: the same index, with decoding and the model spread over a Ray cluster.

The driver (this process) does what a local run does: it walks the folders, decides what changed
(Indexer.run's planning, unchanged), owns the catalog and FAISS as the single writer, and reports
progress. Only the work in between moves to Ray, as one streaming Ray Data pipeline:

    files -> flat_map(decode_file) on CPUs -> map_batches(_Encode) model actors -> iter_batches -> store

- Decode tasks run the local decode worker (read_windows in a guarded process: time limit, memory
  ceiling, a crash costs only that process) and emit one row per window, uint8 frames already at
  model size. Every failure becomes a failure row with the reason a local run would store: one
  bad file never fails the dataset.
- Model actors load the encoder once; one per GPU, or CPU actors where the cluster has none.
- The streaming executor only starts more decoding when the object store has room, so memory
  stays bounded however large the library (`RaySettings.object_store_memory`).
- Ray delivers at least once (a killed actor's batch is redone). Writes are keyed by (video,
  window): the catalog ignores a window it already holds, and a video is marked ok only when all
  its windows are stored, so a retry can neither duplicate nor drop a window.

Ray is an optional dependency (`pip install 'vsearch[ray]'`): this module imports it lazily.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from vsearch.core.errors import RayIndexError
from vsearch.evidence.base import Part, WindowModel
from vsearch.indexer.pipeline import (
    BatchStore,
    EncodedWindow,
    Indexer,
    IndexJob,
    IndexReport,
    IndexSettings,
    Progress,
    Vectors,
    window_results,
)
from vsearch.model.encoder import Encoder
from vsearch.search.catalog import Catalog
from vsearch.video.decode import FrameSpec, VideoInfo, Window, plan_windows, read_windows
from vsearch.video.workers import Chunk, DecodePool, DecodeSettings, Failed, ReadWindows

INSTALL_HINT = "Ray is not installed; pip install 'vsearch[ray]'"
LOST_REASON = "lost on the Ray cluster (its decode task failed on every retry)"
SHARED_FS_SAMPLE = 64  # files each node proves it can read before the run


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: a local Ray on this machine; "auto"; "ray://host:port"
    gpus_per_actor: float = 1.0  # GPUs per model actor where the cluster has GPUs
    actors: int | None = None  # model actors at most; default: one per GPU, else one per node
    decode_tasks: int | None = None  # decode tasks in flight at most; default: as many as CPUs allow
    # Frames waiting between the stages, cluster-wide: the streaming executor holds decoding back
    # beyond this. 2 GiB is ~850 VideoMAE-base windows (16 x 224 x 224 x 3 bytes each).
    object_store_memory: int = 2 << 30


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Connect to Ray (or start a local one) for the length of a run; an open session is reused."""
    quiet_ray_data()
    try:
        import ray
    except ImportError:
        raise RayIndexError(INSTALL_HINT) from None
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise RayIndexError(f"cannot start or join Ray at {where}: {str(exc).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_ray_data() -> None:
    """Ray Data logs each dataset's plan, timing and settings; vsearch reports progress and errors itself.

    Ray Data reads this when it is first imported, which is why it is an environment variable."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")


def check_shared_files(paths: Sequence[str], sample: int = SHARED_FS_SAMPLE) -> None:
    """On every node, read the first bytes of a sample of the files at the driver's paths.

    Raises RayIndexError naming the first node and path that could not be read: the run needs
    the files at the same paths everywhere (a shared filesystem)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not paths:
        return
    step = max(1, len(paths) // sample)
    picked = list(paths[::step][:sample])
    if paths[-1] not in picked:
        picked.append(paths[-1])
    probe = ray.remote(num_cpus=0, max_retries=0)(_first_unreadable)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(picked)
            for n in nodes]
    for node, bad in zip(nodes, ray.get(refs)):
        if bad is not None:
            path, why = bad
            raise RayIndexError(
                f"node {node.get('NodeManagerAddress', '?')} ({node.get('NodeManagerHostname', '?')}) cannot read "
                f"{path}: {why}. Every Ray node must see the files at the same paths (a shared filesystem)."
            )


def _first_unreadable(paths: list[str]) -> tuple[str, str] | None:
    for path in paths:
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            return path, exc.strerror or str(exc)
    return None


# Per Ray worker process: its guarded decode process outlives one task, so a file costs no spawn.
_pools: dict[DecodeSettings, DecodePool] = {}


def decode_file(row: dict[str, Any], settings: DecodeSettings) -> Iterator[dict[str, Any]]:
    """One file -> one row per window (frames at model size), or a failure row with its reason.

    Runs as a Ray task, decoding in the same guarded worker process as a local run (a time limit,
    a memory ceiling, a crash costs only that process), so a failure has the same reason text. It
    never raises for a bad file: Ray would retry it and then fail the whole dataset. Windows
    decoded before a failure still come out; the driver drops them when the failure row comes."""
    key, path = int(row["key"]), str(row["path"])
    pool = _pools.get(settings) or _pools.setdefault(settings, DecodePool(settings))
    for event in pool.run([(key, path)]):
        if isinstance(event, Chunk):
            info = event.info
            assert settings.spec is not None  # decode tasks always have the video model's frame spec
            total = len(plan_windows(info, settings.spec.num_frames, settings.sampling))
            meta = {"video_frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height}
            for i, (w, frames) in enumerate(zip(event.windows, event.frames)):
                yield {"key": key, "idx": w.index, "start": w.start, "end": w.end, "windows": total,
                       "reason": "", "frames": frames, **meta, **{_side(n): f[i] for n, f in event.sides.items()}}
        elif isinstance(event, Failed):
            blank = {_side(name): _blank(spec) for name, spec in settings.sides}
            yield {"key": key, "idx": -1, "start": 0.0, "end": 0.0, "windows": 0, "reason": event.reason,
                   "frames": _blank(settings.spec), "video_frames": 0, "fps": 0.0, "width": 0, "height": 0, **blank}


def _side(kind: str) -> str:
    """The column of a window kind's frames, and then of its values, in the pipeline's rows."""
    return f"kind:{kind}"


def _blank(spec: FrameSpec | None) -> np.ndarray:
    # Rows of one column share a shape; a failure row carries empty frames of the model's size.
    assert spec is not None  # decode tasks always have the video model's frame spec
    h, w = spec.crop or (1, 1)
    return np.zeros((spec.num_frames, h, w, 3), dtype=np.uint8)


class _Encode:
    """A model actor: loads the models once, then labels and embeds batches of windows (and gives
    each its vector of every window kind of the run)."""

    def __init__(self, load_encoder: Callable[[], Encoder], loaders: dict[str, Callable[[], WindowModel]]):
        self.encoder = load_encoder()
        self.models = {name: load() for name, load in loaders.items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = batch.pop("frames")
        ok = batch["reason"] == ""
        n, e = len(ok), self.encoder
        batch["probs"] = np.zeros((n, len(e.labels)), dtype=np.float32)
        batch["embedding"] = np.zeros((n, e.dim), dtype=np.float32)
        if ok.any():
            batch["probs"][ok], batch["embedding"][ok] = e.encode(np.stack(list(frames[ok])))
        for name, model in self.models.items():
            sides = batch.pop(_side(name))
            batch[_side(name)] = np.zeros((n, model.dim), dtype=np.float32)
            if ok.any():
                batch[_side(name)][ok] = model.embed_frames(np.stack(list(sides[ok])))
        return batch


class RayIndexer(Indexer):
    """Indexer whose decode and model stages run on Ray; planning and storing stay in this process.

    `load_encoder` is sent to the model actors, so it must pickle (functools.partial of
    vsearch.model.encoder.load_encoder, not a lambda over local state); the driver calls it once
    too, for the model's labels and frame size."""

    def __init__(
        self,
        catalog: Catalog,
        load_encoder: Callable[[], Encoder],
        settings: IndexSettings | None = None,
        ray_settings: RaySettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        read: ReadWindows = read_windows,
        parts: Sequence[Part] = (),
    ):
        super().__init__(catalog, load_encoder, settings, on_progress, should_stop, read, parts)
        self.ray_settings = ray_settings or RaySettings()

    def run(self, roots: Sequence[Any]) -> IndexReport:
        with ray_session(self.ray_settings.address):
            return super().run(roots)

    def _index(self, jobs: Sequence[IndexJob], vectors: Vectors, report: IndexReport) -> None:
        import ray

        s, rs, cat = self.settings, self.ray_settings, self.catalog
        timings = report.timings
        check_shared_files([job.file.path for job in jobs])
        t0 = time.perf_counter()
        encoder = self.encoder = self.load_encoder()
        batch_size = s.batch_size or encoder.batch_size or 8  # no calibration across a cluster's mixed nodes
        self.bind(encoder, batch_size, vectors)
        results = RayResults(BatchStore(cat, vectors, jobs, report, s.save_every, self.window_parts), encoder.labels)
        timings["load_model"] = time.perf_counter() - t0
        timings.setdefault("store", 0.0)

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # vsearch shows its own, with the same ETA as a local run
        ctx.max_errored_blocks = -1  # a task that crashes on every retry loses its file, not the run
        ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
            object_store_memory=rs.object_store_memory)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if gpus > 0 and rs.gpus_per_actor > 0:
            actors = rs.actors or max(1, int(gpus / rs.gpus_per_actor))
            placement: dict[str, Any] = {"num_gpus": rs.gpus_per_actor}
        else:  # CPU actors: torch gets half of a node's cores, decoding the other half
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            actors = rs.actors or max(1, len(nodes))
            cores = min(int(n["Resources"].get("CPU", 1)) for n in nodes) if nodes else 1
            placement = {"num_cpus": max(1, cores // 2)}

        # a decode task holds one CPU in Ray's accounting: one FFmpeg thread, unless asked for more
        decode = DecodeSettings(spec=encoder.frame_spec, sampling=s.sampling, threads=s.decode_threads or 1,
                                timeout=s.timeout, memory_limit=s.memory_limit, backend=s.backend, read=self.read,
                                chunk=max(1, min(4, batch_size)),
                                sides=tuple((name, model.frame_spec) for name, model in self.models.items()))
        loaders = {p.kind.name: p.load for p in self.window_parts}
        items = [{"key": i, "path": job.file.path} for i, job in enumerate(jobs)]
        dataset = (
            ray.data.from_items(items, override_num_blocks=len(items))  # one file per decode task
            .flat_map(partial(decode_file, settings=decode), num_cpus=1,
                      compute=ray.data.TaskPoolStrategy(size=rs.decode_tasks))
            .map_batches(_Encode, fn_constructor_args=(self.load_encoder, loaders), batch_size=batch_size,
                         batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                         **placement)
        )
        batches = dataset.iter_batches(batch_size=None, batch_format="numpy")
        try:
            for batch in batches:
                t = time.perf_counter()
                settled = results.store(batch)
                timings["store"] += time.perf_counter() - t
                if settled:
                    self.on_progress(Progress(results.batch_store.settled, len(jobs), report.windows, settled[-1]))
                if self.should_stop():
                    report.interrupted = True
                    break
        except ray.exceptions.RayError as exc:  # the cluster went away, or the model failed to load there
            cat.drop_incomplete()
            raise RayIndexError(f"the Ray pipeline failed ({_root_cause(exc)}); what was stored is kept, "
                                "run the same command to go on") from None
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the streaming executor: no more decoding or model work
        if report.interrupted:
            cat.drop_incomplete()  # videos cut off mid-way are redone whole by the next run
        else:
            results.fail_unfinished(LOST_REASON)


def _root_cause(exc: BaseException) -> str:
    """The last line of a Ray error: the remote exception that started it, without colour codes."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


class RayResults:
    """Turns the pipeline's result batches into BatchStore calls, at least once made exactly once.

    Ray may deliver a window twice (a retried task or actor), and a video's windows arrive with
    no end marker: a video is finished here when all its planned windows have come, and rows of
    a video already settled (stored whole, or failed) are dropped. The catalog's unique
    (video, window) index is the last guard."""

    def __init__(self, store: BatchStore, labels: Sequence[str]):
        self.batch_store = store
        self.labels = labels
        self.kinds = list(store.parts)  # the window kinds whose values come with each row
        self._windows: dict[int, set[int]] = {}  # key -> windows received
        self._settled: set[int] = set()

    def store(self, batch: dict[str, np.ndarray]) -> list[str]:
        """Store one batch in one transaction; returns the paths it settled (indexed or failed)."""
        rows: list[int] = []
        finished: list[int] = []
        failed: list[tuple[int, str]] = []
        for i, key in enumerate(batch["key"].tolist()):
            if key in self._settled:
                continue
            reason = str(batch["reason"][i])
            if reason:
                failed.append((key, reason))
                self._settled.add(key)
                continue
            seen = self._windows.setdefault(key, set())
            if int(batch["idx"][i]) in seen:
                continue
            seen.add(int(batch["idx"][i]))
            rows.append(i)
            if len(seen) == int(batch["windows"][i]):
                finished.append(key)
                self._settled.add(key)
        windows = [Window(int(batch["idx"][i]), float(batch["start"][i]), float(batch["end"][i]), ()) for i in rows]
        results = window_results(self.labels, windows, batch["probs"][rows], batch["embedding"][rows])
        encoded = [EncodedWindow(int(batch["key"][i]), _info(batch, i), r,
                                 values={name: batch[_side(name)][i] for name in self.kinds})
                   for i, r in zip(rows, results)]
        for key, _ in failed:
            self._windows.pop(key, None)
        return self.batch_store.store(encoded, finished, failed)

    def fail_unfinished(self, reason: str) -> None:
        """Files the pipeline never completed (their task crashed on every retry) fail with a reason."""
        lost = [key for key in range(len(self.batch_store.jobs)) if key not in self._settled]
        if lost:
            self.batch_store.store([], [], [(key, reason) for key in lost])
            self._settled.update(lost)


def _info(batch: dict[str, np.ndarray], i: int) -> VideoInfo:
    return VideoInfo(frames=int(batch["video_frames"][i]), fps=float(batch["fps"][i]), width=int(batch["width"][i]),
                     height=int(batch["height"][i]))
