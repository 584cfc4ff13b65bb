"""Apps served by werkzeug's threaded server (what ``flask run`` and ``app.run`` use)."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator

from flask import Flask
from werkzeug.serving import make_server


@contextlib.contextmanager
def served(app: Flask) -> Iterator[http.client.HTTPConnection]:
    """``app`` on werkzeug's threaded server on loopback, and a connection to it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        yield connection
    finally:
        connection.close()
        server.shutdown()
        thread.join()


def fetch(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request on ``connection``: the response and its body, read."""
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()
