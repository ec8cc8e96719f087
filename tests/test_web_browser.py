"""`vsearch serve` in a real browser: Playwright driving Debian's Chromium (Playwright cannot
download its own browser here). Skips with the reason when Chromium or Playwright is missing;
CI installs Chromium (`apt-get install -y chromium`)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

from tests.test_web import index, make_video  # noqa: E402
from vsearch.bench.synthetic import write_video  # noqa: E402
from vsearch.web.app import create_app  # noqa: E402

SCREENSHOT = os.environ.get("VSEARCH_SCREENSHOT")  # e.g. docs/serve.png, for the README
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def dark_then_bright(path: Path) -> Path:
    """2 s of a dim still scene, then 4 s of a bright moving one: 'bright' starts at 2 s."""
    frames = np.zeros((96, 64, 96, 3), dtype=np.uint8) + 12
    for i in range(32, 96):
        frames[i] = 235
        frames[i, 20:40, i - 32 : i - 12] = (30, 60, 200)  # steady motion: every bright window alike
    return write_video(path, frames)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    root = tmp_path_factory.mktemp("browser")
    library, home = root / "library", root / "home"
    dark_then_bright(library / "sunrise.mp4")
    for i, motion in enumerate(["moving left", "growing", "moving up"]):
        make_video(library / f"walk_{i}.mp4", motion, seed=20 + i)
    make_video(library / "<img src=x onerror=alert(1)>.mp4", "shrinking", seed=30)
    index(home, [library])
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
def browser() -> Iterator:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
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
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT)
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
    assert page.locator(".window").count() == 3
    all_images_loaded(page, ".window img")
    page.evaluate("""() => { window.seekedAt = [];
        document.getElementById('player').addEventListener('seeked', e => window.seekedAt.push(e.target.currentTime)); }""")
    page.locator(".window").nth(2).locator("img").click()
    page.wait_for_function("() => window.seekedAt.length > 0", timeout=20_000)
    assert abs(page.evaluate("() => window.seekedAt[0]") - 4.0) < 0.5
    assert not page.errors
