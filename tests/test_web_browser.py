"""`vsearch serve` in a real browser: Playwright driving Debian's Chromium (Playwright cannot
download its own browser here). Without Chromium the tests skip saying how to install it, and fail
in CI (tests/tools.py); CI installs it (`apt-get install -y chromium`)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from tests.test_web import index, make_video  # noqa: E402
from tests.tools import require  # noqa: E402
from vsearch.bench.synthetic import write_video  # noqa: E402
from vsearch.evidence import subtitles  # noqa: E402
from vsearch.web.app import create_app  # noqa: E402

# A folder for the pictures of the README and docs/ (VSEARCH_SCREENSHOTS=docs): serve.png, home.png, video.png
SCREENSHOTS = os.environ.get("VSEARCH_SCREENSHOTS")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core, for the tests only (see vendor/README.md)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


SCENES = [((255, 0, 0), 4), ((0, 0, 0), 2), ((0, 255, 0), 4), ((0, 0, 255), 4), ((255, 0, 0), 2)]  # (colour, s)


def scenes(path: Path) -> Path:
    """16 s of plain-coloured scenes, a pale square crossing each: the fake encoder names each
    window after its colour (red, dark, green, blue, red), so the strip has five moments."""
    frames = []
    for colour, seconds in SCENES:
        for i in range(16 * seconds):
            frame = np.zeros((64, 96, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
            x = 8 + i // 3  # slow: the fake encoder calls fast motion `moving` whatever the colour
            frame[22:42, x : x + 20] = 200
            frames.append(frame)
    return write_video(path, frames)


STREET_SUBTITLES = """1
00:00:01,000 --> 00:00:03,000
The lamp is lit

