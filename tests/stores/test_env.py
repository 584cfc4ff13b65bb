from __future__ import annotations

from collections.abc import Sequence

import pytest

from stores import EnvStore, InvalidRecord, InvalidStoreURL, KeyRecord, from_url
from stores.env import parse_records, render_records
from stores.testing import ALICE, MakeStore, ReadOnlyStoreContract


class TestEnvStore(ReadOnlyStoreContract):
    @pytest.fixture
    def make_store(self, monkeypatch: pytest.MonkeyPatch) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> EnvStore:
            monkeypatch.setenv("API_KEYS", render_records(records))
            store = from_url("env://API_KEYS")
            assert isinstance(store, EnvStore)
            return store

        return make


def test_bare_env_url_reads_guard_keys() -> None:
    store = EnvStore("env://", environ={"GUARD_KEYS": render_records([ALICE])})
    assert store.variable == "GUARD_KEYS"
    assert store.get(ALICE.key_id) == ALICE


def test_missing_variable_is_an_empty_store() -> None:
    assert EnvStore("env://NOPE", environ={}).records() == []


def test_malformed_entry_is_a_startup_error_naming_the_entry() -> None:
    good = ALICE.to_dict()
    bad = {**ALICE.to_dict(), "id": "1111111111111111", "created": "yesterday"}
    text = render_records([ALICE]).replace("}]", "}," + str(bad).replace("'", '"') + "]")
    assert len(parse_records(render_records([ALICE]), "X")) == 1
    with pytest.raises(InvalidRecord) as info:
        EnvStore("env://KEYS", environ={"KEYS": text})
    message = str(info.value)
    assert "KEYS entry 2 (id '1111111111111111')" in message
    assert "'created'" in message
    assert good["digest"] not in message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ('{"id": "x"}', "JSON array"),
        ('[{"id": "x"}]', "missing field"),
        ('["x"]', "JSON object"),
        (render_records([ALICE, ALICE]), "duplicate key id"),
        ('[{"id":"x","name":"n","digest":"d","pepper":"p","created":1,"extra":1}]', "unknown"),
    ],
)
def test_bad_variable_contents_are_refused_clearly(text: str, complaint: str) -> None:
    with pytest.raises(InvalidRecord, match=complaint):
        EnvStore("env://KEYS", environ={"KEYS": text})


def test_bad_variable_name_is_an_invalid_url() -> None:
    with pytest.raises(InvalidStoreURL):
        from_url("env://not-a-name")


@pytest.mark.parametrize("digest", ["z" * 64, "é" * 64, "A" * 64, "a" * 65])
def test_a_malformed_digest_stops_start_up_naming_the_variable(digest: str) -> None:
    text = render_records([ALICE]).replace(ALICE.digest, digest)
    with pytest.raises(InvalidRecord) as info:
        EnvStore("env://API_KEYS", environ={"API_KEYS": text})
    assert "API_KEYS entry 1 (id '0123456789abcdef'): field 'digest'" in str(info.value)
