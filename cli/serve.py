"""`vsearch serve`: the local web page. Starlette and uvicorn are imported only when it runs."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from vsearch.cli.app import Home, app, fail, index_at, reported


@app.command()
def serve(
    home: Home = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    token: Annotated[str | None, typer.Option("--token", envvar="VSEARCH_TOKEN", show_default=False,
                                              help="Require this token (default: none on loopback, "
                                              "a generated one otherwise).")] = None,
) -> None:
    """A local web page: thumbnails of each moment, play it, find more like it, download it.

    Example: vsearch serve --open
    """
    from vsearch.web.guard import is_loopback

    idx = index_at(home)
    with reported():
        idx.catalog()  # no index here: say so now rather than on every request
    idx.close()
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    if token is not None and len(token) < 16:
        fail("--token must be at least 16 characters", 2)
    import uvicorn

    from vsearch.web.app import create_app

    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    config = uvicorn.Config(create_app(idx, host, port, token), host=host, port=port, log_level="warning",
                            lifespan="off", server_header=False)
    server = uvicorn.Server(config)
    typer.echo(f"vsearch: serving {idx.home.root} at {url}  (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server.run()  # Ctrl-C: uvicorn finishes the requests in flight and returns
    if not server.started:  # the port is taken, or the address is not this machine's (uvicorn said why)
        raise typer.Exit(1)