2
00:00:11,000 --> 00:00:13,000
Under a wide sky
"""


def dark_then_bright(path: Path) -> Path:
    """2 s of a dim still scene, then 4 s of a bright moving one: 'bright' starts at 2 s."""
    frames = np.zeros((96, 64, 96, 3), dtype=np.uint8) + 12
    for i in range(32, 96):
        frames[i] = 235
        frames[i, 20:40, i - 32 : i - 12] = (30, 60, 200)  # steady motion: every bright window alike
    return write_video(path, frames)


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    """Debian's Chromium, before anything else of this module is set up."""
    return require("chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    root = tmp_path_factory.mktemp("browser")
    library, home = root / "library", root / "home"
    dark_then_bright(library / "sunrise.mp4")
    for i, motion in enumerate(["moving left", "growing", "moving up"]):
        make_video(library / f"walk_{i}.mp4", motion, seed=20 + i)
    make_video(library / "<img src=x onerror=alert(1)>.mp4", "shrinking", seed=30)
    scenes(library / "street.mp4")
    (library / "street.srt").write_text(STREET_SUBTITLES)  # a sidecar: the page's transcript
    (library / "broken.mp4").write_bytes(b"not a video")
    index(home, [library], parts=[subtitles.KIND.part(None)])  # type: ignore[arg-type]  # reading needs no setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(home, port=port), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.errors = []  # console errors and CSP violations: the page must have none
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("response", lambda r: page.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield page
    context.close()


def all_images_loaded(page, selector: str) -> None:
    page.wait_for_function(
        f"""() => {{ const imgs = [...document.querySelectorAll({selector!r})];
                   return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }}""",
        timeout=20_000)


def test_search_page_plays_the_moment_from_its_start(server: str, page) -> None:
    page.goto(f"{server}/?q=bright")
    hits = page.locator(".hit")
    assert hits.count() >= 1
    all_images_loaded(page, ".hit img")
    hit = page.locator('.hit[data-path$="sunrise.mp4"]').first
    start = float(hit.get_attribute("data-start"))
    assert start == pytest.approx(2.0)  # the bright part, not the file's beginning
    page.evaluate("""() => { window.seekedAt = [];
        document.getElementById('player').addEventListener('seeked', e => window.seekedAt.push(e.target.currentTime)); }""")
    hit.locator("img").click()
    page.wait_for_function("() => window.seekedAt.length > 0", timeout=20_000)
    reached = page.evaluate("() => window.seekedAt[0]")
    assert abs(reached - start) < 0.5
    assert page.locator("#player").is_visible()
    assert page.evaluate("() => document.getElementById('player').currentSrc").endswith(
        "/media/" + hit.get_attribute("data-video-id"))
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/serve.png")
    assert not page.errors


def test_hostile_file_name_shows_as_text(server: str, page) -> None:
    page.goto(f"{server}/?q=onerror")
    assert page.locator(".hit .file").first.inner_text() == "<img src=x onerror=alert(1)>.mp4"
    assert page.locator("img[src=x]").count() == 0
    assert not page.errors


def test_similar_labels_and_video_pages_render(server: str, page) -> None:
    page.goto(f"{server}/?q=bright")
    page.locator(".hit").first.get_by_text("more like this moment").click()
    page.wait_for_url("**/similar?*")
    assert page.locator("h1").inner_text().startswith("Like ")
    assert page.locator(".hit").count() >= 1
    all_images_loaded(page, ".hit img")

    page.goto(f"{server}/labels")
    assert page.locator(".labels li").count() >= 2
    all_images_loaded(page, ".labels img")
    page.locator(".labels a").first.click()
    page.wait_for_url("**/?q=*")
    assert page.locator(".hit").count() >= 1

    page.goto(f"{server}/?q=sunrise")
    page.locator(".hit .file").first.click()
    page.wait_for_url("**/videos/*")
    items = page.locator(".moment-item")
    assert items.count() >= 1
    all_images_loaded(page, ".moment-item img")
    watch_seeks(page)
    last = items.nth(items.count() - 1)
    last.locator("img").click()
    assert abs(seeked_to(page, 1) - float(last.get_attribute("data-start"))) < 0.5
    assert not page.errors


def watch_seeks(page) -> None:
    """Record where the player lands after every seek, in window.seekedAt."""
    page.evaluate("""() => { window.seekedAt = [];
        document.getElementById('player').addEventListener('seeked', e => window.seekedAt.push(e.target.currentTime)); }""")


def seeked_to(page, count: int) -> float:
    page.wait_for_function(f"() => window.seekedAt.length >= {count}", timeout=20_000)
    return page.evaluate(f"() => window.seekedAt[{count - 1}]")


def no_sideways_scroll(page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


# -- the library at a glance ----------------------------------------------------------------------


def test_home_shows_the_library_at_a_glance(server: str, page) -> None:
    page.goto(server + "/")
    assert page.evaluate("() => document.activeElement.name") == "q"  # type straight away
    health = page.locator(".health")
    assert "6 videos" in health.inner_text() and "1 failed file" in health.inner_text()
    cards = page.locator(".video-card")
    assert cards.count() == 6
    all_images_loaded(page, ".video-card img")
    alts = [cards.nth(i).locator("img").get_attribute("alt") for i in range(cards.count())]
    assert all(re.fullmatch(r".+ at \d+:\d\d\.\d", a) for a in alts), alts  # what it shows, and when
    listed = httpx.get(f"{server}/api/videos", timeout=10).json()["videos"]
    assert [v["indexed_at"] for v in listed] == sorted((v["indexed_at"] for v in listed), reverse=True)
    assert [cards.nth(i).locator(".name").inner_text() for i in range(6)] == [Path(v["path"]).name for v in listed]
    assert cards.get_by_text("<img src=x onerror=alert(1)>.mp4").count() == 1 and page.locator("img[src=x]").count() == 0
    labels = page.locator(".labels li")
    assert labels.count() >= 2
    all_images_loaded(page, ".labels img")
    no_sideways_scroll(page, 390)
    if SCREENSHOTS:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=f"{SCREENSHOTS}/home.png")

    second = cards.nth(1).locator("a").get_attribute("href")
    page.goto(f"{server}/?before={second.rsplit('/', 1)[1]}")  # the page after the two newest
    older = [page.locator(".video-card .name").nth(i).inner_text() for i in range(page.locator(".video-card").count())]
    assert older == [Path(v["path"]).name for v in listed[2:]]

    page.goto(server + "/")
    page.get_by_role("link", name="1 failed file").click()
    page.wait_for_url("**/stats")
    assert "broken.mp4" in page.locator(".failures").inner_text()
    page.goto(server + "/")
    cards.first.locator("a").click()
    page.wait_for_url("**/videos/*")
    assert page.locator("[data-strip]").count() == 1
    assert not page.errors


# -- a video's moments strip ----------------------------------------------------------------------


def segments_of(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-strip] [data-start]')].map(s => {
        const box = s.getBoundingClientRect();
        return {start: +s.dataset.start, end: +s.dataset.end, label: s.dataset.label, title: s.title,
                name: s.getAttribute('aria-label'), left: box.left, right: box.right}; })""")


def open_video(page, server: str, name: str) -> None:
    page.goto(f"{server}/?q={name}")
    page.locator(".hit .file").first.click()
    page.wait_for_url("**/videos/*")
    page.wait_for_function("() => document.querySelector('[data-strip]').classList.contains('ready')", timeout=10_000)


def test_the_strip_shows_each_moment_and_a_click_seeks_to_its_start(server: str, page) -> None:
    open_video(page, server, "street")
    segments = segments_of(page)
    # adjacent windows of one best label merge: five moments over 16 s, in time order, apart
    assert [(s["start"], s["end"], s["label"]) for s in segments] == [
        (0, 4, "red"), (4, 6, "dark"), (6, 10, "green"), (10, 14, "blue"), (14, 16, "red")]
    strip = page.locator("[data-strip]").bounding_box()
    assert all(strip["x"] - 1 <= s["left"] < s["right"] <= strip["x"] + strip["width"] + 1 for s in segments)
    assert all(a["right"] <= b["left"] + 1 for a, b in zip(segments, segments[1:]))
    assert abs(segments[2]["right"] - segments[2]["left"] - strip["width"] / 4) < 2  # 4 s of 16 s
    for s in segments:  # hovering names the label and the time; a screen reader says the same
        assert s["label"] in s["title"] and s["label"] in s["name"] and "0:" in s["title"] and "0:" in s["name"]
    assert page.locator("[data-strip]").get_attribute("aria-label").startswith("Moments of street.mp4")
    assert page.locator("#player").get_attribute("aria-label") == "street.mp4"
    assert "0.00" not in page.locator(".video-labels").inner_text()  # no label is listed as if it meant something

    watch_seeks(page)
    for n, i in enumerate((3, 1), start=1):
        page.locator("[data-strip] [data-start]").nth(i).click()
        assert abs(seeked_to(page, n) - segments[i]["start"]) < 0.5
    page.wait_for_function("""() => { const c = document.querySelector('[data-strip] [aria-current=true]');
        return c && c.dataset.start === '4.0' && !document.getElementById('player').paused; }""", timeout=20_000)
    assert page.locator(".moment-item.current").get_attribute("data-start") == "4.0"
    no_sideways_scroll(page, 390)
    if SCREENSHOTS:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.evaluate("() => { const p = document.getElementById('player'); p.pause(); p.currentTime = 7; }")
        page.wait_for_function("() => document.querySelector('[data-strip] .current')", timeout=10_000)
        page.screenshot(path=f"{SCREENSHOTS}/video.png")
    assert not page.errors


def test_the_transcript_follows_the_player_and_a_line_plays_its_words(server: str, page) -> None:
    open_video(page, server, "street")
    lines = page.locator(".transcript li")
    assert [line.locator(".said").inner_text() for line in lines.all()] == ["The lamp is lit", "Under a wide sky"]
    assert [line.get_attribute("data-start") for line in lines.all()] == ["1.0", "11.0"]
    assert lines.nth(0).locator(".source").inner_text() == "(subtitle)"
    assert page.locator(".transcript [aria-current]").count() == 0  # nothing is said at 0:00
    watch_seeks(page)
    lines.nth(1).locator("[data-seek]").click()
    assert abs(seeked_to(page, 1) - 11.0) < 0.5
    page.wait_for_function("""() => { const now = document.querySelectorAll('.transcript [aria-current=true]');
        return now.length === 1 && now[0].dataset.start === '11.0'; }""", timeout=20_000)
    assert page.locator(".transcript .current").count() == 1
    # the same words, searched, find the moment they are said, and say why
    page.goto(f"{server}/?q=wide sky")
    hit = page.locator(".hit").first
    assert hit.get_attribute("data-path").endswith("street.mp4")
    # a cue's words are spread over its time (11-13 s): "wide sky", the last two of four, from 12 s
    assert (float(hit.get_attribute("data-start")), float(hit.get_attribute("data-end"))) == (12.0, 13.0)
    assert "Under a wide sky" in hit.locator(".label").inner_text()
    assert not page.errors


# -- keys -----------------------------------------------------------------------------------------


def focused(page) -> str | None:
    """The focused hit's or segment's start, 'q' for the search box, else None."""
    return page.evaluate("""() => { const a = document.activeElement;
        return a.name === 'q' ? 'q' : (a.dataset.start !== undefined ? a.dataset.start + ' ' + a.className : null); }""")


def test_keys_search_move_play_and_stop(server: str, page) -> None:
    page.goto(f"{server}/?q=walk")
    hits = page.locator(".hit")
    assert hits.count() >= 3
    assert focused(page) is None  # a results page leaves the keys to the results
    page.keyboard.press("/")
    assert focused(page) == "q" and page.locator("header input[name=q]").input_value() == "walk"  # no "/" typed
    page.evaluate("() => document.activeElement.blur()")
    order = []
    for key in ("j", "j", "k", "ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp", "j"):
        page.keyboard.press(key)
        order.append(page.evaluate("() => [...document.querySelectorAll('.hit')].indexOf(document.activeElement)"))
    assert order == [0, 1, 0, 1, 2, 1, 0, 1]
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus shows
    target = hits.nth(1)
    watch_seeks(page)
    page.keyboard.press("Enter")
    assert abs(seeked_to(page, 1) - float(target.get_attribute("data-start"))) < 0.5
    page.wait_for_function("() => !document.getElementById('player').paused", timeout=20_000)
    assert "playing" in target.get_attribute("class")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.getElementById('player').paused", timeout=5_000)
    page.keyboard.press("/")  # from a hit too
    assert focused(page) == "q"

    # a video's page: the same keys walk its strip, Enter plays the focused moment
    open_video(page, server, "street")
    watch_seeks(page)
    page.keyboard.press("j")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert focused(page).startswith("6.0 segment")
    page.keyboard.press("Enter")
    assert abs(seeked_to(page, 1) - 6.0) < 0.5
    page.wait_for_function("() => !document.getElementById('player').paused", timeout=20_000)
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.getElementById('player').paused", timeout=5_000)
    assert page.evaluate("() => [...document.querySelectorAll('[data-strip] [data-start]')].filter(s => s.tabIndex === 0)"
                         ".map(s => s.dataset.start)") == ["6.0"]  # Tab comes back to where you were
    assert not page.errors


# -- accessibility ------------------------------------------------------------------------------


def audit(page) -> list[str]:
    """axe-core's serious and critical violations of the page, one line each."""
    return page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)""")


@pytest.fixture
def audited(page) -> Iterator:
    """A page with axe-core loaded before the page's own script. An init script is not inline
    script in the page, so the Content-Security-Policy stays in force (no bypass_csp): axe sees
    the page exactly as a user gets it, and the app never serves axe."""
    page.add_init_script(path=str(AXE))
    yield page


def test_axe_is_the_pinned_test_only_copy_and_sees_a_fault(server: str, audited) -> None:
    assert AXE.read_text()[:40].startswith("/*! axe v4.14.1")
    audited.goto(server + "/")
    audited.evaluate("() => document.querySelector('main').append(document.createElement('img'))")
    assert [line.split(":")[0] for line in audit(audited)] == ["critical image-alt"]  # the audit is not blind
    assert httpx.get(f"{server}/static/axe.min.js", timeout=10).status_code == 404
    web = Path(__file__).parent.parent / "web"
    assert not [p for p in web.rglob("*") if p.is_file() and "axe" in p.read_text(errors="replace").lower()]


@pytest.mark.parametrize("url", ["/", "/?before=999999", "/?q=bright", "video", "similar", "/labels", "/stats",
                                 "/videos/999999"])
def test_every_page_passes_axe_and_fits_a_phone(server: str, audited, url: str) -> None:
    page = audited
    if url in ("video", "similar"):
        page.goto(f"{server}/?q=street")
        vid = page.locator(".hit").first.get_attribute("data-video-id")
        url = f"/videos/{vid}" if url == "video" else f"/similar?video={vid}&at=2"
    answer = page.goto(server + url)
    assert answer.status == (404 if url == "/videos/999999" else 200)
    page.wait_for_load_state("load")
    assert page.evaluate("() => typeof axe") == "object"
    assert audit(page) == []
    if url.startswith("/?q="):
        page.locator(".hit").first.click()  # the player as it plays, with its moment bar
        page.wait_for_function("() => !document.getElementById('player-box').hidden", timeout=10_000)
        assert audit(page) == []
    no_sideways_scroll(page, 390)  # a phone held upright
    if url == "/videos/999999":  # the error page's own 404, as the response and as Chromium's console line
        page.errors = [e for e in page.errors if e != f"404 {server}{url}" and "status of 404" not in e]
    assert not page.errors
