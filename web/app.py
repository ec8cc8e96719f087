"""The web page: a front end like the CLI. Handlers parse the request, make the library call the
CLI makes, and present the answer; media is served by catalog id, never by a path.

Every request reads the catalog through a connection of its own thread (SQLite connections are
not shared between threads), in autocommit, so results that a running `vsearch index` commits
show up on the next request without a restart.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vsearch.search import query as q
from vsearch.search.catalog import Catalog, CatalogError, VideoRow
from vsearch.search.timecode import seconds_label
from vsearch.video.thumbs import ThumbError, ensure_thumb, thumb_path
from vsearch.web import media
from vsearch.web.guard import Guard

HERE = Path(__file__).parent
HOVER_FRAMES = 6  # thumbnails shown across a moment on hover
MAX_LIMIT = 500
LAZY_THUMBS = 2  # thumbnails decoded at once on first view: a page of 20 must not start 20 decoders
NO_TEXT_MODEL = "no sentence model installed: matching label and file names by their words only"


class BadRequest(Exception):
    """A parameter that does not parse; the message names it (400)."""


class Busy(Exception):
    """Every transcode slot is taken; the client should ask again shortly (503)."""


class NotFound(Exception):
    """No such catalog row, or its file is not servable (404)."""


class Site:
    """What the handlers share: the index folder, one catalog per thread, the vector index."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self._local = threading.local()
        self._vectors: tuple[int, Any] | None = None
        self._vectors_lock = threading.Lock()
        self.decoding = threading.BoundedSemaphore(LAZY_THUMBS)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.templates.filters["time"] = seconds_label
        self.templates.filters["name"] = lambda path: Path(path).name

    def catalog(self) -> Catalog:
        cat = getattr(self._local, "catalog", None)
        if cat is None:
            cat = self._local.catalog = Catalog(self.home, create=False)  # never creates an index
        return cat

    def vectors(self, catalog: Catalog) -> Any:
        """The FAISS index in step with the catalog, shared by all threads (searches are read-only).

        Kept in memory and never saved from here: the server writes nothing but its caches."""
        from vsearch.search.vectors import open_vectors

        with self._vectors_lock:
            generation = catalog.generation
            if self._vectors is None or self._vectors[0] != generation:
                self._vectors = (generation, open_vectors(catalog, save=False)[0])
            return self._vectors[1]

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
        raise BadRequest(f"{name} must be a number") from None
    if not low <= value <= high:  # also refuses nan
        raise BadRequest(f"{name} must be between {low:g} and {high:g}")
    return value


def filters(request: Request, min_score: float) -> tuple[int, q.Filters]:
    limit = int(number(request, "limit", 20, 1, MAX_LIMIT) or 20)
    return limit, q.Filters(
        under=request.query_params.get("under") or None,
        min_score=number(request, "min_score", min_score) or 0.0,
        min_duration=number(request, "min_duration"),
        max_duration=number(request, "max_duration"),
    )


def video_row(catalog: Catalog, video_id: int) -> VideoRow:
    row = catalog.video_by_id(video_id)
    if row is None:
        raise NotFound(f"no video {video_id} in the index")
    return row


# -- presenting ------------------------------------------------------------------------------


def thumb_url(clip_id: int) -> str:
    return f"/thumbs/{clip_id}.jpg"


def hit_json(catalog: Catalog, hit: q.Hit) -> dict:
    """The CLI's --json object of a hit, plus the URLs the page needs for it."""
    spans = catalog.clip_spans(hit.video_id)
    inside = [cid for cid, s, e in spans if e > hit.start and s < hit.end] or [cid for cid, _, _ in spans[:1]]
    step = max(1, math.ceil(len(inside) / HOVER_FRAMES))
    return {
        **hit.to_json(),
        "video_id": hit.video_id,
        "video": f"/media/{hit.video_id}",
        "thumbnail": thumb_url(inside[0]) if inside else None,
        "frames": [thumb_url(c) for c in inside[::step]],
        "page": f"/videos/{hit.video_id}",
    }


def show_json(catalog: Catalog, row: VideoRow) -> dict:
    """`vsearch show --json` of one video, plus its video URL and a thumbnail per window."""
    shown = q.show(catalog, row.path).to_json()
    shown["clips"] = [{**c, "thumbnail": thumb_url(cid)} for c, (cid, _, _) in zip(shown["clips"], catalog.clip_spans(row.id))]
    return {**shown, "id": row.id, "video": f"/media/{row.id}"}


# -- the calls behind pages and API ----------------------------------------------------------


def do_search(site: Site, request: Request) -> tuple[str, list[dict], str | None]:
    text = request.query_params.get("q", "")
    limit, f = filters(request, q.SEARCH_MIN_SCORE)
    if not text.strip():
        return text, [], None
    catalog = site.catalog()
    result = q.search(catalog, text, limit, f)
    note = None if result.semantic is not None else NO_TEXT_MODEL
    return text, [hit_json(catalog, h) for h in result.hits], note


