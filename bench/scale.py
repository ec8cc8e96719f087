"""`vsearch bench --scale`: search at a million clips, on a synthetic catalog built through the
catalog's own write path.

The embeddings have the structure real ones have: clips of one video lie close together, and
videos group into a few thousand topics, each with its own typical labels. Pure random vectors
would be the worst case for any approximate index and look like no real library.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from vsearch import data
from vsearch.core.home import Home
from vsearch.search import keyword
from vsearch.search.catalog import ACTIONS, VISUALS, Catalog, VectorSpace, WindowResult
from vsearch.search.similar import Probe, hits_for_windows, nearest_windows
from vsearch.search.vectors import EXACT_MAX, NPROBE, VectorIndex, current_file, open_vectors


def kinetics_labels() -> list[str]:
    path = data.path("kinetics400.txt")
    return path.read_text().split("\n")[:-1]


def build_catalog(home: Path, videos: int, windows_per_video: int, dim: int = 768, topics: int = 3000,
                  seed: int = 0, log: Callable[[str], None] = print) -> Catalog:
    """A catalog of `videos` x `windows_per_video` windows, written the way the indexer writes."""
    rng = np.random.default_rng(seed)
    labels = kinetics_labels()
    catalog = Catalog(home)
    if catalog.stats()["videos"] >= videos:
        return catalog
    catalog.bind_model("synthetic-videomae-base", "synthetic|768", dim, labels)
    centres = _unit(rng.standard_normal((topics, dim)).astype(np.float32))
    topic_labels = rng.integers(0, len(labels), (topics, 3))
    started = time.perf_counter()
    batch = 500
    for first in range(0, videos, batch):
        with catalog.transaction():
            for v in range(first, min(videos, first + batch)):
                t = int(rng.integers(topics))
                centre = _unit(centres[t] + 0.6 * _unit(rng.standard_normal(dim).astype(np.float32)))
                vecs = _unit(centre + 0.35 * _unit(rng.standard_normal((windows_per_video, dim)).astype(np.float32)))
                path = home / "library" / f"topic{t:04d}" / f"video{v:06d}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()  # search checks that a hit's file still exists: make that real
                vid = catalog.start_video(str(path), 1000 + v, 1.0, f"fp{v}",
                                          {"duration": 4.0 * windows_per_video, "fps": 30.0, "width": 1280, "height": 720})
                clips = []
                for c in range(windows_per_video):
                    main = topic_labels[t, rng.integers(3)]
                    others = rng.choice(len(labels), 4, replace=False)
                    scores = np.sort(rng.dirichlet(np.ones(5)))[::-1] * 0.5
                    scores[0] += 0.5 * rng.random()
                    picked = [(labels[main], float(scores[0]))] + [
                        (labels[o], float(s)) for o, s in zip(others, scores[1:]) if o != main]
                    clips.append(WindowResult(c, 4.0 * c, 4.0 * c + 4, picked, vecs[c]))
                catalog.add_windows(vid, clips)
                catalog.finish_video(vid)
        done = min(videos, first + batch)
        if done % 10_000 == 0 or done == videos:
            rate = done / (time.perf_counter() - started)
            log(f"  built {done:,}/{videos:,} videos ({rate:.0f} videos/s)")
    return catalog


def add_visuals(catalog: Catalog, dim: int = 768, topics: int = 2000, seed: int = 2) -> tuple[int, np.ndarray]:
    """Visual vectors for every clip, written the way the indexer writes them: each video shows one
    of `topics` kinds of sight, its windows close to it. Returns (count, the sights' centres), the
    centres being what a description of a kind of sight lands near."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((topics, dim)).astype(np.float32))
    have = catalog.count(VISUALS) if catalog.visual_model else 0
    if have and have == catalog.window_count():
        return have, centres
    with catalog.transaction():
        if catalog.bind_kind_model("visual", "synthetic SigLIP 2", "synthetic-siglip2|768", dim):
            catalog.db.execute("DELETE FROM visual_vectors")
    rows = catalog.db.execute("SELECT id, video_id FROM windows ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows])
    videos = np.array([r[1] for r in rows])
    sight_of = rng.integers(topics, size=int(videos.max()) + 1)
    for first in range(0, len(ids), 50_000):
        part = slice(first, first + 50_000)
        noise = _unit(rng.standard_normal((len(ids[part]), dim)).astype(np.float32))
        with catalog.transaction():
            catalog.add_visual_vectors([int(i) for i in ids[part]], _unit(centres[sight_of[videos[part]]] + 0.6 * noise))
    return len(ids), centres


def visual_rows(catalog: Catalog, centres: np.ndarray, rng: np.random.Generator) -> tuple[list[list[str]], int, str]:
    """Search by description at scale: recall@10 of the visual index against exact search, for
    query vectors near a kind of sight (as a typed description is); and its FAISS bytes."""
    visuals, _ = open_vectors(catalog, space=VISUALS)
    queries = _unit(centres[rng.integers(len(centres), size=40)] +
                    0.8 * _unit(rng.standard_normal((40, centres.shape[1])).astype(np.float32)))
    rows = recall_rows(visuals, queries, _exact_top10(catalog, queries, space=VISUALS))
    file = current_file(catalog.home, VISUALS)
    return rows, file.stat().st_size if file and file.exists() else 0, visuals.kind


def recall_rows(index: VectorIndex, queries: np.ndarray, exact: list[list[int]]) -> list[list[str]]:
    """Per nprobe (IVF) or once (exact): median ms of one query and recall@10 against `exact`; the
    index is left at the default nprobe."""
    rows = []
    ivf = index.kind == "ivf"
    for nprobe in ([16, 32, 48, 64] if ivf else [0]):
        index.set_nprobe(nprobe)
        found = index.search(queries, 10)[1]
        recall = np.mean([len(set(found[i]) & set(exact[i])) / 10 for i in range(len(queries))])
        ms = statistics.median([median_ms(partial(index.search, queries[i : i + 1], 10), 1) for i in range(len(queries))])
        rows.append([index.kind + (f", nprobe {nprobe}" if ivf else ""), f"{ms:.2f}", f"{recall:.3f}"])
    index.set_nprobe(NPROBE)
    return rows


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def flat_latency(vectors: np.ndarray, sizes: list[int], queries: np.ndarray) -> list[tuple[int, float]]:
    """Median ms of one exact query over the first N vectors: where exact search gets slow."""
    import faiss

    out = []
    for n in sizes:
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors[:n])
        ms = statistics.median([median_ms(partial(index.search, queries[i : i + 1], 10), 1)
                                for i in range(len(queries))])
        out.append((n, ms))
    return out


def run_scale(work: Path, videos: int = 100_000, windows_per_video: int = 10,
              log: Callable[[str], None] = print) -> str:
    from vsearch.bench.indexing import table

    home = work / f"scale-{videos}x{windows_per_video}"
    t0 = time.perf_counter()
    log(f"building a synthetic catalog of {videos:,} videos x {windows_per_video} windows (cached in {home})...")
    catalog = build_catalog(home, videos, windows_per_video, log=log)
    build_s = time.perf_counter() - t0
    n = catalog.window_count()
    log("opening the vector index (IVF is trained and filled on first open)...")
    t0 = time.perf_counter()
    vectors, rebuilt = open_vectors(catalog)
    open_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    lines = [f"catalog: {n:,} windows in {catalog.stats()['videos']:,} videos, dim {catalog.dim}; "
             f"built in {build_s:.0f}s, vector index {'built' if rebuilt else 'loaded'} in {open_s:.1f}s "
             f"({vectors.kind})", ""]

    log("keyword queries...")
    labels = kinetics_labels()
    keyword_rows = []
    for kind, words in (("exact label", [labels[i] for i in rng.integers(0, 400, 30)]),
                        ("one word, prefix", [labels[i].split()[0][:5] for i in rng.integers(0, 400, 30)])):
        # The first pass reads its pages from disk, as after a reboot; the second finds them cached.
        passes = [statistics.median([median_ms(partial(keyword.search, catalog, w, limit=20, semantic=False), 1)
                                     for w in words]) for _ in range(2)]
        keyword_rows.append([kind, len(words), f"{passes[0]:.1f}", f"{passes[1]:.1f}"])

    log("similar queries and recall against exact search...")
    ids_all = np.array([r[0] for r in catalog.db.execute("SELECT id FROM windows ORDER BY id")])
    sample_ids = rng.choice(ids_all, 40, replace=False)
    rows = catalog.db.execute(
        f"SELECT id, embedding FROM windows WHERE id IN ({','.join('?' * len(sample_ids))})",
        [int(i) for i in sample_ids]).fetchall()
    from vsearch.search.catalog import from_blobs

    queries = from_blobs([r[1] for r in rows], catalog.dim)
    similar_rows = recall_rows(vectors, queries, _exact_top10(catalog, queries))
    whole = statistics.median([median_ms(partial(_similar, catalog, vectors, queries[i : i + 1]), 1)
                               for i in range(len(queries))])

    log("exact search latency against size...")
    flat_sample = np.concatenate([vecs for _, vecs in catalog.iter_vectors()])
    sizes = [s for s in (10_000, 50_000, 100_000, 200_000, 400_000, 1_000_000) if s <= n]
    curve = flat_latency(flat_sample, sizes, queries[:20])
    del flat_sample

    log("visual vectors (search by description): writing them, then recall against exact search...")
    _, centres = add_visuals(catalog)
    visual_similar, visual_bytes, visual_kind = visual_rows(catalog, centres, rng)

    log("free text and the shell...")
    from vsearch.search import sentences

    free = []
    if sentences.find_model_dir() is not None:
        catalog.db.execute("DELETE FROM label_vectors")
        sentences.unload_sentence_model()
        t = time.perf_counter()
        keyword.search(catalog, "kids jumping on a trampoline")
        free.append(["first free-text query (loads the model, embeds and stores 400 labels)",
                     f"{(time.perf_counter() - t) * 1000:.0f}"])
        free.append(["warm free-text query", f"{median_ms(lambda: keyword.search(catalog, 'slurping noodles'), 5):.1f}"])
    shell = _shell_times(home, labels[117])
    serving_rss = _serving_rss(home, labels[117])

    db = Home.at(home).db
    db_bytes = db.stat().st_size + sum(p.stat().st_size for p in home.glob(db.name + "-*"))
    faiss_file = current_file(home)
    faiss_bytes = faiss_file.stat().st_size if faiss_file and faiss_file.exists() else 0
    lines += ["### Keyword search (in process, median of 30 queries, 20 hits)",
              table(keyword_rows, ["query", "queries", "median ms, first pass", "median ms, warm"]), "",
              "### Similar (one query clip, k=10; recall@10 against exact search over all clips)",
              table(similar_rows, ["index", "median ms", "recall@10"]),
              f"`similar` end to end (search + grouping by video + metadata), median: {whole:.1f} ms", "",
              "### Exact (flat) search latency by size: where the index switches",
              table([[f"{n:,}", f"{ms:.1f}"] for n, ms in curve], ["windows", "median ms"]),
              f"switch to IVF above {EXACT_MAX:,} clips", "",
              "### Search by description (the visual space, 768 numbers per window; a query near a kind of sight, "
              "k=10; recall@10 against exact search over all windows)",
              table(visual_similar, ["index", "median ms", "recall@10"]), "",
              "### Free text and the shell",
              table(free + shell, ["what", "ms"]), "",
              "### Memory and disk per window",
              table([["SQLite (labels, metadata, float16 embedding and visual vector)", f"{db_bytes / n:.0f} B"],
                     [f"FAISS file ({vectors.kind})", f"{faiss_bytes / n:.0f} B"],
                     [f"visual vector in SQLite (float16) and its FAISS file ({visual_kind})",
                      f"{2 * catalog.dim_of(VISUALS)} B + {visual_bytes / n:.0f} B"],
                     ["RSS of a process that opened the index and answered both kinds of query",
                      f"{serving_rss / n:.0f} B ({serving_rss / 1e9:.2f} GB)"]],
                    ["what", "per window"])]
    catalog.close()
    return "\n".join(lines)


def _exact_top10(catalog: Catalog, queries: np.ndarray, space: VectorSpace = ACTIONS) -> list[list[int]]:
    """Brute force over every stored clip, streamed from SQLite."""
    best_scores = np.full((len(queries), 10), -np.inf)
    best_ids = np.zeros((len(queries), 10), dtype=np.int64)
    for ids, vecs in catalog.iter_vectors(space):
        scores = queries @ vecs.T
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argsort(-all_scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(all_scores, top, 1)
        best_ids = np.take_along_axis(all_ids, top, 1)
    return [list(r) for r in best_ids]


def _serving_rss(home: Path, label: str) -> int:
    """Peak RSS, in bytes, of a fresh process that opens the index and answers a keyword and a similar query."""
    code = (
        "from pathlib import Path; from vsearch.search.catalog import Catalog; "
        "from vsearch.search.vectors import open_vectors; from vsearch.search import keyword; "
        "from vsearch.search.catalog import ACTIONS; "
        "from vsearch.search.similar import Probe, hits_for_windows, nearest_windows; "
        f"c = Catalog(Path({str(home)!r})); v, _ = open_vectors(c); keyword.search(c, {label!r}, semantic=False); "
        "_, vecs, _ = c.window_vectors(1); hits_for_windows(c, nearest_windows(c, [Probe(ACTIONS, v, vecs)], 1, 10), 1, 10); "
        # VmHWM, not ru_maxrss: a child started from this big process inherits its ru_maxrss
        "print([int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def _shell_times(home: Path, label: str) -> list[list[str]]:
    """Wall time of a plain keyword search from the shell against importing torch + transformers."""
    vsearch = Path(sys.executable).with_name("vsearch")
    cmds = {
        f'vsearch search "{label}"': [str(vsearch), "search", label, "--home", str(home)],
        'python -c "import torch, transformers"': [sys.executable, "-c", "import torch, transformers"],
    }
    rows = []
    for name, cmd in cmds.items():
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            runs.append((time.perf_counter() - t) * 1000)
        rows.append([name + " (wall, median of 3)", f"{statistics.median(runs):.0f}"])
    return rows


def _similar(catalog: Catalog, vectors: VectorIndex, queries: np.ndarray) -> list:
    """A find-similar of these windows, as the library answers one: its 10 videos."""
    return hits_for_windows(catalog, nearest_windows(catalog, [Probe(ACTIONS, vectors, queries)], None, 10), None, 10)
