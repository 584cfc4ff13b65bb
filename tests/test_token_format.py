"""The token format is a contract with every token already issued: its signature is
itsdangerous' HMAC-SHA256 under a fixed salt, its digest's pepper id a fixed derivation,
and its length bounded before anything is parsed."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from itsdangerous import Signer

from guard import TokenCodec
from guard.keys.tokens import MAX_TOKEN_LENGTH, SALT, BadToken
from stores import KeyRecord
from tests.conftest import PEPPER, SECRET

KEY_ID = "0123456789abcdef"


def record(digest: str, pepper_id: str) -> KeyRecord:
    return KeyRecord(key_id=KEY_ID, name="n", digest=digest, pepper_id=pepper_id, created_at=0)


def test_a_token_signed_as_documented_opens_and_an_issued_one_verifies_as_documented() -> None:
    signer = Signer(SECRET, salt=SALT, key_derivation="hmac", digest_method=hashlib.sha256)
    secret = "A" * 43
    codec = TokenCodec([SECRET], [PEPPER])
    assert codec.open("gk_" + signer.sign(f"{KEY_ID}.{secret}").decode()) == (KEY_ID, secret)
    issued = codec.issue(KEY_ID).token
    assert signer.validate(issued.removeprefix("gk_"))


def test_secrets_and_peppers_given_as_bytes_work_as_the_same_text() -> None:
    text = TokenCodec([SECRET], [PEPPER])
    raw = TokenCodec([SECRET.encode()], [PEPPER.encode()])
    issued = text.issue(KEY_ID)
    _, secret = raw.open(issued.token)
    assert raw.digest(secret) == (issued.digest, issued.pepper_id)


def test_the_pepper_id_is_the_first_four_bytes_of_an_hmac_of_a_fixed_label() -> None:
    # Stored records name their pepper by this id: changing it orphans every digest.
    expected = hmac.digest(PEPPER.encode(), b"guard.pepper-id", hashlib.sha256)[:4].hex()
    assert TokenCodec([SECRET], [PEPPER]).digest("s")[1] == expected


@pytest.mark.parametrize(("secret_keys", "peppers"), [([], [PEPPER]), ([SECRET], []), ([], [])])
def test_a_codec_needs_a_secret_key_and_a_pepper(
    secret_keys: list[str], peppers: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        TokenCodec(secret_keys, peppers)
    assert str(info.value) == "at least one secret key and one pepper are required"


def test_a_token_one_character_past_the_length_bound_is_refused_unread() -> None:
    # A prefix long enough puts the codec's own, well-formed tokens at the bound.
    fits = TokenCodec([SECRET], [PEPPER], prefix="p" * (MAX_TOKEN_LENGTH - 104))
    token = fits.issue(KEY_ID).token
    assert len(token) == MAX_TOKEN_LENGTH and fits.open(token)[0] == KEY_ID
    too_long = TokenCodec([SECRET], [PEPPER], prefix="p" * (MAX_TOKEN_LENGTH - 103))
    token = too_long.issue(KEY_ID).token
    assert len(token) == MAX_TOKEN_LENGTH + 1
    with pytest.raises(BadToken, match="malformed"):
        too_long.open(token)


@pytest.mark.parametrize("pepper", ["", "XXXX", "o" * 32])
def test_a_record_naming_a_pepper_the_server_lacks_never_matches(pepper: str) -> None:
    # Whatever pepper made the digest, an unknown pepper id fails closed.
    made_elsewhere = hmac.digest(pepper.encode(), b"s", hashlib.sha256).hex()
    assert not TokenCodec([SECRET], [PEPPER]).matches(record(made_elsewhere, "gone"), "s")
