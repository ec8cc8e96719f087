"""`vsearch serve`: the pages and API against the CLI's --json, media by id with Range, and the
attacks the issue lists (DNS rebinding, cross-origin writes, missing token, path traversal, a
link swapped after indexing, hostile Range headers, script in file names)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from tests.conftest import FakeEncoder  # noqa: E402
from tests.procs import Lines  # noqa: E402
from vsearch.bench.synthetic import render_motion, write_video  # noqa: E402
from vsearch.cli.main import app as cli  # noqa: E402
from vsearch.evidence.base import Part  # noqa: E402
from vsearch.indexer.pipeline import Indexer, IndexSettings  # noqa: E402
from vsearch.search.catalog import Catalog  # noqa: E402
from vsearch.video.decode import Sampling  # noqa: E402
from vsearch.video.thumbs import thumb_path  # noqa: E402
from vsearch.web.app import create_app  # noqa: E402

HOSTILE = "<img src=x onerror=alert(1)>"
SETTINGS = IndexSettings(batch_size=4, workers=1, timeout=30, sampling=Sampling(window_seconds=2.0))
BASE = "http://127.0.0.1:8765"


def make_video(path: Path, motion: str, seed: int, seconds: float = 6.0) -> Path:
    rng = np.random.default_rng(seed)
    return write_video(path, render_motion(motion, rng, frames=int(16 * seconds), width=96, height=64))


def index(home: Path, roots: list[Path], parts: Sequence[Part] = ()) -> None:
    catalog = Catalog(home)
    try:
        Indexer(catalog, FakeEncoder, SETTINGS, parts=parts).run(roots)
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(home, library): four short videos, one with a script for a name, and a broken file."""
    root = tmp_path_factory.mktemp("web")
    library = root / "library"
    for i, motion in enumerate(["moving left", "moving right", "growing"]):
        make_video(library / f"clip_{i}.mp4", motion, seed=i)
    make_video(library / f"{HOSTILE}.mp4", "moving up", seed=9)
    (library / f"broken {HOSTILE}.mp4").write_bytes(b"not a video at all")
    home = root / "home"
    index(home, [library])
    return home, library


@pytest.fixture
def client(indexed: tuple[Path, Path]) -> TestClient:
    return TestClient(create_app(indexed[0]), base_url=BASE)


