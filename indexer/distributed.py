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
  its windows are stored, so a retry can neither duplicate nor drop a clip.

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

from vsearch.indexer.decode import FrameSpec, plan_windows
from vsearch.indexer.pipeline import Encoder, Indexer, IndexReport, IndexSettings, Progress
from vsearch.indexer.workers import Chunk, DecodePool, DecodeSettings, Failed
from vsearch.search.catalog import TOP_K, Catalog, ClipResult
from vsearch.search.vectors import VectorIndex

INSTALL_HINT = "Ray is not installed; pip install 'vsearch[ray]'"
LOST_REASON = "lost on the Ray cluster (its decode task failed on every retry)"
SHARED_FS_SAMPLE = 64  # files each node proves it can read before the run


class RayIndexError(Exception):
    """The Ray run cannot start or go on; the message says why and what to do."""


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
            total = len(plan_windows(info, settings.spec.num_frames, settings.sampling))
            meta = {"duration": info.duration, "fps": info.fps, "width": info.width, "height": info.height}
            for w, clip in zip(event.windows, event.frames):
                yield {"key": key, "idx": w.index, "start": w.start, "end": w.end, "windows": total,
                       "reason": "", "frames": clip, **meta}
        elif isinstance(event, Failed):
            yield {"key": key, "idx": -1, "start": 0.0, "end": 0.0, "windows": 0, "reason": event.reason,
                   "frames": _blank(settings.spec), "duration": 0.0, "fps": 0.0, "width": 0, "height": 0}


def _blank(spec: FrameSpec) -> np.ndarray:
    # Rows of one column share a shape; a failure row carries empty frames of the model's size.
    h, w = spec.crop or (1, 1)
    return np.zeros((spec.num_frames, h, w, 3), dtype=np.uint8)


class _Encode:
    """A model actor: loads the encoder once, then labels and embeds batches of windows."""

    def __init__(self, load_encoder: Callable[[], Encoder]):
        self.encoder = load_encoder()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = batch.pop("frames")
        ok = batch["reason"] == ""
        n = len(ok)
        batch["top_ids"] = np.zeros((n, TOP_K), dtype=np.int32)
        batch["top_scores"] = np.zeros((n, TOP_K), dtype=np.float32)
        batch["embedding"] = np.zeros((n, self.encoder.dim), dtype=np.float32)
        if ok.any():
            probs, embs = self.encoder.encode(np.stack(list(frames[ok])))
            top = np.argsort(-probs, axis=1)[:, :TOP_K]
            batch["top_ids"][ok] = top
            batch["top_scores"][ok] = np.take_along_axis(probs, top, axis=1)
            batch["embedding"][ok] = embs
        return batch


