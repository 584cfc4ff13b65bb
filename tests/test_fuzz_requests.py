"""Whatever a client sends, the guard answers 400 or 401, never a 5xx, and 200 only for a
valid token. Values go straight into the WSGI environ, as a real server would pass them
(latin-1 strings, so any byte, including invalid UTF-8, can appear)."""

from __future__ import annotations

import functools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api

FUZZ = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def api() -> tuple[Api, str]:
    # High limits: the fuzzer must see the auth path, not a 429 after a few failures.
    target = Api(GUARD_RATE_LIMIT="1000000000/minute", GUARD_FAILED_AUTH_LIMIT="1000000000/minute")
    return target, target.issue("fuzz")


def _token() -> str:
    return api()[1]


latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=120)
raw_bytes = st.binary(max_size=120).map(lambda data: data.decode("latin-1"))
huge = st.integers(min_value=4_000, max_value=60_000).map(lambda n: "A" * n)


@st.composite
def near_tokens(draw: st.DrawFn) -> str:
    """The valid token, mutated: a character flipped, dropped, added, or affixed."""
    token = _token()
    position = draw(st.integers(min_value=0, max_value=len(token) - 1))
    char = draw(st.characters(max_codepoint=0xFF))
    return draw(
        st.sampled_from(
            [
                token[:position] + char + token[position + 1 :],
                token[:position] + token[position + 1 :],
                token[:position] + char + token[position:],
                char + token,
                token + char,
                token.upper(),
            ]
        )
    )


tokens = st.one_of(st.builds(_token), near_tokens(), latin1, raw_bytes, huge)
schemes = st.sampled_from(
    ["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Token", "", "Bearer:", "Bear"]
)
separators = st.sampled_from([" ", "  ", "", "\t", "\x00", " \x00", "\r\n ", ","])
affixes = st.one_of(st.just(""), st.sampled_from([" ", "\t", "\x00", "\x7f", "é", ","]), latin1)


@st.composite
def authorization_headers(draw: st.DrawFn) -> str:
    def one() -> str:
        return draw(affixes) + draw(schemes) + draw(separators) + draw(tokens) + draw(affixes)

    # Repeated headers reach the app joined with commas, as WSGI servers join them.
    return ", ".join(one() for _ in range(draw(st.integers(min_value=1, max_value=3))))


def is_exact_valid(header: str) -> bool:
    # RFC 6750: "Bearer" (case-insensitive), one or more spaces, the token, nothing else.
    return re.fullmatch(r"(?i:bearer) +" + re.escape(_token()), header) is not None


@FUZZ
@given(authorization_headers())
def test_any_authorization_header_gets_400_or_401_or_200_only_when_exactly_valid(
    header: str,
) -> None:
    target, _ = api()
    response = target.client.get("/orders", environ_overrides={"HTTP_AUTHORIZATION": header})
    if is_exact_valid(header):
        assert response.status_code == 200
    else:
        assert response.status_code in (400, 401), (header[:200], response.status_code)


@FUZZ
@given(
    path=latin1.map(lambda p: "/" + p),
    query=latin1,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "BREW"]),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "HTTP_X_REQUEST_ID",
                "HTTP_USER_AGENT",
                "HTTP_ORIGIN",
                "CONTENT_TYPE",
                "CONTENT_LENGTH",
                "HTTP_TRANSFER_ENCODING",
                "HTTP_X_FORWARDED_FOR",
                "HTTP_X_FORWARDED_PROTO",
                "HTTP_ACCESS_CONTROL_REQUEST_METHOD",
            ]
        ),
        st.one_of(latin1, raw_bytes, huge, st.sampled_from(["-1", "99999999999999999999", "0"])),
    ),
    authenticated=st.booleans(),
)
def test_odd_request_parts_never_crash_and_never_skip_authentication(
    path: str, query: str, method: str, extra: dict[str, str], authenticated: bool
) -> None:
    target, token = api()
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method, **extra}
    if authenticated:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    response = target.client.open(environ_overrides=environ, data=b"")
    assert response.status_code < 500, (environ, response.status_code)
    if not authenticated and response.status_code < 400:
        assert path == "/health" or (method == "OPTIONS" and response.status_code == 204)
