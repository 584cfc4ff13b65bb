"""The apps the benchmark compares, each serving ``GET /data`` with a small JSON object.

- ``bare``: Flask alone.
- ``limit``: the least work any guard with these features must do, around the same bare
  app (``shared/reference/limit.md``): a dict lookup of an already verified token, a
  request id, a fixed-window count in a dict, the constant and per-request headers, one
  audit record through ``logging``. The yardstick the guard is read against.
- ``floor``: Flask plus one redis-py ``PING`` per request: the floor for anything that
  needs Redis on every request.
- ``peer``: the stack a careful team stitches by hand from the same libraries
  (``shared/reference/baseline.md``): Flask-HTTPAuth over a dict of SHA-256 digests,
  Flask-Limiter (one default limit, headers on), Flask-Talisman, Flask-CORS, and one
  JSON log line per request.
- ``peer_redis``: the same with keys in a Redis hash and Flask-Limiter on Redis.
- ``guard`` / ``guard_redis``: this project, every feature on (HTTPS redirection, HSTS,
  CORS, per-key and failed-attempt limits, scopes, audit line), memory or Redis.
- ``guard_metrics``: ``guard`` with Prometheus metrics on (``GUARD_METRICS``).

Each factory returns the app and the request headers that authenticate to it.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import redis
import sqlalchemy as sa
from flask import Flask, Response, g, jsonify, request
from flask_cors import CORS
from flask_httpauth import HTTPTokenAuth
from flask_limiter import Limiter
from flask_talisman import Talisman

from guard import Guard
from stores.sql import init_schema

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ORIGIN = "https://app.example"
# Fixed benchmark values, not secrets of anything real.
SECRET_KEY = "benchmark-secret-key-0123456789abcdef"  # noqa: S105
PEPPER = "benchmark-pepper-0123456789abcdefghij"
Headers = dict[str, str]
Factory = Callable[[str], tuple[Flask, Headers]]


def quiet_logger(name: str) -> logging.Logger:
    """A logger that formats and writes every record, to nowhere: the same cost shape for
    the guard's audit line and the hand-stitched stack's log line."""
    logger = logging.getLogger(name)
    logger.handlers = [logging.StreamHandler(open(os.devnull, "w"))]  # noqa: SIM115
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def bare(redis_url: str) -> tuple[Flask, Headers]:
    app = Flask("bare")

    @app.get("/data")
    def data() -> Response:
        return jsonify(items=[1, 2, 3], ok=True)

    return app, {}


#: What the ``limit`` app adds to every response: the guard's constant headers.
LIMIT_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Permissions-Policy", "browsing-topics=()"),
    ("Access-Control-Allow-Origin", ORIGIN),
    ("Vary", "Origin"),
    ("Cache-Control", "no-store"),
]


def limit(redis_url: str) -> tuple[Flask, Headers]:
    """The yardstick: only what the guard's features cannot do without, by hand."""
    app, _ = bare(redis_url)
    token = os.environ.get("BENCH_TOKEN") or secrets.token_urlsafe(32)
    verified = {token: ("k1", "bench")}  # the verified-token memory at its best
    amount, counts = 1_000_000, dict[tuple[str, int], int]()
    log = quiet_logger("bench.limit.audit")
    inner: WSGIApplication = app.wsgi_app

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        header = environ.get("HTTP_AUTHORIZATION", "")
        key_id, name = verified[header[7:]] if header.startswith("Bearer ") else ("", "")
        request_id = random.randbytes(16).hex()  # noqa: S311 - unique, not secret
        now = time.time()
        window = (key_id, int(now // 60))
        count = counts[window] = counts.get(window, 0) + 1
        if count > amount:
            raise RuntimeError("the benchmark's limit is never reached")
        reset = 60 - int(now % 60)
        status: list[str] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code)
            headers.extend(LIMIT_HEADERS)
            headers.append(("X-Request-ID", request_id))
            headers.append(("RateLimit-Policy", f'"key";q={amount};w=60'))
            headers.append(("RateLimit", f'"key";r={amount - count};t={reset}'))
            return start_response(code, headers, exc_info)

        body = inner(environ, start)
        fields = {
            "ts": now,
            "request_id": request_id,
            "method": environ["REQUEST_METHOD"],
            "path": environ["PATH_INFO"],
            "status": int(status[0][:3]),
            "outcome": "allowed",
            "reason": "valid",
            "key_id": key_id,
            "key_name": name,
            "client": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "latency_ms": (time.perf_counter() - started) * 1000,
        }
        log.info(json.dumps(fields, separators=(",", ":")), extra=fields)
        return body

    app.wsgi_app = guarded  # type: ignore[method-assign]
    return app, {"Authorization": f"Bearer {token}", "Origin": ORIGIN}


def floor(redis_url: str) -> tuple[Flask, Headers]:
    app, _ = bare(redis_url)
    client = redis.Redis.from_url(redis_url)

    @app.before_request
    def one_round_trip() -> None:
        client.ping()

    return app, {}


def _peer(redis_url: str | None) -> tuple[Flask, Headers]:
    app = Flask("peer_redis" if redis_url else "peer")
    # Under gunicorn every worker builds the app: they must agree on the token.
    token = os.environ.get("BENCH_TOKEN") or secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    auth = HTTPTokenAuth(scheme="Bearer")
    log = quiet_logger(f"bench.{app.name}")
    if redis_url:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        client.hset("bench:keys", digest, json.dumps({"id": "k1", "name": "bench"}))

        def lookup(candidate: str) -> dict[str, str] | None:
            found = client.hgetall("bench:keys")
            value = found.get(hashlib.sha256(candidate.encode()).hexdigest())
            return None if value is None else dict(json.loads(value))
    else:
        keys = {digest: {"id": "k1", "name": "bench"}}

        def lookup(candidate: str) -> dict[str, str] | None:
            wanted = hashlib.sha256(candidate.encode()).hexdigest()
            for stored, key in keys.items():
                if hmac.compare_digest(stored, wanted):
                    return key
            return None

    @auth.verify_token
    def verify(candidate: str) -> dict[str, str] | None:
        key = lookup(candidate)
        g.key = key
        return key

    Limiter(
        lambda: g.key["id"] if g.get("key") else (request.remote_addr or "-"),
        app=app,
        default_limits=["1000000 per minute"],
        headers_enabled=True,
        storage_uri=redis_url or "memory://",
    )
    Talisman(app, force_https=False, content_security_policy={"default-src": "'none'"})
    CORS(app, origins=[ORIGIN])

    @app.after_request
    def audit(response: Response) -> Response:
        key = g.get("key")
        log.info(
            json.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "key": key["id"] if key else None,
                    "client": request.remote_addr,
                }
            )
        )
        return response

    @app.get("/data")
    @auth.login_required
    def data() -> Response:
        return jsonify(items=[1, 2, 3], ok=True)

    return app, {"Authorization": f"Bearer {token}", "Origin": ORIGIN}


