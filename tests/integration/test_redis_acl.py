"""Everything the guard does on Redis works as a user holding only the commands that
docs/deployment.md lists, so that ACL can be used as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from guard import Keys, TokenCodec
from guard.observability import audit
from guard.observability.audit_stream import RedisStreamHandler
from stores import RedisStore
from tests.conftest import PEPPER, SECRET, Api

pytestmark = pytest.mark.redis
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def documented_acl() -> list[str]:
    """The ACL SETUSER rules from the deployment guide, as arguments."""
    text = GUIDE.read_text()
    match = re.search(r"ACL SETUSER guard (.+?)\n```", text, re.S)
    assert match, "the guide shows an ACL SETUSER guard ... command"
    rules = match.group(1).replace("\\\n", " ").split()
    return [">test-password" if rule.startswith(">") else rule for rule in rules]


def test_the_documented_acl_is_enough_for_every_guard_operation(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "guard", "reset", *documented_acl())
    url = redis_url.replace("redis://", "redis://guard:test-password@")
    api = Api(
        GUARD_STORE_URL=url,
        GUARD_RATELIMIT_STORAGE_URL=url,
        GUARD_AUDIT_STREAM_URL=url,
        GUARD_RATE_LIMIT="2/minute",
    )
    [stream] = [h for h in audit.logger.handlers if isinstance(h, RedisStreamHandler)]
    operator = Keys(RedisStore(url), TokenCodec([SECRET], [PEPPER]))
    try:
        token, record = operator.create("acl", scopes=["orders:read"])
        statuses = [
            api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        # An owner's limits and a quota, counted in the limits' own script.
        operator.set_owner("acme", rate_limit="5/minute", quota=1)
        owned, _ = operator.create("owned", scopes=["orders:read"], owner="acme", quota=5)
        statuses = [
            api.client.get("/orders", headers=api.bearer(owned)).status_code for _ in range(2)
        ]
        assert statuses == [200, 429]
        assert [owner.name for owner in operator.store.owners()] == ["acme"]
        assert operator.store.delete_owner("acme")
        forged = "gk_" + "0" * 16 + ".x.y"
        unknown = operator.codec.issue("ffffffffffffffff").token  # counted in Redis
        for refused in (forged, unknown):
            assert api.client.get("/orders", headers=api.bearer(refused)).status_code == 401
        new_token, _ = operator.rotate(record.key_id, grace=60)
        operator.revoke(record.key_id)
        assert operator.store.records()
        api.app.extensions["guard"].keys.flush_uses()  # last-use batch: ZADD
        assert operator.store.last_used(record.key_id) is not None
        stream.flush()
        # 7 requests, and the creation, rotation and revocation of a key, the owner's
        # setting and the owned key's creation.
        assert admin.xlen("guard:audit") == 12
        assert operator.verify(new_token).ok
    finally:
        audit.logger.removeHandler(stream)
        stream.close()
        api.close()
        operator.close()
        admin.execute_command("ACL", "DELUSER", "guard")
        admin.close()
