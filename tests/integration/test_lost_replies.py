"""A write whose reply is lost after Redis applied it: the ``guard`` command reads the
outcome back, says it truly, loses no token, and every revocation reaches the workers.

Review round 3, item 5: ``rotate`` exited 1 though the rotation was saved (the token was
lost, a retry refused); a ``revoke`` that timed out was never published, and its retry
printed "revoked" but published nothing, so workers accepted the key for the whole cache
TTL. A proxy between the command and a real redis-server forwards every command and
swallows the replies to the first few scripts (every write is one), deterministically.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stores.redis import SAVE_SCRIPT, RedisStore
from tests.conftest import Api
from tests.integration.shared_store import cached, wait_until
from tests.redis_server import RedisServer
from tests.test_cli import Shell
from tests.test_key_audit import entries, notices


class ReplyDroppingProxy:
    """Loopback TCP proxy to a redis-server: forwards everything, except that after each
    of the first ``drops`` EVALSHA commands it forwards nothing more back on that
    connection, so the script runs and its client times out waiting for the reply."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.drops = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self._sockets += [client, server]
            swallowing = threading.Event()
            threading.Thread(
                target=self._up, args=(client, server, swallowing), daemon=True
            ).start()
            threading.Thread(
                target=self._down, args=(server, client, swallowing), daemon=True
            ).start()

    def _up(
        self, client: socket.socket, server: socket.socket, swallowing: threading.Event
    ) -> None:
        with client, server:
            while data := self._recv(client):
                if b"EVALSHA" in data:
                    with self._lock:
                        if self.drops > 0:
                            self.drops -= 1
                            swallowing.set()  # before the command reaches Redis
                server.sendall(data)

    def _down(
        self, server: socket.socket, client: socket.socket, swallowing: threading.Event
    ) -> None:
        while data := self._recv(server):
            if not swallowing.is_set():
                try:
                    client.sendall(data)
                except OSError:
                    return

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def proxy(redis_url: str, redis_server: RedisServer) -> Iterator[ReplyDroppingProxy]:
    with redis.Redis.from_url(redis_url) as raw:
        raw.script_load(SAVE_SCRIPT)  # so the first EVALSHA runs, not NOSCRIPT
    proxied = ReplyDroppingProxy(redis_server.port)
    yield proxied
    proxied.close()


@pytest.fixture
def operator(tmp_path: Path, proxy: ReplyDroppingProxy) -> Shell:
    """The `guard` command, reaching Redis through the proxy, giving up after 0.3 s."""
    return Shell(
        tmp_path,
        GUARD_STORE_URL=f"redis://127.0.0.1:{proxy.port}/0",
        GUARD_STORE_TIMEOUT="0.3",
    )


@pytest.fixture
def worker(redis_url: str) -> Iterator[Api]:
    """A service worker on the same Redis (directly), caching records for a minute."""
    api = Api(GUARD_STORE_URL=redis_url, GUARD_STORE_CACHE_TTL=60)
    yield api
    api.close()


def status(api: Api, token: str) -> int:
    return api.client.get("/orders", headers=api.bearer(token)).status_code


def create(operator: Shell) -> dict[str, str]:
    done = operator.ok("keys", "create", "--name", "ci", "--scopes", "orders:read", "--json")
    created: dict[str, str] = json.loads(done.stdout)
    return created


def cached_by(worker: Api, created: dict[str, str]) -> None:
    """The worker accepts the key from its cache: only an invalidation can stop that."""
    store = worker.app.extensions["guard"].keys.store
    assert isinstance(store, RedisStore)
    assert status(worker, created["token"]) == 200
    wait_until(lambda: store.subscribed, 5)
    assert status(worker, created["token"]) == 200
    assert cached(store, created["id"])


def test_a_rotation_whose_reply_is_lost_is_read_back_and_its_token_works(
    operator: Shell, proxy: ReplyDroppingProxy, worker: Api
) -> None:
    created = create(operator)
    proxy.drops = 1
    rotated = operator.guard("keys", "rotate", created["id"], "--json")
    assert rotated.returncode == 0, rotated.stderr
    successor = json.loads(rotated.stdout)
    assert status(worker, successor["token"]) == 200
    again = operator.guard("keys", "rotate", created["id"])
    assert again.returncode == 1
    assert f"already rotated to {successor['id']}" in again.stderr


def test_an_unconfirmed_rotation_still_prints_its_token_and_says_so(
    operator: Shell, proxy: ReplyDroppingProxy, worker: Api
) -> None:
    created = create(operator)
    proxy.drops = 2  # the write and the check of it
    rotated = operator.guard("keys", "rotate", created["id"], "--json")
    assert rotated.returncode == 1
    successor = json.loads(rotated.stdout)
    assert notices(rotated.stderr).startswith("Error: the key store did not confirm the change")
    assert f"`guard keys show {successor['id']}` tells" in rotated.stderr
    [entry] = entries(rotated.stderr)  # the trail says it may have happened
    assert (entry["event"], entry["confirmed"]) == ("key.rotated", False)
    assert entry["values"]["replaced_by"] == successor["id"]
    assert status(worker, successor["token"]) == 200  # it was saved: the token is not lost
    operator.ok("keys", "show", successor["id"])


def test_a_revocation_whose_reply_is_lost_still_reaches_every_worker(
    operator: Shell, proxy: ReplyDroppingProxy, worker: Api
) -> None:
    created = create(operator)
    cached_by(worker, created)
    proxy.drops = 1
    revoked = operator.guard("keys", "revoke", created["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert notices(revoked.stderr) == f"revoked {created['id']} (ci)\n"
    [entry] = entries(revoked.stderr)  # once, though the write was sent again
    assert (entry["event"], entry["confirmed"]) == ("key.revoked", True)
    wait_until(lambda: status(worker, created["token"]) == 401, 2)


def test_a_retried_revocation_publishes_again(
    operator: Shell, proxy: ReplyDroppingProxy, worker: Api
) -> None:
    created = create(operator)
    cached_by(worker, created)
    proxy.drops = 2  # saved, but neither it nor its check answered: nothing published
    first = operator.guard("keys", "revoke", created["id"])
    assert first.returncode == 1
    assert notices(first.stderr).startswith("Error: the key store did not confirm the change")
    assert "run the command again" in first.stderr
    assert status(worker, created["token"]) == 200  # still cached: nobody was told
    operator.ok("keys", "revoke", created["id"])
    wait_until(lambda: status(worker, created["token"]) == 401, 2)
