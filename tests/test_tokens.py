from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import TokenCodec
from guard.keys.tokens import BadToken
from stores import KeyRecord
from tests.conftest import PEPPER, SECRET

CODEC = TokenCodec([SECRET], [PEPPER])
TOKEN = CODEC.issue("0123456789abcdef").token
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
ALPHABET = string.ascii_letters + string.digits + "-_.~+/=" + "\x00\t é"


def test_token_carries_prefix_and_key_id() -> None:
    issued = CODEC.issue("0123456789abcdef")
    assert issued.token.startswith("gk_0123456789abcdef.")
    assert CODEC.open(issued.token)[0] == "0123456789abcdef"


def test_secret_has_256_bits_and_only_its_digest_is_kept() -> None:
    issued = CODEC.issue("0123456789abcdef")
    _, secret = CODEC.open(issued.token)
    assert len(secret) == 43  # base64 of 32 random bytes
    assert secret not in issued.digest
    assert (issued.digest, issued.pepper_id) == CODEC.digest(secret)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_issued_token_opens(number: int) -> None:
    key_id = f"{number:016x}"
    issued = CODEC.issue(key_id)
    _, secret = CODEC.open(issued.token)
    assert CODEC.matches(_record(issued.digest, issued.pepper_id), secret)


@st.composite
def mutations(draw: st.DrawFn) -> str:
    position = draw(st.integers(min_value=0, max_value=len(TOKEN)))
    kind = draw(st.sampled_from(["flip", "drop", "add"]))
    char = draw(st.sampled_from(ALPHABET))
    if kind == "add":
        return TOKEN[:position] + char + TOKEN[position:]
    position = min(position, len(TOKEN) - 1)
    if kind == "drop":
        return TOKEN[:position] + TOKEN[position + 1 :]
    replacement = draw(st.sampled_from(ALPHABET.replace(TOKEN[position], "")))
    return TOKEN[:position] + replacement + TOKEN[position + 1 :]


@settings(max_examples=2000)
@given(mutations())
def test_every_mutated_token_is_refused(token: str) -> None:
    with pytest.raises(BadToken):
        CODEC.open(token)


def test_base64_padding_bits_cannot_give_a_second_spelling() -> None:
    # The last character's two low bits are dropped when decoding a 32-byte value, so
    # the next letter of the alphabet decodes to the same signature bytes.
    twin = TOKEN[:-1] + BASE64URL[BASE64URL.index(TOKEN[-1]) + 1]
    with pytest.raises(BadToken, match="malformed"):
        CODEC.open(twin)


def test_forged_signature_is_bad_signature() -> None:
    other = TokenCodec(["o" * 32], [PEPPER]).issue("0123456789abcdef").token
    with pytest.raises(BadToken, match="bad_signature"):
        CODEC.open(other)


@pytest.mark.parametrize("token", ["", "gk_", "x" * 100_000, TOKEN.upper(), "ghp_" + TOKEN[3:]])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadToken, match="malformed"):
        CODEC.open(token)


def test_rotated_signing_secret_still_verifies_and_newest_signs() -> None:
    old = TokenCodec(["o" * 32], [PEPPER])
    rotated = TokenCodec(["o" * 32, "n" * 32], [PEPPER])
    newest_only = TokenCodec(["n" * 32], [PEPPER])
    old_token = old.issue("0123456789abcdef").token
    assert rotated.open(old_token)[0] == "0123456789abcdef"
    assert newest_only.open(rotated.issue("0123456789abcdef").token)
    with pytest.raises(BadToken):
        newest_only.open(old_token)


def test_rotated_pepper_still_matches_old_digests() -> None:
    old = TokenCodec([SECRET], ["o" * 32])
    rotated = TokenCodec([SECRET], ["o" * 32, "n" * 32])
    digest, pepper_id = old.digest("legacy-secret")
    assert rotated.matches(_record(digest, pepper_id), "legacy-secret")
    assert rotated.digest("legacy-secret")[1] != pepper_id  # new digests use the newest
    assert digest in rotated.digests("legacy-secret")


def test_unknown_pepper_never_matches() -> None:
    digest, _ = CODEC.digest("s")
    assert not CODEC.matches(_record(digest, "gone"), "s")


def _record(digest: str, pepper_id: str) -> KeyRecord:
    return KeyRecord(key_id="k", name="n", digest=digest, pepper_id=pepper_id, created_at=0)