def cli_json(home: Path, *args: str) -> object:
    result = CliRunner().invoke(cli, [*args, "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def top_label(home: Path) -> str:
    return cli_json(home, "labels")[0]["label"]


URL_KEYS = {"video_id", "video", "thumbnail", "frames", "page", "reasons"}  # what the page adds to the CLI objects


# -- the API is the CLI's --json -------------------------------------------------------------------


def test_api_objects_equal_the_cli_json(client: TestClient, indexed: tuple[Path, Path]) -> None:
    home, library = indexed
    label = top_label(home)
    web = client.get("/api/search", params={"q": label, "limit": 5}).json()
    assert web and [{k: v for k, v in h.items() if k not in URL_KEYS} for h in web] == \
        cli_json(home, "search", label, "--limit", "5")
    assert all(h["thumbnail"].startswith("/thumbs/") and h["video"] == f"/media/{h['video_id']}" for h in web)
    assert client.get("/api/search", params={"q": "clip_1"}).json()[0]["path"] == str(library / "clip_1.mp4")

    first = str(library / "clip_0.mp4")
    vid = client.get("/api/search", params={"q": "clip_0"}).json()[0]["video_id"]
    web_similar = client.get("/api/similar", params={"video": vid, "at": 2.5}).json()
    assert [{k: v for k, v in h.items() if k not in URL_KEYS} for h in web_similar] == \
        cli_json(home, "similar", first, "--at", "2.5")
    assert client.get("/api/similar", params={"path": first, "at": 2.5}).json() == web_similar

    assert client.get("/api/labels").json() == cli_json(home, "labels")
    assert client.get("/api/stats").json() == cli_json(home, "stats")
    video = client.get(f"/api/videos/{vid}").json()
    shown = cli_json(home, "show", first)
    assert {k: v for k, v in video.items() if k not in ("id", "video")} | {
        "windows": [{k: v for k, v in c.items() if k != "thumbnail"} for c in video["windows"]]} == shown
    assert len(video["windows"]) == 3 and all(c["thumbnail"].startswith("/thumbs/") for c in video["windows"])


def test_pages_render_the_same_hits_in_the_same_order(client: TestClient, indexed: tuple[Path, Path]) -> None:
    home, _ = indexed
    label = top_label(home)
    page = client.get("/", params={"q": label})
    assert page.status_code == 200
    paths = [html.unescape(p) for p in re.findall(r'data-path="([^"]*)"', page.text)]
    assert paths == [h["path"] for h in cli_json(home, "search", label)]
    starts = [float(s) for s in re.findall(r'data-start="([^"]*)"', page.text)]
    assert len(starts) == len(paths) and all(s >= 0 for s in starts)
    for url in ("/labels", "/stats", f"/videos/{json.loads(client.get('/api/search?q=clip_0').text)[0]['video_id']}"):
        assert client.get(url).status_code == 200, url
    assert client.get("/api/search", params={"limit": "lots", "q": "x"}).status_code == 400
    assert client.get("/api/search", params={"min_score": "nan", "q": "x"}).status_code == 400


def test_home_lists_the_library_a_page_at_a_time(client: TestClient, indexed: tuple[Path, Path]) -> None:
    from vsearch import Index

    home = client.get("/")
    assert home.status_code == 200 and client.get("/", params={"q": " "}).text == home.text  # an empty search
    assert re.search(r"4 videos · under a minute ·\s*<a href=\"/stats\">1 failed file</a>", home.text)
    listed = client.get("/api/videos").json()
    assert [v["page"] for v in listed["videos"]] == re.findall(r'<li class="video-card"><a href="([^"]+)"', home.text)
    assert listed == {
        "videos": [{**c.to_json(), "thumbnail": f"/thumbs/{c.window_id}.jpg", "page": f"/videos/{c.id}"}
                   for c in Index(indexed[0]).videos().videos], "before": None}
    pages, before = [], None
    while True:  # two at a time, by the cursor each page hands on
        page = client.get("/api/videos", params={"limit": 2, **({"before": before} if before else {})}).json()
        pages.append([v["id"] for v in page["videos"]])
        before = page["before"]
        if before is None:
            break
    assert pages == [[v["id"] for v in listed["videos"]][i : i + 2] for i in (0, 2)]
    older = client.get("/", params={"before": pages[0][1]})
    assert older.status_code == 200 and "Older videos" in older.text
    assert re.findall(r'<li class="video-card"><a href="/videos/(\d+)"', older.text) == [str(i) for i in pages[1]]
    for bad in ("soon", "0", "-3", "1e99"):
        assert client.get("/", params={"before": bad}).status_code == 400, bad


def test_video_page_strip_contract(client: TestClient, indexed: tuple[Path, Path]) -> None:
    from vsearch import Index

    vid = client.get("/api/search", params={"q": "clip_0"}).json()[0]["video_id"]
    moments = client.get(f"/api/videos/{vid}/moments").json()
    shown = Index(indexed[0]).moments(vid)
    assert {k: v for k, v in moments.items() if k != "video"} == {
        **shown.to_json(), "moments": [{**m.to_json(), "thumbnail": f"/thumbs/{m.window_id}.jpg"} for m in shown.moments],
        "transcript": [line.to_json() for line in Index(indexed[0]).transcript(vid)],
        "copies": moments["copies"]}
    # the video's copies as the library finds them, this video's side first
    assert [(c["kind"], [s["video_id"] for s in c["sides"]]) for c in moments["copies"]] == [
        (p.kind, [p.a.video_id, p.b.video_id] if p.a.video_id == vid else [p.b.video_id, p.a.video_id])
        for p in Index(indexed[0]).copies(vid)]
    page = client.get(f"/videos/{vid}").text
    strip = re.search(r"<div class=\"strip\" data-strip (.*?)</div>", page, re.S)
    assert strip is not None
    segments = re.findall(r'data-start="([^"]+)" data-end="([^"]+)"\s+data-label="([^"]+)" data-kind="label"',
                          strip.group(1))
    assert [(float(a), float(b), c) for a, b, c in segments] == [(m.start, m.end, m.label) for m in shown.moments]
    assert shown.moments and all(f"{m.score:.2f}" != "0.00" for m in shown.moments)
    assert " 0.00" not in page  # no label is listed as if it meant something
    assert client.get("/api/videos/99999/moments").status_code == 404


def test_new_results_show_without_a_restart(tmp_path: Path) -> None:
    home, library = tmp_path / "home", tmp_path / "library"
    make_video(library / "first.mp4", "growing", seed=1, seconds=2)
    index(home, [library])
    client = TestClient(create_app(home), base_url=BASE)
    assert client.get("/api/search", params={"q": "pelican"}).json() == []
    make_video(library / "pelican.mp4", "shrinking", seed=2, seconds=2)
    index(home, [library])
    assert [Path(h["path"]).name for h in client.get("/api/search", params={"q": "pelican"}).json()] == ["pelican.mp4"]


# -- script in file names, CSP --------------------------------------------------------------------


def test_every_text_is_escaped_and_inline_script_is_forbidden(client: TestClient) -> None:
    found = client.get("/", params={"q": "onerror"})
    assert "alert(1)" in found.text and HOSTILE not in found.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in found.text
    vid = client.get("/api/search", params={"q": "onerror"}).json()[0]["video_id"]
    for page in (client.get(f"/videos/{vid}"), client.get("/stats"), client.get(f"/similar?video={vid}"),
                 client.get("/", params={"q": HOSTILE}), client.get("/labels", params={"q": HOSTILE}),
                 client.get("/"), client.get("/", params={"before": 99999})):
        assert page.status_code == 200
        assert HOSTILE not in page.text and "<script>" not in page.text
        assert " style=" not in page.text  # the CSP forbids style attributes: the strip is laid out by app.js
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "&lt;img src=x onerror=alert(1)&gt;" in client.get("/stats").text  # the broken file's row
    assert "content-security-policy" in client.get("/media/99999").headers


# -- Host, Origin, token ---------------------------------------------------------------------------


@pytest.mark.parametrize("host, status", [
    ("127.0.0.1:8765", 200), ("localhost:8765", 200), ("[::1]:8765", 200),
    ("evil.example:8765", 421), ("127.0.0.1.nip.io:8765", 421), ("127.0.0.1:9999", 421), ("localhost", 421), ("", 421),
])
def test_host_header_must_name_this_server(client: TestClient, host: str, status: int) -> None:
    """DNS rebinding: a page at evil.example resolved to 127.0.0.1 sends its own name as Host."""
    assert client.get("/api/stats", headers={"host": host}).status_code == status
    assert client.get("/media/1", headers={"host": host}).status_code in ((200, 404) if status == 200 else (status,))


def test_anything_but_get_needs_this_origin(client: TestClient) -> None:
    assert client.post("/api/search", headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/search").status_code == 403  # no Origin at all
    assert client.delete("/media/1", headers={"origin": "http://evil.example:8765"}).status_code == 403
    assert client.post("/api/search", headers={"origin": BASE}).status_code == 405  # allowed in, nothing writes
    assert client.head("/api/stats").status_code == 200


def test_off_loopback_every_request_needs_the_token(indexed: tuple[Path, Path]) -> None:
    token = "t0k3n-" + "x" * 20
    with pytest.raises(ValueError):
        create_app(indexed[0], host="0.0.0.0", port=8765, token=None)
    client = TestClient(create_app(indexed[0], host="0.0.0.0", port=8765, token=token),
                        base_url="http://192.168.1.20:8765", follow_redirects=False)
    for url in ("/", "/api/stats", "/media/1", "/thumbs/1.jpg", "/static/app.js", "/nothing"):
        assert client.get(url).status_code == 401, url
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/api/stats", headers={"authorization": "Bearer wrong"}).status_code == 401
    client.cookies.set("vsearch_token", "wrong")
    assert client.get("/api/stats").status_code == 401
    client.cookies.clear()
    assert client.get("/api/stats", headers={"authorization": f"Bearer {token}"}).status_code == 200
    signed = client.get(f"/?q=x&token={token}")
    assert signed.status_code == 303 and signed.headers["location"] == "/?q=x"  # the token leaves the URL
    assert "HttpOnly" in signed.headers["set-cookie"] and "SameSite=Strict" in signed.headers["set-cookie"]
    assert client.get("/api/stats").status_code == 200  # the cookie from now on
    bound = TestClient(create_app(indexed[0], host="192.168.1.20", port=8765, token=token),
                       base_url="http://192.168.1.20:8765")
    assert bound.get("/api/stats", headers={"host": "evil.example:8765",
                                            "authorization": f"Bearer {token}"}).status_code == 421


# -- media by catalog id only ----------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "/media/../../../../etc/passwd", "/media/..%2f..%2f..%2fetc%2fpasswd", "/media//etc/passwd",
    "/media/%2Fetc%2Fpasswd", "/media/999999", "/media/-1", "/media/1.5", "/media/0x1",
    "/thumbs/..%2f..%2fvsearch.db.jpg", "/thumbs/999999.jpg", "/thumbs/1.png", "/api/videos/999999",
    "/static/..%2f..%2fapp.py", "/static/%2e%2e/app.py", "/clip/999999?start=0&end=1",
    "/api/similar?path=/etc/passwd", "/api/similar?path=../../etc/passwd", "/api/play/999999",
])
def test_no_path_is_ever_read_from_a_request(client: TestClient, url: str) -> None:
    answer = client.get(url)
    assert answer.status_code == 404, url
    assert "root:" not in answer.text and "SQLite format" not in answer.text


def test_range_requests(client: TestClient, indexed: tuple[Path, Path]) -> None:
    vid = client.get("/api/search", params={"q": "clip_2"}).json()[0]["video_id"]
    data = (indexed[1] / "clip_2.mp4").read_bytes()
    size = len(data)
    whole = client.get(f"/media/{vid}")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    for header, (a, b) in {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-50": (size - 50, size - 1),
                           f"bytes=10-{size * 10}": (10, size - 1), "BYTES=5-5": (5, 5),
                           "bytes=-999999999": (0, size - 1)}.items():
        part = client.get(f"/media/{vid}", headers={"range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {a}-{b}/{size}", header
        assert part.content == data[a : b + 1] and int(part.headers["content-length"]) == b - a + 1


def test_multiple_ranges_come_as_multipart_up_to_a_cap(client: TestClient, indexed: tuple[Path, Path]) -> None:
    vid = client.get("/api/search", params={"q": "clip_2"}).json()[0]["video_id"]
    data = (indexed[1] / "clip_2.mp4").read_bytes()
    two = client.get(f"/media/{vid}", headers={"range": "bytes=0-9, 20-29"})
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(two.headers["content-length"]) == len(two.content)
    assert data[0:10] in two.content and data[20:30] in two.content
    assert f"Content-Range: bytes 20-29/{len(data)}".encode() in two.content
    many = client.get(f"/media/{vid}", headers={"range": "bytes=" + ",".join(f"{i}-{i}" for i in range(9))})
    assert many.status_code == 416 and many.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("header, status", [
    ("bytes=999999999-", 416), ("bytes=999999999-999999999", 416), ("bytes=-0", 416),
    ("bytes=abc", 200), ("bytes=5-3", 200), ("bytes=--1", 200), ("bytes=1-2-3", 200), ("bytes=", 200),
    ("items=0-10", 200), ("bytes=0x10-20", 200), ("bytes=+1-2", 200), ("bytes", 200),
    ("bytes=١-٢".encode(), 200), ("bytes=0-1".encode("utf-16"), 200),
    ("bytes=" + "9" * 5000 + "-", 416), ("bytes=0-" + "9" * 5000, 206),
    ("bytes=" + ",".join(["0-0"] * 10000), 416),
])
def test_hostile_range_headers(client: TestClient, header: str | bytes, status: int) -> None:
    vid = client.get("/api/search", params={"q": "clip_2"}).json()[0]["video_id"]
    answer = client.get(f"/media/{vid}", headers={"range": header})
    assert answer.status_code == status, header
    if status == 200:
        assert int(answer.headers["content-length"]) == len(answer.content) > 0


# -- the file behind a row ------------------------------------------------------------------------


def test_a_link_swapped_after_indexing_is_not_followed(tmp_path: Path) -> None:
    """A library may hold links (`index` follows them); the file served must be the one indexed."""
    home, library, elsewhere = tmp_path / "home", tmp_path / "library", tmp_path / "elsewhere"
    real = make_video(elsewhere / "real.mp4", "growing", seed=3, seconds=2)
    secret = elsewhere / "secret.txt"
    secret.write_bytes(b"root:x:0:0 " * (real.stat().st_size // 11 + 1))
    library.mkdir()
    (library / "linked.mp4").symlink_to(real)
    index(home, [library])
    client = TestClient(create_app(home), base_url=BASE)
    hit = client.get("/api/search", params={"q": "linked"}).json()[0]
    assert client.get(hit["video"]).content == real.read_bytes()  # a link made before indexing is fine
    thumb = client.get(hit["thumbnail"]).content  # made at index time, from the indexed file

    (library / "linked.mp4").unlink()
    (library / "linked.mp4").symlink_to(secret)
    assert client.get(hit["video"]).status_code == 404
    assert client.get(hit["thumbnail"]).content == thumb  # the indexed file's, never decoded from the swap
    # the same size and mtime faked on another file: the content fingerprint still tells
    os.truncate(secret, real.stat().st_size)
    st = real.stat()
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert client.get(hit["video"], headers={"range": "bytes=0-100"}).status_code == 404

    (library / "linked.mp4").unlink()
    os.mkfifo(library / "linked.mp4")  # a reader of a FIFO would wait forever
    assert client.get(hit["video"]).status_code == 404
    (library / "linked.mp4").unlink()
    assert client.get(hit["video"]).status_code == 404


def test_thumbnails_are_made_once_on_first_view_without_the_model(client: TestClient, indexed: tuple[Path, Path]) -> None:
    home = indexed[0]
    video = client.get("/api/videos/" + str(client.get("/api/search?q=clip_1").json()[0]["video_id"])).json()
    window_id = int(video["windows"][1]["thumbnail"].split("/")[-1].split(".")[0])
    cached = thumb_path(home, window_id)
    cached.unlink(missing_ok=True)
    first = client.get(f"/thumbs/{window_id}.jpg")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content[:3] == b"\xff\xd8\xff" and cached.read_bytes() == first.content
    made = cached.stat().st_mtime_ns
    assert client.get(f"/thumbs/{window_id}.jpg").content == first.content and cached.stat().st_mtime_ns == made
    import av

    with av.open(str(cached)) as jpeg:
        frame = next(jpeg.decode(video=0))
    assert (frame.width, frame.height) == (96, 64)  # the source size: smaller than THUMB_WIDTH


def test_the_server_writes_nothing_but_its_caches(indexed: tuple[Path, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(indexed[0], home)
    shutil.rmtree(home / "thumbs", ignore_errors=True)

    def files() -> dict[str, tuple[int, int]]:
        # The catalog is compared by content: SQLite folds its journal into the file whenever the
        # last connection closes, which changes its bytes without changing what it holds.
        return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns) for p in home.rglob("*")
                if p.is_file() and not p.name.startswith("vsearch.db") and p.relative_to(home).parts[0] != "thumbs"}

    def catalog() -> list[str]:
        # The label names' sentence vectors are a cache the first search by words fills.
        with sqlite3.connect(home / "vsearch.db") as db:
            return [line for line in db.iterdump() if not line.startswith('INSERT INTO "label_vectors"')]

    before = files(), catalog()
    client = TestClient(create_app(home), base_url=BASE)
    hits = client.get("/api/search", params={"q": "clip"}).json()
    for h in hits:
        client.get(h["thumbnail"])
        client.get(h["video"], headers={"range": "bytes=0-10"})
        client.get(f"/api/similar?video={h['video_id']}")
        client.get(f"/videos/{h['video_id']}")
    for url in ("/labels", "/stats", "/?q=growing", "/", "/?before=99999", "/api/videos",
                f"/api/videos/{hits[0]['video_id']}/moments"):
        assert client.get(url).status_code == 200, url
    assert (files(), catalog()) == before
    assert list((home / "thumbs").rglob("*.jpg"))


# -- routes backed by vsearch.video.media ------------------------------------------------------


def test_download_clip_exports_the_moment(client: TestClient) -> None:
    import av

    hit = client.get("/api/search", params={"q": "clip_1"}).json()[0]
    answer = client.get(f"/clip/{hit['video_id']}", params={"start": 1.0, "end": 3.0})
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    import io

    with av.open(io.BytesIO(answer.content)) as clip:
        times = [float(f.time or 0) for f in clip.decode(video=0)]
    assert len(times) == 32 and times[-1] - times[0] == pytest.approx(31 / 16, abs=0.07)  # 2 s at 16 fps
    assert client.get(f"/clip/{hit['video_id']}", params={"start": 3, "end": 1}).status_code == 400


def test_play_answers_where_the_moment_plays(client: TestClient) -> None:
    hit = client.get("/api/search", params={"q": "clip_1"}).json()[0]
    where = client.get(f"/api/play/{hit['video_id']}", params={"start": hit["start"], "end": hit["end"]}).json()
    assert where == {"video": hit["video"], "type": "video/mp4", "offset": 0.0}  # H.264 MP4: the file itself


# -- the command -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_prints_its_url_and_stops_on_ctrl_c(indexed: tuple[Path, Path]) -> None:
    import httpx

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "vsearch"), "serve", "--home", str(indexed[0]),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = Lines(proc.stdout, "stdout").next(timeout=60) or ""
        assert f"http://127.0.0.1:{port}/" in line and "token" not in line
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/stats", timeout=2)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["videos"] == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) in (0, 130)  # uvicorn re-raises SIGINT after its clean shutdown
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()


def test_serve_off_loopback_prints_a_token_and_refuses_without_an_index(tmp_path: Path, indexed: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(cli, ["serve", "--home", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no index" in result.output
    result = CliRunner().invoke(cli, ["serve", "--home", str(indexed[0]), "--host", "0.0.0.0", "--token", "short"])
    assert result.exit_code == 2 and "at least 16" in result.output