class RayIndexer(Indexer):
    """Indexer whose decode and model stages run on Ray; planning and storing stay in this process.

    `load_encoder` is sent to the model actors, so it must pickle (functools.partial of
    vsearch.indexer.model.load_encoder, not a lambda over local state); the driver calls it once
    too, for the model's labels and frame size."""

    def __init__(
        self,
        catalog: Catalog,
        load_encoder: Callable[[], Encoder],
        settings: IndexSettings | None = None,
        ray_settings: RaySettings | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        super().__init__(catalog, load_encoder, settings, on_progress, should_stop)
        self.ray_settings = ray_settings or RaySettings()

    def run(self, roots: Sequence[Any]) -> IndexReport:
        with ray_session(self.ray_settings.address):
            return super().run(roots)

    def _index(self, jobs: list[Any], vector_index: Callable[[], VectorIndex], report: IndexReport) -> None:
        import ray

        s, rs, cat = self.settings, self.ray_settings, self.catalog
        timings = report.timings
        check_shared_files([job.file.path for job in jobs])
        t0 = time.perf_counter()
        encoder = self.encoder = self.load_encoder()
        cat.bind_model(encoder.name, encoder.fingerprint, encoder.dim, encoder.labels)
        vectors = vector_index()
        timings["load_model"] = time.perf_counter() - t0
        timings.setdefault("store", 0.0)

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # vsearch shows its own, with the same ETA as a local run
        ctx.max_errored_blocks = -1  # a task that crashes on every retry loses its file, not the run
        ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
            object_store_memory=rs.object_store_memory)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        on_gpu = gpus > 0 and rs.gpus_per_actor > 0
        if on_gpu:
            actors = rs.actors or max(1, int(gpus / rs.gpus_per_actor))
            placement: dict[str, Any] = {"num_gpus": rs.gpus_per_actor}
        else:  # CPU actors: torch gets half of a node's cores, decoding the other half
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            actors = rs.actors or max(1, len(nodes))
            cores = min(int(n["Resources"].get("CPU", 1)) for n in nodes) if nodes else 1
            placement = {"num_cpus": max(1, cores // 2)}

        decode = DecodeSettings(spec=encoder.frame_spec, sampling=s.sampling, threads=s.decode_threads,
                                timeout=s.timeout, memory_limit=s.memory_limit, backend=s.backend, reader=s.reader,
                                chunk=max(1, min(4, s.batch_size)))
        items = [{"key": i, "path": job.file.path} for i, job in enumerate(jobs)]
        dataset = (
            ray.data.from_items(items, override_num_blocks=len(items))  # one file per decode task
            .flat_map(partial(decode_file, settings=decode), num_cpus=1,
                      compute=ray.data.TaskPoolStrategy(size=rs.decode_tasks))
            .map_batches(_Encode, fn_constructor_args=(self.load_encoder,), batch_size=s.batch_size,
                         batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                         **placement)
        )
        writer = ResultWriter(cat, vectors, jobs, encoder.labels, report)
        last_save = time.perf_counter()
        batches = dataset.iter_batches(batch_size=None, batch_format="numpy")
        try:
            for batch in batches:
                t = time.perf_counter()
                touched = writer.store(batch)
                timings["store"] += time.perf_counter() - t
                if touched:
                    self.on_progress(Progress(writer.done, len(jobs), report.clips, touched[-1]))
                if time.perf_counter() - last_save > s.save_every:
                    vectors.save(cat.home, cat.generation)
                    last_save = time.perf_counter()
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
            writer.fail_unfinished(LOST_REASON)


def _root_cause(exc: BaseException) -> str:
    """The last line of a Ray error: the remote exception that started it, without colour codes."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


@dataclass
class ResultWriter:
    """Stores result batches, one transaction each; safe against windows delivered twice."""

    catalog: Catalog
    vectors: VectorIndex
    jobs: list[Any]
    labels: list[str]
    report: IndexReport
    done: int = 0

    def __post_init__(self) -> None:
        self.closed: set[int] = set()  # keys finished or failed: later deliveries are ignored

    def store(self, batch: dict[str, np.ndarray]) -> list[str]:
        """Store one batch; returns the paths of files it finished (indexed or failed)."""
        cat = self.catalog
        gone: list[int] = []
        newly_done: list[Any] = []
        failed: list[tuple[Any, str]] = []
        with cat.transaction():
            for i, key in enumerate(batch["key"].tolist()):
                if key in self.closed:
                    continue
                job = self.jobs[key]
                reason = str(batch["reason"][i])
                if reason:
                    gone += cat.fail_video(job.file.path, job.file.size, job.file.mtime, job.fingerprint, reason)
                    job.video_id, job.clip_ids, job.vectors = None, [], []
                    self.closed.add(key)
                    failed.append((job, reason))
                    continue
                if job.video_id is None:
                    gone += cat.forget(job.file.path)
                    meta = {k: float(batch[k][i]) for k in ("duration", "fps")}
                    meta |= {k: int(batch[k][i]) for k in ("width", "height")}
                    job.video_id = cat.start_video(job.file.path, job.file.size, job.file.mtime,
                                                   job.fingerprint, meta)
                embedding = batch["embedding"][i]
                picked = [(self.labels[j], float(p)) for j, p in zip(batch["top_ids"][i], batch["top_scores"][i])]
                clip = ClipResult(int(batch["idx"][i]), float(batch["start"][i]), float(batch["end"][i]),
                                  picked, embedding)
                ids = cat.add_clips(job.video_id, [clip])  # [] when this window came twice
                if ids:
                    job.clip_ids += ids
                    job.vectors.append(embedding)
                if len(job.clip_ids) == int(batch["windows"][i]):
                    cat.finish_video(job.video_id)
                    self.closed.add(key)
                    newly_done.append(job)
        self.vectors.remove(gone)
        for job in newly_done:
            self.vectors.add(job.clip_ids, np.stack(job.vectors))
            self.report.indexed += 1
            self.report.clips += len(job.clip_ids)
            job.vectors = []
        self.report.failed += [(job.file.path, reason) for job, reason in failed]
        touched = [job.file.path for job in newly_done] + [job.file.path for job, _ in failed]
        self.done += len(touched)
        return touched

    def fail_unfinished(self, reason: str) -> None:
        """Files the pipeline never completed (their task crashed on every retry) fail with a reason."""
        lost = [(key, job) for key, job in enumerate(self.jobs) if key not in self.closed]
        if not lost:
            return
        gone: list[int] = []
        with self.catalog.transaction():
            for key, job in lost:
                gone += self.catalog.fail_video(job.file.path, job.file.size, job.file.mtime, job.fingerprint, reason)
                self.closed.add(key)
                self.report.failed.append((job.file.path, reason))
        self.vectors.remove(gone)

