"""The web page: a front end like the CLI. Handlers parse the request, make the library call the
CLI makes (vsearch.Index), and present the answer; media is served by catalog id, never by a path.

Every request reads the catalog through a connection of its own thread (Index keeps one per
thread; SQLite connections are not shared between threads), in autocommit, so results that a
running `vsearch index` commits show up on the next request without a restart. Errors become an
HTTP status by their class (status_of), never by their text.
"""

from __future__ import annotations

import math
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vsearch.core.errors import (
    BadArgument,
    BadInput,
    IndexBusy,
    IndexMissing,
    MediaBusy,
    MediaError,
    NotIndexed,
    ThumbError,
    VsearchError,
)
from vsearch.library import Index
from vsearch.search import browse as q
from vsearch.search.catalog import Catalog, VideoRow
from vsearch.search.copies import CopyPair
from vsearch.search.hits import SEARCH_MIN_SCORE, Hit
from vsearch.search.timecode import seconds_label
from vsearch.video.thumbs import ensure_thumb, thumb_path
from vsearch.web.files import FileRefused, check_file, verified_file
from vsearch.web.guard import Guard
from vsearch.web.ranges import mime_type, ranged

HERE = Path(__file__).parent
HOVER_FRAMES = 6  # thumbnails shown across a moment on hover
MAX_LIMIT = 500
HOME_VIDEOS = 24  # videos per page of the library: a page stays light however many the index holds
HOME_LABELS = 12  # the labels the home page shows; /labels lists them all
HUES = 8  # colours of the strip's segments (style.css .hue-0 ... .hue-7)
LAZY_THUMBS = 2  # thumbnails decoded at once on first view: a page of 20 must not start 20 decoders

# The status of each kind of error, most specific first. MediaError covers a thumbnail that
# cannot be made and a moment that cannot be cut: the thing asked for does not exist (404).
STATUSES: tuple[tuple[type[VsearchError], int], ...] = (
    (NotIndexed, 404), (BadInput, 400), (IndexMissing, 503), (IndexBusy, 503), (MediaBusy, 503),
    (MediaError, 404), (VsearchError, 500),
)


WITHHELD = (FileRefused, ThumbError)


def status_of(exc: VsearchError) -> int:
    return next(status for kind, status in STATUSES if isinstance(exc, kind))


def hue(label: str) -> str:
    """A label's colour class on a video's strip: the same label has the same colour on every page."""
    return f"hue-{zlib.crc32(label.encode()) % HUES}"


def hours(value: float) -> str:
    """How long a library plays, as a person says it: "40 minutes", "2.5 hours"."""
    if value >= 1:
        return f"{value:.1f} hours"
    minutes = round(value * 60)
    return "under a minute" if minutes < 1 else f"{minutes} minute{'s' if minutes != 1 else ''}"


class Site:
    """What the handlers share: the index (which keeps the vector indexes and query models in memory
    for every thread), the templates."""

    def __init__(self, index: Index):
        self.index = index
        self.decoding = threading.BoundedSemaphore(LAZY_THUMBS)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.templates.filters["time"] = seconds_label
        self.templates.filters["name"] = lambda path: Path(path).name
        self.templates.filters["hue"] = hue
        self.templates.filters["hours"] = hours

    @property
    def home(self) -> Path:
        return self.index.home.root

    def catalog(self) -> Catalog:
        return self.index.catalog()  # never creates an index

    def page(self, name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(name).render(**context))


# -- parsing ---------------------------------------------------------------------------------


def number(request: Request, name: str, default: float | None = None, low: float = 0.0,
           high: float = math.inf) -> float | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadArgument(f"{name} must be a number") from None
    if not low <= value <= high:  # also refuses nan
        raise BadArgument(f"{name} must be between {low:g} and {high:g}")
    return value


def filters(request: Request, min_score: float) -> dict[str, Any]:
    """The filter arguments shared by search and similar, as Index takes them."""
    return {
        "limit": int(number(request, "limit", 20, 1, MAX_LIMIT) or 20),
        "under": request.query_params.get("under") or None,
        "min_score": number(request, "min_score", min_score) or 0.0,
        "min_duration": number(request, "min_duration"),
        "max_duration": number(request, "max_duration"),
    }


def video_row(catalog: Catalog, video_id: int) -> VideoRow:
    row = catalog.video_by_id(video_id)
    if row is None:
        raise NotIndexed(f"no video {video_id} in the index")
    return row


# -- presenting ------------------------------------------------------------------------------


def thumb_url(window_id: int) -> str:
    return f"/thumbs/{window_id}.jpg"