def peer(redis_url: str) -> tuple[Flask, Headers]:
    return _peer(None)


def peer_redis(redis_url: str) -> tuple[Flask, Headers]:
    return _peer(redis_url)


def _guard(
    redis_url: str | None, metrics: bool = False, store_url: str | None = None
) -> tuple[Flask, Headers]:
    app = Flask("guard_redis" if redis_url else "guard")
    app.config.update(
        GUARD_METRICS=metrics,
        GUARD_SECRET_KEY=SECRET_KEY,
        GUARD_PEPPER=PEPPER,
        GUARD_CORS_ORIGINS=ORIGIN,
        GUARD_RATE_LIMIT="1000000/minute",
        GUARD_STORE_URL=store_url or redis_url or "memory://",
        GUARD_RATELIMIT_STORAGE_URL=redis_url or "memory://",
        GUARD_STORE_CACHE_TTL=60,
    )
    # Under gunicorn (bench.http) the store and proxy settings come from the environment.
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("GUARD_")})
    guard = Guard(app)
    quiet_logger("guard.audit")

    @app.get("/data")
    @guard.require("data:read")
    def data() -> Response:
        return jsonify(items=[1, 2, 3], ok=True)

    token = os.environ.get("BENCH_TOKEN")
    if token is None:
        with app.app_context():
            token, _ = guard.keys.create("bench", scopes=["data:read"])
    return app, {"Authorization": f"Bearer {token}", "Origin": ORIGIN}


def guard(redis_url: str) -> tuple[Flask, Headers]:
    return _guard(None)


def guard_redis(redis_url: str) -> tuple[Flask, Headers]:
    return _guard(redis_url)


def guard_sql(redis_url: str) -> tuple[Flask, Headers]:
    """The guard on the SQL store (a SQLite file; limits in process): a warm verification
    reads the process's cache, as on Redis, so no query is made per request."""
    directory = tempfile.mkdtemp(prefix="bench-sql-")
    atexit.register(shutil.rmtree, directory, True)
    url = f"sqlite:///{directory}/keys.db"
    engine = sa.create_engine(url)
    init_schema(engine)
    engine.dispose()
    return _guard(None, store_url=url)


def guard_metrics(redis_url: str) -> tuple[Flask, Headers]:
    return _guard(None, metrics=True)


#: Name -> factory, in the order the table prints them.
APPS: dict[str, Factory] = {
    "bare": bare,
    "limit": limit,
    "floor": floor,
    "peer": peer,
    "peer_redis": peer_redis,
    "guard": guard,
    "guard_redis": guard_redis,
    "guard_metrics": guard_metrics,
    "guard_sql": guard_sql,
}
