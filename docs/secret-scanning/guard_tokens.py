"""A detect-secrets plugin for flask-api-guard tokens: ``gk_<key id>.<secret>.<signature>``.

Standalone on purpose: it imports detect-secrets alone, never the guard, so it runs in
any repository or CI job that may hold a leaked token (a client's, an ops repository),
where the guard is not installed. Point detect-secrets at this file::

    detect-secrets scan --plugin docs/secret-scanning/guard_tokens.py > .secrets.baseline

detect-secrets reports a hash of each token found, never the token. With another
``GUARD_TOKEN_PREFIX``, change :data:`PREFIX`.
"""

from __future__ import annotations

import re

from detect_secrets.plugins.base import RegexBasedDetector

#: The ``GUARD_TOKEN_PREFIX`` of the tokens to find.
PREFIX = "gk_"
#: Exactly the shape the guard issues (16 hex digits, 43 base64url characters, then a
#: signature whose last character has its unused low bits zero): a random string of the
#: same alphabet and length does not match, so no entropy threshold is needed. Not part
#: of a longer base64url run, so a token is never reported cut short or from inside
#: another string.
TOKEN = re.compile(
    r"(?<![0-9A-Za-z_-])("
    + re.escape(PREFIX)
    + r"[0-9a-f]{16}\.[0-9A-Za-z_-]{43}\.[0-9A-Za-z_-]{42}[AEIMQUYcgkosw048])(?![0-9A-Za-z_-])"
)


class GuardTokenDetector(RegexBasedDetector):
    """Scans for flask-api-guard API keys: anyone holding one can call the API as its key
    until it is revoked (``guard keys revoke ID``; the key id follows the prefix)."""

    secret_type = "flask-api-guard token"  # noqa: S105 - a label, not a secret
    denylist = (TOKEN,)
