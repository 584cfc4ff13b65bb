"""The guard's signals, on a blinker namespace as Flask's and Flask-Login's are.

An app alerts, counts or logs on them without parsing the audit trail::

    from guard import request_refused

    @request_refused.connect_via(app)
    def on_refused(app, reason, **extra): ...

- ``request_authenticated`` (sender: the app; ``key``: the ``KeyRecord``,
  ``request_id``): a request whose key was verified was let through by the guard.
- ``request_refused`` (sender: the app; ``reason``: the audit reason, ``key_id`` (or
  ``None``), ``request_id``): the guard refused a request.
- ``key_revoked`` (sender: the :class:`~guard.Keys`; ``key``: the revoked record) and
  ``key_rotated`` (``key``: the successor, ``replaced``: the old record, in its grace
  period), sent by :class:`guard.Keys` once per change it saves.

Each request sends at most one of the first two, once it is over (after its audit
entry, outside Flask's request context: everything a receiver needs is in the
arguments). They carry no token and no secret. As with Flask's signals, an exception in
a receiver propagates: receivers must not raise.
"""

from __future__ import annotations

from blinker import Namespace

namespace = Namespace()

request_authenticated = namespace.signal("request-authenticated")
request_refused = namespace.signal("request-refused")
key_revoked = namespace.signal("key-revoked")
key_rotated = namespace.signal("key-rotated")