def windows_inside(catalog: Catalog, video_id: int, start: float, end: float) -> list[int]:
    """The windows of a video that a span covers (its first window where none does): its pictures."""
    spans = catalog.window_spans(video_id)
    return [cid for cid, s, e in spans if e > start and s < end] or [cid for cid, _, _ in spans[:1]]


def hit_json(catalog: Catalog, hit: Hit) -> dict:
    """The CLI's --json object of a hit, plus the URLs the page needs for it."""
    inside = windows_inside(catalog, hit.video_id, hit.start, hit.end)
    step = max(1, math.ceil(len(inside) / HOVER_FRAMES))
    return {
        **hit.to_json(),
        "reasons": hit.reasons,
        "video_id": hit.video_id,
        "video": f"/media/{hit.video_id}",
        "thumbnail": thumb_url(inside[0]) if inside else None,
        "frames": [thumb_url(c) for c in inside[::step]],
        "page": f"/videos/{hit.video_id}",
    }


def card_json(card: q.VideoCard) -> dict:
    """A video of the library's listing, plus the URLs the page needs for it."""
    thumbnail = thumb_url(card.window_id) if card.window_id is not None else None
    return {**card.to_json(), "thumbnail": thumbnail, "page": f"/videos/{card.id}"}


def page_json(page: q.VideoPage) -> dict:
    return {"videos": [card_json(c) for c in page.videos], "before": page.before}


def label_json(row: dict) -> dict:
    return {**row, "thumbnail": thumb_url(row["window_id"]) if row["window_id"] is not None else None}


def moments_json(site: Site, shown: q.VideoMoments) -> dict:
    """A video's moments (Index.moments), plus its video URL, a thumbnail per moment, what is said in
    it line by line (Index.transcript) and its copies (Index.duplicates, this video's pairs)."""
    answer = shown.to_json()
    answer["moments"] = [{**m, "thumbnail": thumb_url(m["window_id"])} for m in answer["moments"]]
    transcript = [line.to_json() for line in site.index.transcript(shown.id)]
    copies = [copy_json(site.catalog(), p, shown.id) for p in site.index.copies(shown.id)]
    return {**answer, "video": f"/media/{shown.id}", "transcript": transcript, "copies": copies}


def copy_json(catalog: Catalog, pair: CopyPair, here: int | None = None) -> dict:
    """A pair of videos that share content, with what the page needs to show it: each side's page,
    thumbnail at its span, size, and where its span lies on its timeline (percent); `here` first."""
    sides = [pair.a, pair.b] if here is None or pair.a.video_id == here else [pair.b, pair.a]
    shown = []
    for s in sides:
        row = catalog.video_by_id(s.video_id)
        duration = (row.duration if row else None) or s.end or 1.0
        inside = windows_inside(catalog, s.video_id, s.start, s.end)
        shown.append({**s.to_json(), "video_id": s.video_id, "page": f"/videos/{s.video_id}",
                      "size": row.size if row else 0, "duration": duration,
                      "thumbnail": thumb_url(inside[0]) if inside else None,
                      "left": round(100 * s.start / duration, 2), "width": round(100 * (s.end - s.start) / duration, 2)})
    return {"kind": pair.kind, "score": round(pair.score, 4), "sides": shown}


def show_json(site: Site, row: VideoRow) -> dict:
    """`vsearch show --json` of one video, plus its video URL and a thumbnail per window."""
    shown = site.index.show(row.path).to_json()
    spans = site.catalog().window_spans(row.id)
    shown["windows"] = [{**c, "thumbnail": thumb_url(cid)} for c, (cid, _, _) in zip(shown["windows"], spans)]
    return {**shown, "id": row.id, "video": f"/media/{row.id}"}


# -- the calls behind pages and API ----------------------------------------------------------


def do_search(site: Site, request: Request) -> tuple[str, list[dict], list[str]]:
    text = request.query_params.get("q", "")
    args = filters(request, SEARCH_MIN_SCORE)
    if not text.strip():
        return text, [], []
    catalog = site.catalog()
    # the page folds copies: one moment, not the same one five times (each copy is named with it)
    result = site.index.search(text, collapse_copies=True, **args)
    return text, [hit_json(catalog, h) for h in result.hits], result.notes


