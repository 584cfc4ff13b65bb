"""Reading the ``Authorization`` header (RFC 6750, section 2.1): what is a Bearer token,
what is no credentials at all, and what is a malformed Bearer header."""

from __future__ import annotations

import pytest

from guard._request.auth import (
    MAX_HEADER_LENGTH,
    MalformedCredentials,
    MissingCredentials,
    bearer_token,
)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("bEaReR abc", "abc"),
        ("Bearer    abc", "abc"),
        ("Bearer A-Za-z0-9._~+/", "A-Za-z0-9._~+/"),
        ("Bearer abc==", "abc=="),
    ],
)
def test_a_bearer_header_gives_its_b64token(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", " ", "\t"])
def test_no_header_or_an_empty_one_is_no_credentials(header: str | None) -> None:
    with pytest.raises(MissingCredentials) as raised:
        bearer_token(header)
    assert str(raised.value) == "no_credentials"


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Token abc", "Bearerabc", "abc"])
def test_another_scheme_is_no_credentials(header: str) -> None:
    with pytest.raises(MissingCredentials) as raised:
        bearer_token(header)
    assert str(raised.value) == "unsupported_scheme"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "bearer ",
        "BEARER  ",
        "Bearer abc def",
        "Bearer abc ",
        "Bearer  abc\t",
        "Bearer a=b",
        "Bearer =",
        "Bearer a@b",
        "Bearer a!b",
        "Bearer\tabc",
        "Bearer abc,",
        "bearer ä",
    ],
)
def test_a_bearer_header_that_cannot_be_read_is_malformed(header: str) -> None:
    with pytest.raises(MalformedCredentials) as raised:
        bearer_token(header)
    assert str(raised.value) == "malformed_bearer"


def test_a_header_of_4096_characters_is_read() -> None:
    header = "Bearer " + "a" * (4096 - len("Bearer "))
    assert MAX_HEADER_LENGTH == 4096
    assert bearer_token(header) == header[len("Bearer ") :]


@pytest.mark.parametrize("scheme", ["Bearer ", "Basic "])
def test_a_longer_header_is_refused_before_it_is_parsed(scheme: str) -> None:
    header = scheme + "a" * (4097 - len(scheme))
    with pytest.raises(MalformedCredentials) as raised:
        bearer_token(header)
    assert str(raised.value) == "header_too_long"