def do_similar(site: Site, request: Request) -> tuple[VideoRow, float | None, list[dict]]:
    catalog = site.catalog()
    params = request.query_params
    if "video" in params:
        try:
            row = video_row(catalog, int(params["video"]))
        except ValueError:
            raise BadRequest("video must be a catalog id") from None
    elif "path" in params:
        # The CLI's `similar FILE` for an indexed file: the path is only a key into the
        # catalog (exact match), never opened or resolved on disk.
        found = catalog.video(params["path"])
        if found is None:
            raise NotFound("not an indexed file")
        row = found
    else:
        raise BadRequest("give video=ID (or path=INDEXED_PATH)")
    if row.status != "ok":
        raise NotFound(f"{row.path} is not indexed")
    at = number(request, "at")
    limit, f = filters(request, 0.0)
    hits = q.similar_to_file(catalog, row.path, at, limit, f, vectors=site.vectors(catalog))
    return row, at, [hit_json(catalog, h) for h in hits]


def do_labels(site: Site, request: Request) -> tuple[str, list[dict]]:
    text = request.query_params.get("q", "")
    limit = int(number(request, "limit", 50, 1, MAX_LIMIT) or 50)
    return text, q.vocabulary(site.catalog(), text or None, limit)


# -- routes ----------------------------------------------------------------------------------


def handler(site: Site, fn: Callable[[Site, Request], Response]) -> Callable[[Request], Response]:
    """Turn the library's and the parser's errors into a status and one line."""

    def endpoint(request: Request) -> Response:
        api = request.url.path.startswith("/api/")
        try:
            return fn(site, request)
        except BadRequest as exc:
            return _error(site, api, 400, str(exc))
        except (NotFound, media.MediaRefused, ThumbError) as exc:
            return _error(site, api, 404, str(exc) if isinstance(exc, NotFound) else "not found")
        except Busy as exc:
            answer = _error(site, api, 503, str(exc))
            answer.headers["Retry-After"] = "2"
            return answer
        except CatalogError as exc:
            return _error(site, api, 503 if "no index" in str(exc) else 400, str(exc))

    return endpoint


def _error(site: Site, api: bool, status: int, message: str) -> Response:
    if api:
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(site.templates.get_template("error.html").render(status=status, message=message),
                        status_code=status)


def search_page(site: Site, request: Request) -> Response:
    text, hits, note = do_search(site, request)
    return site.page("search.html", q=text, hits=hits, note=note, params=request.query_params)


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
        clip = catalog.best_clip(r["label"])
        r["thumbnail"] = thumb_url(clip) if clip else None
    return site.page("labels.html", q=text, rows=rows)


def labels_api(site: Site, request: Request) -> Response:
    return JSONResponse(do_labels(site, request)[1])


def video_page(site: Site, request: Request) -> Response:
    catalog = site.catalog()
    return site.page("video.html", v=show_json(catalog, video_row(catalog, request.path_params["video_id"])))


def video_api(site: Site, request: Request) -> Response:
    catalog = site.catalog()
    return JSONResponse(show_json(catalog, video_row(catalog, request.path_params["video_id"])))


def stats_page(site: Site, request: Request) -> Response:
    return site.page("stats.html", s=q.stats(site.catalog()))


def stats_api(site: Site, request: Request) -> Response:
    return JSONResponse(q.stats(site.catalog()))


def thumb(site: Site, request: Request) -> Response:
    path = thumb_path(site.home, request.path_params["clip_id"])
    if not path.is_file():  # an index older than thumbnails: decode one frame, a few at a time
        with site.decoding:
            path = ensure_thumb(site.catalog(), request.path_params["clip_id"])
    # a thumbnail never changes for a clip id (ids are never reused)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


def video_bytes(site: Site, request: Request) -> Response:
    row = video_row(site.catalog(), request.path_params["video_id"])
    fd = media.open_indexed(row)
    try:
        return ranged(fd, row.size, _mime(row.path), request.headers.get("range"))
    except BaseException:
        os.close(fd)
        raise


def play(site: Site, request: Request) -> Response:
    """Where the page plays a moment from: the file itself when a browser can play it, else a
    cached transcode of the moment (with the source time it starts at)."""
    catalog = site.catalog()
    row = video_row(catalog, request.path_params["video_id"])
    start = number(request, "start", 0.0) or 0.0
    end = number(request, "end", row.duration or start) or start
    try:
        from vsearch.video.media import playable
    except ImportError:  # the transcoding module is not installed: the browser gets the file
        return JSONResponse({"video": f"/media/{row.id}", "type": _mime(row.path), "offset": 0.0})
    os.close(media.open_indexed(row))  # refuse a swapped file before FFmpeg reads it
    with _media_errors():
        path, mime, offset = playable(catalog.home, row.path, start, end)
    url = f"/media/{row.id}" if Path(path) == Path(row.path) else f"/moments/{row.id}?start={start:g}&end={end:g}"
    return JSONResponse({"video": url, "type": mime, "offset": offset})


