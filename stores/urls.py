"""Store URLs as they may be shown: in errors, logs and command output.

A store URL carries the Redis credentials (``redis://user:password@host``, or a
``?password=`` option). :func:`redact` is the one way a URL is shown: everything a
message, a log line or the CLI prints of a URL goes through it, so a password never
leaves the process in clear text. :func:`scrub` applies the same rule to a text that
may quote a URL (a driver's message).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

#: What a credential is replaced by.
MASK = "***"
#: Query options that hold a secret (``password``, ``ssl_password``, ...).
_SECRET_OPTION = re.compile(r"([?&][^=&#]*password[^=&#]*=)([^&#]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) and every ``*password*`` query
    option replaced by ``***``.

    The userinfo runs to the *last* ``@``: a password holding an unencoded ``/``, ``?``,
    ``#`` or ``@`` (which a URL parser would read as the path, the query, or the host)
    is masked whole all the same, never shown in part."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hosts = rest.rpartition("@")
    if at and userinfo:
        rest = f"{MASK}@{hosts}"
    shown = _SECRET_OPTION.sub(lambda m: m.group(1) + MASK, rest)
    return f"{scheme}{sep}{shown}" if sep else shown


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error about ``url``) with ``url`` shown redacted, and
    its credentials masked wherever else they appear, as given or percent-decoded.

    A password with a URL delimiter in it (``/``, ``?``, ``#``, unencoded) is split by
    the parser into pieces that a message may quote on their own: then the text is not
    shown at all, only a hint to percent-encode it."""
    raw = _passwords(url)
    if any(re.search(r"[/?#]", secret) for secret in raw):
        return (
            f"{redact(url)} cannot be read: percent-encode any '/', '?' or '#' in its "
            "password (e.g. with urllib.parse.quote)"
        )
    text = text.replace(url, redact(url))
    forms = {form for secret in raw for form in (secret, unquote(secret))}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _passwords(url: str) -> set[str]:
    # The userinfo's password, and every password option's value, as written.
    rest = url.partition("://")[2] or url
    userinfo = rest.rpartition("@")[0]
    found = {userinfo.partition(":")[2]} if userinfo else set()
    found |= {m.group(2) for m in _SECRET_OPTION.finditer(rest)}
    return {secret for secret in found if secret}
