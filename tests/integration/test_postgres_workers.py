"""Two gunicorn workers sharing one real PostgreSQL through the SQL store: a revocation
reaches both in under a second, and an outage under load is refused with 503, never let
through, then recovered from without a restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from guard import Keys, TokenCodec
from stores import from_url
from stores.sql import FALLBACK_TTL, init_schema
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn
from tests.integration.shared_workers import (
    CACHED_FOR_AN_HOUR,
    outage_under_load,
    seconds_until_every_worker_refuses,
)
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres
WORKERS = 2


@pytest.fixture
def workers(postgres_url: str) -> Iterator[tuple[Gunicorn, Keys]]:
    engine = sa.create_engine(postgres_url)
    init_schema(engine)
    engine.dispose()
    server = Gunicorn(
        WORKERS,
        GUARD_STORE_URL=postgres_url,
        **CACHED_FOR_AN_HOUR,
    )
    keys = Keys(from_url(postgres_url), TokenCodec([SECRET], [PEPPER]))
    yield server, keys
    server.stop()
    keys.close()


def test_a_revocation_reaches_both_workers_in_under_a_second(
    workers: tuple[Gunicorn, Keys],
) -> None:
    server, keys = workers
    token, record = keys.create("revoked-soon", scopes=["orders:read"])
    delay = seconds_until_every_worker_refuses(
        f"{server.url}/orders", token, lambda: keys.revoke(record.key_id)
    )
    # The cache TTL is an hour: only the notification explains a refusal this soon.
    assert delay < 1.0


def test_postgres_stopped_under_load_gives_503s_only_then_200s(
    workers: tuple[Gunicorn, Keys], postgres_server: PostgresServer
) -> None:
    server, keys = workers
    token, _ = keys.create("steady", scopes=["orders:read"])
    outage = outage_under_load(
        server, token, postgres_server.stop, postgres_server.start, down_for=2 * FALLBACK_TTL + 1
    )
    # Past the short TTL the workers may trust a cached record for, every answer during
    # the outage was a 503, and every answer after the recovery a 200.
    during = outage.statuses(outage.stopped + 2 * FALLBACK_TTL, outage.restarting)
    assert during == {503}, during
    assert outage.statuses(outage.recovered) == {200}