def do_similar(site: Site, request: Request) -> tuple[VideoRow, float | None, list[dict]]:
    catalog = site.catalog()
    params = request.query_params
    if "video" in params:
        try:
            row = video_row(catalog, int(params["video"]))
        except ValueError:
            raise BadArgument("video must be a catalog id") from None
    elif "path" in params:
        # The CLI's `similar FILE` for an indexed file: the path is only a key into the
        # catalog (exact match), never opened or resolved on disk.
        found = catalog.video(params["path"])
        if found is None:
            raise NotIndexed("not an indexed file")
        row = found
    else:
        raise BadArgument("give video=ID (or path=INDEXED_PATH)")
    if row.status != "ok":
        raise NotIndexed(f"{row.path} is not indexed")
    at = number(request, "at")
    hits = site.index.similar(row.path, at=at, collapse_copies=True, **filters(request, 0.0))
    return row, at, [hit_json(catalog, h) for h in hits]


def do_videos(site: Site, request: Request) -> dict:
    before = number(request, "before", None, 1, 2**63 - 1)
    limit = int(number(request, "limit", HOME_VIDEOS, 1, MAX_LIMIT) or HOME_VIDEOS)
    return page_json(site.index.videos(before=None if before is None else int(before), limit=limit))


def do_labels(site: Site, request: Request) -> tuple[str, list[dict]]:
    text = request.query_params.get("q", "")
    limit = int(number(request, "limit", 50, 1, MAX_LIMIT) or 50)
    return text, site.index.labels(text or None, limit)


# -- routes ----------------------------------------------------------------------------------


def handler(site: Site, fn: Callable[[Site, Request], Response]) -> Callable[[Request], Response]:
    """Turn the library's errors into a status (by their class) and one line."""

    def endpoint(request: Request) -> Response:
        api = request.url.path.startswith("/api/")
        try:
            return fn(site, request)
        except VsearchError as exc:
            status = status_of(exc)
            # Why a file cannot be served (it changed, it is gone) names paths: the page only says so.
            answer = _error(site, api, status, "not found" if isinstance(exc, WITHHELD) else str(exc))
            if isinstance(exc, MediaBusy):
                answer.headers["Retry-After"] = "2"
            return answer

    return endpoint


def _error(site: Site, api: bool, status: int, message: str) -> Response:
    if api:
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(site.templates.get_template("error.html").render(status=status, message=message),
                        status_code=status)


def search_page(site: Site, request: Request) -> Response:
    """`/?q=...` searches; `/` alone is the library at a glance, `/?before=ID` its older videos."""
    if not request.query_params.get("q", "").strip():
        return home_page(site, request)
    text, hits, notes = do_search(site, request)
    return site.page("search.html", q=text, hits=hits, notes=notes, params=request.query_params)


def home_page(site: Site, request: Request) -> Response:
    if "before" in request.query_params:
        return site.page("older.html", page=do_videos(site, request))
    seen = site.index.overview(limit=HOME_VIDEOS, labels=HOME_LABELS)
    return site.page("home.html", health=seen.health, page=page_json(seen.videos),
                     labels=[label_json(r) for r in seen.labels], focus_search=True)


def videos_api(site: Site, request: Request) -> Response:
    return JSONResponse(do_videos(site, request))


def search_api(site: Site, request: Request) -> Response:
    return JSONResponse(do_search(site, request)[1])


def similar_page(site: Site, request: Request) -> Response:
    row, at, hits = do_similar(site, request)
    return site.page("similar.html", source=row, at=at, hits=hits)


def similar_api(site: Site, request: Request) -> Response:
    return JSONResponse(do_similar(site, request)[2])


def labels_page(site: Site, request: Request) -> Response:
    text, rows = do_labels(site, request)
    catalog = site.catalog()
    for r in rows:
        window = catalog.best_window(r["label"])
        r["thumbnail"] = thumb_url(window) if window else None
    return site.page("labels.html", q=text, rows=rows)


def labels_api(site: Site, request: Request) -> Response:
    return JSONResponse(do_labels(site, request)[1])


def video_page(site: Site, request: Request) -> Response:
    return site.page("video.html", v=moments_json(site, site.index.moments(request.path_params["video_id"])),
                     floor=q.MOMENT_FLOOR)


def moments_api(site: Site, request: Request) -> Response:
    return JSONResponse(moments_json(site, site.index.moments(request.path_params["video_id"])))


def video_api(site: Site, request: Request) -> Response:
    return JSONResponse(show_json(site, video_row(site.catalog(), request.path_params["video_id"])))


def do_duplicates(site: Site, request: Request) -> dict:
    found = site.index.duplicates()
    catalog = site.catalog()
    return {"notes": found.notes,
            "shown": [{"original": g.original.path, "original_id": g.original.video_id, "size": g.size,
                       "savings": g.savings, "copies": [copy_json(catalog, p, g.original.video_id) for p, _ in g.copies]}
                      for g in found.groups],
            "parts": [copy_json(catalog, p) for p in found.pairs if p.kind == "part"]}


