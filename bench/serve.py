"""Benchmarks of `vsearch serve`, over real HTTP on loopback.

- load: 50 concurrent clients for 10 s mixing keyword search, thumbnails and ranged video reads,
  while `vsearch index` writes to the same index: errors, p50/p99 per kind.
- scale: on the synthetic catalog of `vsearch bench --scale` (bench/scale.py), `/api/search`
  p50, the search page's time to first byte, a cached thumbnail, and the home page (first and
  a deep page of the library) and a video's page: time to first byte, and full load (the HTML and
  every stylesheet, script and picture it names, fetched six at a time as a browser does).

Run: python -m vsearch.bench.serve --work /tmp/vsearch-serve [--clients 50] [--seconds 10] [--scale 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vsearch import data
from vsearch.bench.synthetic import MOTIONS, long_video, render_motion, write_video

VSEARCH = str(Path(sys.executable).parent / "vsearch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([VSEARCH, "serve", "--home", str(home), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(base + "/static/style.css", timeout=1)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("vsearch serve did not start: " + proc.stderr.read().decode())  # type: ignore[union-attr]  # started with stderr=PIPE


def make_library(root: Path, videos: int, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(videos):
        motion = MOTIONS[i % len(MOTIONS)]
        path = root / f"{motion.replace(' ', '_')}_{seed}_{i:03d}.mp4"
        if not path.exists():
            write_video(path, render_motion(motion, rng, frames=int(16 * seconds), width=160, height=120))


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


async def load(base: str, clients: int, seconds: float, labels: list[str], thumbs: list[str],
               videos: list[tuple[str, int]]) -> dict[str, list[float]]:
    """`clients` loops, each picking a request at random; returns latencies (ms) per kind, and errors."""
    import httpx

    times: dict[str, list[float]] = {"search": [], "thumbnail": [], "video range": [], "errors": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def one(rng: random.Random) -> None:
            while time.perf_counter() < stop:
                kind = rng.choice(["search", "thumbnail", "video range"])
                if kind == "search":
                    request = client.get("/api/search", params={"q": rng.choice(labels)})
                elif kind == "thumbnail":
                    request = client.get(rng.choice(thumbs))
                else:
                    url, size = rng.choice(videos)
                    first = rng.randrange(size)
                    request = client.get(url, headers={"range": f"bytes={first}-{first + rng.randrange(1 << 20)}"})
                t0 = time.perf_counter()
                try:
                    answer = await request
                    ok = answer.status_code == (206 if kind == "video range" else 200)
                except httpx.HTTPError:
                    ok = False
                times[kind if ok else "errors"].append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(one(random.Random(i)) for i in range(clients)))
    return times


def run_load(work: Path, clients: int = 50, seconds: float = 10.0, log: Callable[[str], None] = print) -> str:
    import httpx

    home, served, incoming = work / "home", work / "served", work / "incoming"
    model = str(data.path("motion-model"))
    log("making videos...")
    shutil.rmtree(home, ignore_errors=True)  # a fresh index, so the index run below has work to do
    make_library(served, 12, 4.0, seed=1)
    long_video(served / "long.mp4", 60, width=640, height=360)
    make_library(incoming, 120, 6.0, seed=2)
    subprocess.run([VSEARCH, "index", str(served), "--home", str(home), "--model", model, "-q"], check=True)
    proc, base = start_server(home)
    try:
        setup = httpx.Client(base_url=base, timeout=120)  # first views make thumbnails: slow on a busy machine
        hits = setup.get("/api/search", params={"q": "moving", "limit": 50}).json()
        # keyword queries (label names): free text adds a sentence-model embedding per query,
        # which is the library's cost, measured by `vsearch bench --scale`
        labels = [r["label"] for r in setup.get("/api/labels").json()]
        thumbs = sorted({f for h in hits for f in h["frames"]})
        for url in thumbs:  # the load measures cached thumbnails; the first view makes them
            setup.get(url)
        videos = sorted({(h["video"], int(setup.head(h["video"]).headers["content-length"])) for h in hits})
        log(f"load: {clients} clients for {seconds:g} s on {base}, while `vsearch index` runs...")
        indexer = subprocess.Popen([VSEARCH, "index", str(incoming), "--home", str(home), "--model", model, "-q"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it load the model and start writing
        times = asyncio.run(load(base, clients, seconds, labels, thumbs, videos))
        still_indexing = indexer.poll() is None
        indexer.wait()
    finally:
        proc.terminate()
        proc.wait(10)
    total = sum(len(v) for v in times.values())
    during = "throughout" if still_indexing else "for part of it (it finished early)"
    lines = [f"serve load: {clients} clients x {seconds:g} s on loopback, mixed keyword search / cached thumbnail / "
             f"ranged video read, `vsearch index` writing {during}",
             f"  requests {total} ({total / seconds:.0f}/s), errors {len(times['errors'])}"]
    for kind in ("search", "thumbnail", "video range"):
        v = times[kind]
        lines.append(f"  {kind:>12}: {len(v):6d} requests  p50 {pct(v, 50):7.1f} ms  p99 {pct(v, 99):7.1f} ms")
    every = [t for k, v in times.items() if k != "errors" for t in v]
    lines.append(f"  {'all':>12}: {len(every):6d} requests  p50 {pct(every, 50):7.1f} ms  p99 {pct(every, 99):7.1f} ms")
    return "\n".join(lines)


ASSETS = re.compile(r'(?:src|href)="(/(?:static|thumbs)/[^"?#]+)"')  # what a page makes the browser fetch
BROWSER_CONNECTIONS = 6  # per host, as browsers fetch over HTTP/1.1


def give_thumbnails(client: Any, home: Path, url: str) -> None:
    """The synthetic catalog's files are empty: give every picture a page shows a thumbnail, as
    `vsearch index` makes them, so full load measures serving them and not a failed decode."""
    from vsearch.video.thumbs import encode_jpeg, thumb_path, write_thumb

    rgb = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    for asset in ASSETS.findall(client.get(url).text):
        if asset.startswith("/thumbs/") and not thumb_path(home, int(asset[8:-4])).is_file():
            write_thumb(home, int(asset[8:-4]), encode_jpeg(rgb))


def page_load(client: Any, url: str) -> tuple[float, float]:
    """(time to first byte, full load) of a page in ms: the HTML, then everything it names."""
    t0 = time.perf_counter()
    with client.stream("GET", url) as answer:
        assert answer.status_code == 200, (url, answer.status_code)
        chunks = answer.iter_bytes()
        first = next(chunks)
        first_byte = (time.perf_counter() - t0) * 1000
        page = (first + b"".join(chunks)).decode()

    def fetch(asset: str) -> None:
        assert client.get(asset).status_code == 200, asset

    with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
        list(pool.map(fetch, sorted(set(ASSETS.findall(page)))))
    return first_byte, (time.perf_counter() - t0) * 1000


def run_scale(work: Path, videos: int = 10_000, log: Callable[[str], None] = print) -> str:
    """Latency of single requests at scale: the server is otherwise idle."""
    import httpx

    from vsearch.bench.scale import build_catalog, kinetics_labels
    from vsearch.video.thumbs import encode_jpeg, write_thumb

    home = work / f"scale-{videos}"
    log(f"building a synthetic catalog of {videos} videos x 10 clips (first run only)...")
    catalog = build_catalog(home, videos, 10, log=log)
    clip = catalog.db.execute("SELECT max(id) FROM windows").fetchone()[0]
    clips = catalog.window_count()
    catalog.close()
    rgb = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    write_thumb(home, clip, encode_jpeg(rgb))  # the synthetic files are empty: give one clip its thumbnail
    proc, base = start_server(home)
    try:
        words = kinetics_labels()[::7][:40]
        with httpx.Client(base_url=base, timeout=30) as client:
            for w in words[:5]:
                client.get("/api/search", params={"q": w})  # warm: first query per thread opens the catalog

            def timed(url: str, params: dict | None = None, first_byte: bool = False) -> float:
                t0 = time.perf_counter()
                with client.stream("GET", url, params=params) as answer:
                    assert answer.status_code == 200, (url, answer.status_code)
                    if first_byte:
                        next(answer.iter_raw())
                        return (time.perf_counter() - t0) * 1000
                    answer.read()
                return (time.perf_counter() - t0) * 1000

            api = [timed("/api/search", {"q": w}) for w in words]
            hits = statistics.mean(len(client.get("/api/search", params={"q": w}).json()) for w in words)
            page = [timed("/", {"q": w}, first_byte=True) for w in words]
            thumb = [timed(f"/thumbs/{clip}.jpg") for _ in range(200)]
            pages = {"home": ["/"], "older videos (mid-library)": [f"/?before={videos // 2}"],
                     "video page": [f"/videos/{v}" for v in range(videos, 0, -max(1, videos // 40))]}
            loads: dict[str, list[tuple[float, float]]] = {}
            for name, urls in pages.items():
                for url in urls:
                    give_thumbnails(client, home, url)
                    page_load(client, url)  # the first view fills SQLite's and the OS's caches
                loads[name] = [page_load(client, url) for _ in range(max(1, 40 // len(urls))) for url in urls]
    finally:
        proc.terminate()
        proc.wait(10)
    def line(name: str, ms: list[float], target: float) -> str:
        return f"  {name:<38} p50 {statistics.median(ms):6.1f} ms  p99 {pct(ms, 99):6.1f} ms   (target < {target:g} ms)"

    return "\n".join([
        f"serve at scale: {videos} videos, {clips} clips (synthetic), one request at a time over loopback",
        line(f"/api/search (keyword, {hits:.0f} hits)", api, 30),
        line("search page, first byte", page, 50),
        line("cached thumbnail", thumb, 5),
        *[line(f"{name}, {kind}", [t[i] for t in times], target) for name, times in loads.items()
          for i, kind, target in ((0, "first byte", 50), (1, "full load", 200))],
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmarks of `vsearch serve` over loopback.")
    parser.add_argument("--work", type=Path, default=Path("bench-out/serve"))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scale", type=int, default=0, help="also: latency on a synthetic catalog of N videos")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    print(run_load(args.work, args.clients, args.seconds, log))
    if args.scale:
        print(run_scale(args.work, args.scale, log))


if __name__ == "__main__":
    main()
