"""TLS to Redis, as docs/deployment.md configures it: ``rediss://`` with redis-py's
``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile`` query options, for the store, the
limiter and the audit stream, on a redis-server that requires client certificates
(certificates made here with the ``openssl`` command)."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
from click.testing import CliRunner

from guard import ConfigurationError
from guard.cli.commands import cli
from guard.observability import audit
from guard.observability.audit_stream import RedisStreamHandler
from stores import InvalidStoreURL
from tests.conftest import Api
from tests.redis_server import free_port, require_binary

pytestmark = pytest.mark.redis


def openssl(*args: str | Path) -> None:
    subprocess.run([require_binary("openssl"), *map(str, args)], check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by it."""
    d = directory
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
            "-keyout", d / "ca.key", "-out", d / "ca.crt")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt",
                "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "1",
                "-extfile", d / "san.ext", "-out", d / f"{name}.crt")  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server on TLS only, requiring a client certificate: its port and certs."""
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    port = free_port()
    process = subprocess.Popen(
        [require_binary("redis-server"), "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(certs),
         "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
         "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    admin = redis.Redis.from_url(url(port, certs))
    for _ in range(100):
        try:
            admin.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    admin.close()
    yield port, certs
    process.terminate()
    process.wait(10)


def url(port: int, certs: Path, *, client_certificate: bool = True) -> str:
    options = {"ssl_ca_certs": certs / "ca.crt"}
    if client_certificate:
        options |= {"ssl_certfile": certs / "client.crt", "ssl_keyfile": certs / "client.key"}
    return f"rediss://127.0.0.1:{port}/0?{urlencode(options)}"


def test_store_limiter_and_audit_stream_work_over_tls(tls_redis: tuple[int, Path]) -> None:
    port, certs = tls_redis
    tls = url(port, certs)
    api = Api(
        GUARD_STORE_URL=tls,
        GUARD_RATELIMIT_STORAGE_URL=tls,
        GUARD_AUDIT_STREAM_URL=tls,
        GUARD_RATE_LIMIT="2/minute",
    )
    [stream] = [h for h in audit.logger.handlers if isinstance(h, RedisStreamHandler)]
    admin = redis.Redis.from_url(tls)
    try:
        token = api.issue()
        statuses = [
            api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]  # counted in Redis, over TLS
        stream.flush()
        assert admin.xlen("guard:audit") == 4  # the key's creation and 3 requests
        checked = CliRunner().invoke(
            cli,
            ["store", "check"],
            env={"GUARD_STORE_URL": tls, "GUARD_RATELIMIT_STORAGE_URL": tls},
        )
        assert checked.exit_code == 0, checked.output
    finally:
        audit.logger.removeHandler(stream)
        stream.close()
        admin.flushall()
        admin.close()
        api.close()


def test_without_the_client_certificate_requests_fail_closed(
    tls_redis: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, certs = tls_redis
    refused = url(port, certs, client_certificate=False)
    with caplog.at_level(logging.WARNING, logger="guard.observability.redis_access"):
        api = Api(GUARD_STORE_URL=refused)
    try:
        assert "could not check" in caplog.text  # said at start-up
        token = "gk_" + "a" * 16 + ".x.y"
        response = api.client.get("/orders", headers=api.bearer(token))
        assert response.status_code in (401, 503)  # a forged token needs no store
        signed = api.app.extensions["guard"].keys.codec.issue("0123456789abcdef").token
        assert api.client.get("/orders", headers=api.bearer(signed)).status_code == 503
    finally:
        api.close()


@pytest.mark.parametrize(
    "scheme", ["redis+sentinel://127.0.0.1:1/m", "redis+cluster://127.0.0.1:1"]
)
def test_options_on_a_url_that_cannot_read_them_stop_the_app(scheme: str) -> None:
    with pytest.raises(InvalidStoreURL, match="take no"):
        Api(GUARD_STORE_URL=f"{scheme}?ssl_ca_certs=/ca.pem")
    with pytest.raises(ConfigurationError, match="take no"):
        Api(GUARD_AUDIT_STREAM_URL=f"{scheme}?ssl_ca_certs=/ca.pem")
