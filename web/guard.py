"""Who may talk to the server: checked on every request before any handler runs.

- Host header: only the name the server is bound to (plus the loopback names when bound to
  loopback), with the port. A DNS-rebinding page reaches 127.0.0.1 under its own name and is
  refused here.
- Origin: anything but GET/HEAD must come from this very origin.
- Token (required off loopback): `?token=` once, answered with a cookie and a redirect that
  drops it from the URL; or the cookie; or an `Authorization: Bearer` header.
- Every answer carries a Content-Security-Policy that allows scripts, styles and media from
  this origin only: no inline script, nothing from elsewhere.
"""

from __future__ import annotations

import ipaddress
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "vsearch_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # a ?token= URL must not leak through Referer
    (b"x-frame-options", b"DENY"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_names(host: str, port: int) -> set[str] | None:
    """The Host header values this server answers to; None: any (bound to every interface).

    On a wildcard address the names people reach the machine by cannot be known; such a
    server always has a token, and a rebinding page never holds it (the cookie belongs to the
    server's own name, and the page cannot read the URL it was printed in)."""
    if host in ("0.0.0.0", "::", ""):
        return None
    bound = f"[{host}]" if ":" in host and not host.startswith("[") else host
    names = {bound, *LOOPBACK_NAMES} if is_loopback(host) else {bound}
    return {f"{n}:{port}" for n in names} | ({n for n in names} if port == 80 else set())


class Guard:
    """ASGI middleware: Host, Origin and token checks, and the security headers."""

    def __init__(self, app: Any, host: str, port: int, token: str | None):
        if token is None and not is_loopback(host):
            raise ValueError("a server reachable from other machines needs a token")
        self.app, self.token = app, token
        self.hosts = host_names(host, port)
        self.origins = None if self.hosts is None else {f"http://{h}" for h in self.hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refuse(scope, headers)
        if refusal is not None:
            status, text, extra = refusal
            await _answer(send, status, text, extra)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def refuse(self, scope: dict, headers: dict[str, str]) -> tuple[int, str, list] | None:
        host = headers.get("host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            return 421, "wrong Host header (this server answers only to its own address)", []
        origins = self.origins if self.origins is not None else {f"http://{host}"}
        if scope["method"] not in ("GET", "HEAD") and headers.get("origin") not in origins:
            return 403, "cross-origin request refused", []
        if self.token is None:
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if given is not None and secrets.compare_digest(given.encode(), self.token.encode()):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            return 303, "signed in", [(b"location", location.encode()), (b"set-cookie", cookie.encode())]
        if self.token_ok(headers):
            return None
        return 401, "this server needs its token: open the URL `vsearch serve` printed", []

    def token_ok(self, headers: dict[str, str]) -> bool:
        expected = self.token.encode()  # type: ignore[union-attr]  # only called when a token is set
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and secrets.compare_digest(auth[7:].strip().encode(), expected):
            return True
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            return False
        morsel = jar.get(COOKIE)
        return morsel is not None and secrets.compare_digest(morsel.value.encode(), expected)


async def _answer(send: Any, status: int, text: str, extra: list) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra, *HEADERS]})
    await send({"type": "http.response.body", "body": body})