def duplicates_page(site: Site, request: Request) -> Response:
    return site.page("duplicates.html", d=do_duplicates(site, request))


def duplicates_api(site: Site, request: Request) -> Response:
    found = site.index.duplicates()
    return JSONResponse(found.to_json())


def stats_page(site: Site, request: Request) -> Response:
    return site.page("stats.html", s=site.index.stats())


def stats_api(site: Site, request: Request) -> Response:
    return JSONResponse(site.index.stats())


def thumb(site: Site, request: Request) -> Response:
    path = thumb_path(site.home, request.path_params["window_id"])
    if not path.is_file():  # an index older than thumbnails: decode one frame, a few at a time
        with site.decoding:
            path = ensure_thumb(site.catalog(), request.path_params["window_id"])
    # a thumbnail never changes for a window id (ids are never reused)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


def video_bytes(site: Site, request: Request) -> Response:
    row = video_row(site.catalog(), request.path_params["video_id"])
    fd = verified_file(row)
    try:
        return ranged(fd, row.size, mime_type(row.path), request.headers.get("range"))
    except BaseException:
        os.close(fd)
        raise


def moment(site: Site, request: Request) -> tuple[VideoRow, float, float]:
    """The video and the [start, end) seconds a media route asks for, its file verified."""
    row = video_row(site.catalog(), request.path_params["video_id"])
    start = number(request, "start", 0.0, 0.0, row.duration or math.inf) or 0.0
    end = number(request, "end", row.duration or start, start, row.duration or math.inf) or start
    check_file(row)  # refuse a swapped file before FFmpeg reads it
    return row, start, end


def play(site: Site, request: Request) -> Response:
    """Where the page plays a moment from: the file itself when a browser can play it, else a
    cached transcode of the moment (with the source time it starts at)."""
    from vsearch.video.media import playable

    row, start, end = moment(site, request)
    path, mime, offset = playable(site.index.home, row.path, start, end)
    url = f"/media/{row.id}" if Path(path) == Path(row.path) else f"/moments/{row.id}?start={start:g}&end={end:g}"
    return JSONResponse({"video": url, "type": mime, "offset": offset})


def moment_bytes(site: Site, request: Request) -> Response:
    """A transcoded moment (made by /api/play), from the transcode cache the server owns."""
    from vsearch.video.media import playable

    row, start, end = moment(site, request)
    path, mime, _ = playable(site.index.home, row.path, start, end)
    fd = os.open(path, os.O_RDONLY)
    try:
        return ranged(fd, os.fstat(fd).st_size, mime, request.headers.get("range"))
    except BaseException:
        os.close(fd)
        raise


def clip_download(site: Site, request: Request) -> Response:
    """The moment as its own file (frame-accurate cut, audio kept), from the server's clip cache."""
    from vsearch.video.media import cached_clip, clip_name

    row, start, end = moment(site, request)
    if end <= start:
        raise BadArgument("end must be after start")
    out = cached_clip(site.index.home, row.path, row.content_hash, start, end)
    return FileResponse(out, media_type="video/mp4", filename=clip_name(row.path, start, end))


def create_app(index: Index | str | Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> Any:
    """The ASGI app for an index, guarded for the address it is served on."""
    site = Site(index if isinstance(index, Index) else Index(index))
    routes = [
        Route("/", handler(site, search_page)),
        Route("/similar", handler(site, similar_page)),
        Route("/labels", handler(site, labels_page)),
        Route("/videos/{video_id:int}", handler(site, video_page)),
        Route("/stats", handler(site, stats_page)),
        Route("/duplicates", handler(site, duplicates_page)),
        Route("/api/duplicates", handler(site, duplicates_api)),
        Route("/api/search", handler(site, search_api)),
        Route("/api/similar", handler(site, similar_api)),
        Route("/api/labels", handler(site, labels_api)),
        Route("/api/stats", handler(site, stats_api)),
        Route("/api/videos", handler(site, videos_api)),
        Route("/api/videos/{video_id:int}", handler(site, video_api)),
        Route("/api/videos/{video_id:int}/moments", handler(site, moments_api)),
        Route("/api/play/{video_id:int}", handler(site, play)),
        Route("/media/{video_id:int}", handler(site, video_bytes)),
        Route("/moments/{video_id:int}", handler(site, moment_bytes)),
        Route("/clip/{video_id:int}", handler(site, clip_download)),
        Route("/thumbs/{window_id:int}.jpg", handler(site, thumb)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, host, port, token)