def moment_bytes(site: Site, request: Request) -> Response:
    """A transcoded moment (made by /api/play), from the transcode cache the server owns."""
    from vsearch.video.media import playable

    catalog = site.catalog()
    row = video_row(catalog, request.path_params["video_id"])
    start, end = number(request, "start", 0.0) or 0.0, number(request, "end", 0.0) or 0.0
    os.close(media.open_indexed(row))
    with _media_errors():
        path, mime, _ = playable(catalog.home, row.path, start, end)
    fd = os.open(path, os.O_RDONLY)
    try:
        return ranged(fd, os.fstat(fd).st_size, mime, request.headers.get("range"))
    except BaseException:
        os.close(fd)
        raise


def clip_download(site: Site, request: Request) -> Response:
    """The moment as its own file (frame-accurate cut, audio kept), into the server's clip cache."""
    try:
        from vsearch.video.media import clip_name, export_clip
    except ImportError:
        raise NotFound("clip export is not available in this vsearch") from None
    catalog = site.catalog()
    row = video_row(catalog, request.path_params["video_id"])
    start = number(request, "start", 0.0, 0.0, row.duration or math.inf) or 0.0
    end = number(request, "end", row.duration, start, row.duration or math.inf) or start
    if end <= start:
        raise BadRequest("end must be after start")
    os.close(media.open_indexed(row))
    out = site.home / "cache" / "clips" / f"{row.id}_{row.content_hash}_{start:.3f}_{end:.3f}.mp4"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with _media_errors():
            export_clip(row.path, start, end, out)
    return FileResponse(out, media_type="video/mp4", filename=clip_name(row.path, start, end))


@contextmanager
def _media_errors() -> Iterator[None]:
    """The media module's errors, as the page's: busy transcoding is 503, a file it cannot cut 404."""
    from vsearch.video.media import MediaBusy, MediaError

    try:
        yield
    except MediaBusy as exc:
        raise Busy(str(exc)) from None
    except MediaError as exc:
        raise NotFound(str(exc)) from None


def ranged(fd: int, size: int, mime: str, header: str | None) -> Response:
    """A 200, 206 or 416 answer for an open file; the body closes the descriptor when done."""
    common = {"Accept-Ranges": "bytes"}
    try:
        ranges = media.parse_range(header, size)
    except media.Unsatisfiable:
        os.close(fd)
        return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{size}"})
    if ranges is None:
        return StreamingResponse(_body(fd, [(0, size - 1)]), media_type=mime,
                                 headers={**common, "Content-Length": str(size)})
    if len(ranges) == 1:
        a, b = ranges[0]
        return StreamingResponse(_body(fd, ranges), status_code=206, media_type=mime,
                                 headers={**common, "Content-Range": f"bytes {a}-{b}/{size}",
                                          "Content-Length": str(b - a + 1)})
    boundary = os.urandom(12).hex()
    heads = [f"--{boundary}\r\nContent-Type: {mime}\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n".encode()
             for a, b in ranges]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(h) + b - a + 1 for h, (a, b) in zip(heads, ranges)) + 2 * (len(ranges) - 1) + len(tail)
    return StreamingResponse(_multipart(fd, ranges, heads, tail), status_code=206,
                             media_type=f"multipart/byteranges; boundary={boundary}",
                             headers={**common, "Content-Length": str(length)})


def _body(fd: int, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
    try:
        for a, b in ranges:
            yield from media.read_span(fd, a, b)
    finally:
        os.close(fd)


def _multipart(fd: int, ranges: list[tuple[int, int]], heads: list[bytes], tail: bytes) -> Iterator[bytes]:
    try:
        for i, ((a, b), head) in enumerate(zip(ranges, heads)):
            yield (b"\r\n" if i else b"") + head
            yield from media.read_span(fd, a, b)
        yield tail
    finally:
        os.close(fd)


def _mime(path: str) -> str:
    ext = Path(path).suffix.lower()
    return {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
            ".mkv": "video/x-matroska", ".ogv": "video/ogg"}.get(ext, "application/octet-stream")


def create_app(home: Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> Any:
    """The ASGI app for an index folder, guarded for the address it is served on."""
    site = Site(home)
    routes = [
        Route("/", handler(site, search_page)),
        Route("/similar", handler(site, similar_page)),
        Route("/labels", handler(site, labels_page)),
        Route("/videos/{video_id:int}", handler(site, video_page)),
        Route("/stats", handler(site, stats_page)),
        Route("/api/search", handler(site, search_api)),
        Route("/api/similar", handler(site, similar_api)),
        Route("/api/labels", handler(site, labels_api)),
        Route("/api/stats", handler(site, stats_api)),
        Route("/api/videos/{video_id:int}", handler(site, video_api)),
        Route("/api/play/{video_id:int}", handler(site, play)),
        Route("/media/{video_id:int}", handler(site, video_bytes)),
        Route("/moments/{video_id:int}", handler(site, moment_bytes)),
        Route("/clip/{video_id:int}", handler(site, clip_download)),
        Route("/thumbs/{clip_id:int}.jpg", handler(site, thumb)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, host, port, token)
