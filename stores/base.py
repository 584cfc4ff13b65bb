"""The key record and the interface every credential store implements.

A store sees key ids and keyed digests, never a token or a secret: whatever leaks from a
store (a Redis dump, an ``.env`` file) cannot be replayed against the API.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple, TypeVar

from . import registry
from .errors import Conflict, InvalidRecord, KeyNotFound, OwnersUnsupported

#: How a quota refills: every day or every 30 days from when it was set, or on the first
#: of each month (UTC). A quota with no refill is spent once, over the key's life.
REFILLS = ("1d", "30d", "monthly")


@dataclasses.dataclass(frozen=True)
class Quota:
    """A usage allowance: ``allowance`` units per refill period (a request spends its
    view's cost), or over the key's life when ``refill`` is ``None``.

    Security property: the count is named by ``counter`` and ``since``, both stored with
    the record, so every worker and host spends from the same count, and a rotation (which
    copies the quota) never hands the successor a fresh allowance. Setting the quota again
    (a top-up) writes a new ``since``: the count starts afresh from that moment.
    """

    allowance: int
    refill: str | None = None
    #: When the allowance was set (seconds since the epoch): a ``1d`` or ``30d`` period
    #: starts here and every period length after.
    since: float = 0.0
    #: Names the count: the key id (or owner name) the quota was first set on.
    counter: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allowance": self.allowance, "since": self.since}
        out["counter"] = self.counter
        if self.refill is not None:
            out["refill"] = self.refill
        return out

    @classmethod
    def from_dict(cls, data: object) -> Quota:
        """:raises InvalidRecord: unless ``data`` is what :meth:`to_dict` writes."""
        if not isinstance(data, Mapping) or not _is_quota(data):
            raise InvalidRecord(f"field 'quota' has an invalid value: {_QUOTA}")
        return cls(data["allowance"], data.get("refill"), data["since"], data["counter"])


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    """What a store holds for one key.

    ``digest`` is HMAC-SHA256 of the secret under the pepper named by ``pepper_id``; the
    secret itself is never stored. Times are seconds since the epoch (UTC).
    """

    key_id: str
    name: str
    digest: str
    pepper_id: str
    created_at: float
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    revoked_at: float | None = None
    rate_limit: str | None = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Rotation: the key this one replaces, the key that replaces this one, and until
    #: when this (old) key stays valid after being replaced.
    replaces: str | None = None
    replaced_by: str | None = None
    grace_until: float | None = None
    #: A legacy secret imported as it was: it carries no id or signature and can only be
    #: found by its digest.
    imported: bool = False
    #: Turned off by an operator (``guard keys disable``): refused until enabled again,
    #: with everything else kept. Absent from records written before it existed.
    disabled: bool = False
    #: The networks (CIDR, such as ``10.0.0.0/8`` or ``2001:db8::/32``) a request with
    #: this key may come from; empty, from anywhere. Absent from records written before
    #: it existed, which are thereby usable from anywhere, as they were.
    allow_from: tuple[str, ...] = ()
    #: A usage quota on top of the rate limits (``None``: none). Absent from records
    #: written before it existed.
    quota: Quota | None = None
    #: Who the key belongs to (a team, a service, a customer): the owner's limits and
    #: quota, if it has any (:class:`OwnerRecord`), are shared by all of its keys.
    owner: str | None = None

    def refusal(self, now: float) -> str | None:
        """Why this key is refused at ``now`` (``revoked``, ``expired``, ``rotated``,
        ``disabled``), or ``None`` if it is valid.

        A revocation is a state, not a schedule: a revoked key is refused whatever
        ``revoked_at`` says, since that time is the revoking host's clock, which may be
        ahead of this one. Expiry and the end of a grace period are schedules, judged
        against ``now``.
        """
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.grace_until is not None and self.grace_until <= now:
            return "rotated"
        # Last: ``disabled`` names a key that enabling would make valid again, so a key
        # that is also expired or rotated out says that instead.
        if self.disabled:
            return "disabled"
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, leaving out fields at their defaults."""
        out: dict[str, Any] = {}
        for name, (field, _, _) in _FIELDS.items():
            value = getattr(self, field.name)
            if value != _default(field):
                out[name] = _stored(field.name, value)
        return out

    def __post_init__(self) -> None:
        """Check every field by the rules :meth:`from_dict` reads with, so a record that a
        store's reader would refuse cannot be built, let alone saved: whatever the guard
        writes, on any path and in any store, reads back.

        :raises InvalidRecord: naming the first field that is wrong and its rule.
        """
        for name, (field, check, rule) in _FIELDS.items():
            value = getattr(self, field.name)
            if field.name in _LISTS and not isinstance(value, tuple):
                value = None
            elif field.name == "quota" and not isinstance(value, Quota | None):
                value = False
            else:
                # Held as a tuple or a Quota, stored as JSON: checked in its stored form.
                value = _stored(field.name, value)
            if not check(value):
                raise InvalidRecord(f"field {name!r} has an invalid value: {rule}")

    @classmethod
    def from_dict(cls, data: object) -> KeyRecord:
        """Parse :meth:`to_dict` output, checking every type (in :meth:`__post_init__`).

        :raises InvalidRecord: naming the first field that is missing or wrong.
        """
        if not isinstance(data, Mapping):
            raise InvalidRecord("a key record must be a JSON object")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise InvalidRecord(f"unknown field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, (field, _, _) in _FIELDS.items():
            if name not in data:
                if _default(field) is _REQUIRED:
                    raise InvalidRecord(f"missing field {name!r}")
                continue
            value = data[name]
            if field.name in _LISTS and isinstance(value, list):
                value = tuple(value)
            elif field.name == "quota" and value is not None:
                value = Quota.from_dict(value)
            values[field.name] = value
        return cls(**values)


def _stored(field: str, value: Any) -> Any:
    """``value`` of ``field`` in its JSON form."""
    if field in _LISTS:
        return list(value)
    if field == "quota" and value is not None:
        return value.to_dict()
    return value


_REQUIRED = object()
#: The fields held as tuples and stored as JSON lists.
_LISTS = frozenset({"scopes", "allow_from"})


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _REQUIRED


def _is_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable()


_DIGEST = re.compile(r"[0-9a-f]{64}")


def _is_digest(value: object) -> bool:
    # Exactly what TokenCodec writes (HMAC-SHA256, lowercase hex): anything else could
    # never match, and non-ASCII text would make hmac.compare_digest raise mid-request.
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _optional(check: Any) -> Any:
    return lambda value: value is None or check(value)


def _is_flag(value: object) -> bool:
    return isinstance(value, bool)


def _is_texts(value: object) -> bool:
    return isinstance(value, list) and all(_is_text(item) for item in value)


def _is_network(value: object) -> bool:
    # strict: a network with host bits set ("10.0.0.1/8") is a typo as often as not, and
    # the reader must refuse what the writer would: an address the operator did not mean.
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def _is_networks(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_NETWORKS
        and all(_is_network(item) for item in value)
    )


def _is_metadata(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        _is_text(k) and isinstance(v, str) and len(v) <= 1024 for k, v in value.items()
    )


#: Networks one key's allowlist may hold: checked on every request, one by one.
MAX_NETWORKS = 64


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53


def _is_quota(value: object) -> bool:
    if not isinstance(value, Mapping) or not {"allowance", "since", "counter"} <= set(value):
        return False
    return (
        set(value) <= {"allowance", "refill", "since", "counter"}
        and _is_count(value["allowance"])
        and value.get("refill") in (None, *REFILLS)
        and _is_time(value["since"])
        and _is_text(value["counter"])
    )


_OWNER_NAME = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


def _is_owner_name(value: object) -> bool:
    # Plain: an owner's name is a Redis key, a pub/sub word and a metrics label value.
    return isinstance(value, str) and _OWNER_NAME.fullmatch(value) is not None


_OWNER_RULE = "1 to 128 letters, digits or . _ : @ -"
_TEXT = "1 to 256 printable characters"
_TIME = "seconds since the epoch, not negative"
_QUOTA = (
    "absent, or an allowance (a whole number, at least 1), a refill (absent, or one of "
    f"{', '.join(REFILLS)}), since ({_TIME}) and a counter ({_TEXT})"
)
_OPTIONAL_TIME = f"absent, or {_TIME}"
# Field -> (serialized name, check, the rule in words for the error).
_CHECKS = {
    "key_id": ("id", _is_text, _TEXT),
    "name": ("name", _is_text, f"a name is {_TEXT}"),
    "digest": ("digest", _is_digest, "64 lowercase hexadecimal digits"),
    "pepper_id": ("pepper", _is_text, _TEXT),
    "created_at": ("created", _is_time, _TIME),
    "scopes": ("scopes", _is_texts, f"each scope is {_TEXT}"),
    "expires_at": ("expires", _optional(_is_time), _OPTIONAL_TIME),
    "revoked_at": ("revoked", _optional(_is_time), _OPTIONAL_TIME),
    "rate_limit": ("rate_limit", _optional(_is_text), f"absent, or {_TEXT}"),
    "metadata": (
        "metadata",
        _is_metadata,
        f"each metadata key is {_TEXT}, each value at most 1,024 characters",
    ),
    "replaces": ("replaces", _optional(_is_text), f"absent, or {_TEXT}"),
    "replaced_by": ("replaced_by", _optional(_is_text), f"absent, or {_TEXT}"),
    "grace_until": ("grace_until", _optional(_is_time), _OPTIONAL_TIME),
    "imported": ("imported", _is_flag, "true or false"),
    "disabled": ("disabled", _is_flag, "true or false"),
    "allow_from": (
        "allow_from",
        _is_networks,
        f"at most {MAX_NETWORKS} IPv4 or IPv6 networks such as 10.0.0.0/8, without host bits",
    ),
    "quota": ("quota", _optional(_is_quota), _QUOTA),
    "owner": ("owner", _optional(_is_owner_name), f"absent, or {_OWNER_RULE}"),
}
# Serialized name -> (dataclass field, type check, rule).
_FIELDS = {
    name: (field, check, rule)
    for field in dataclasses.fields(KeyRecord)
    for name, check, rule in [_CHECKS[field.name]]
}


@dataclasses.dataclass(frozen=True)
class OwnerRecord:
    """An owner's own limits and quota, shared by every key naming it (``owner``), on top
    of each key's own: a client who mints more keys gets no more.

    Security property: built only with values every reader takes back (checked here, so
    a bad one is never saved).

    :raises InvalidRecord: naming the field that is wrong.
    """

    name: str
    #: Limits as a key's (``1000/minute;50000/day``); ``None``: none of the owner's own.
    rate_limit: str | None = None
    quota: Quota | None = None

    def __post_init__(self) -> None:
        if not _is_owner_name(self.name):
            raise InvalidRecord(f"field 'name' has an invalid value: {_OWNER_RULE}")
        if not (self.rate_limit is None or _is_text(self.rate_limit)):
            raise InvalidRecord(f"field 'rate_limit' has an invalid value: absent, or {_TEXT}")
        if not (
            self.quota is None
            or (isinstance(self.quota, Quota) and _is_quota(self.quota.to_dict()))
        ):
            raise InvalidRecord(f"field 'quota' has an invalid value: {_QUOTA}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.rate_limit is not None:
            out["rate_limit"] = self.rate_limit
        if self.quota is not None:
            out["quota"] = self.quota.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: object) -> OwnerRecord:
        """:raises InvalidRecord: unless ``data`` is what :meth:`to_dict` writes."""
        if not isinstance(data, Mapping) or not set(data) <= {"name", "rate_limit", "quota"}:
            raise InvalidRecord("an owner record is an object of name, rate_limit and quota")
        quota = data.get("quota")
        # Each value is checked by __post_init__.
        return cls(
            data.get("name", ""),
            data.get("rate_limit"),
            None if quota is None else Quota.from_dict(quota),
        )


Record = TypeVar("Record", KeyRecord, "OwnerRecord")


def parse_stored(kind: type[Record], raw: str, store: str, what: str) -> Record:
    """The record ``raw`` (its JSON, as a store holds it) is, read by ``kind.from_dict``.

    :raises InvalidRecord: naming the ``store`` and ``what`` (``key 'ID'``, ``owner
        'NAME'``): one bad record refuses its own key (or its owner's keys), never the
        whole store.
    """
    try:
        return kind.from_dict(json.loads(raw))
    except (ValueError, InvalidRecord) as exc:
        raise InvalidRecord(f"{store}: unreadable record for {what}: {exc}") from exc


class Listing(NamedTuple):
    """What :meth:`KeyStore.listing` found: the records read, the records refused."""

    records: list[KeyRecord]
    unreadable: list[InvalidRecord]


class KeyStore(abc.ABC):
    """A credential store: key records by id, and imported keys by digest.

    Every method raises :class:`~stores.StoreUnavailable` when the backend cannot answer,
    never returns a guess. Subclasses implement the four abstract methods.
    """

    #: URL schemes this store is built from by :func:`stores.from_url`: a subclass that
    #: declares them is registered for them (:mod:`stores.registry`).
    schemes: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`save` is refused at run time.
    read_only: ClassVar[bool] = False
    #: Whether what is saved outlives the process that saved it (``memory://`` does not).
    persistent: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "schemes" in cls.__dict__:
            registry.register(cls, cls.schemes)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KeyStore:
        """The store ``url`` names (its scheme is one of :attr:`schemes`).

        :param options: the guard's store settings (``prefix``, ``timeout``,
            ``cache_ttl``); a store takes those it has a use for. This one takes none.
        :raises InvalidStoreURL: for a URL the store cannot use.
        """
        # The in-process stores take the URL alone; a store with settings overrides this.
        return cls(url)  # type: ignore[call-arg]

    @abc.abstractmethod
    def get(self, key_id: str) -> KeyRecord | None:
        """The record for ``key_id``, or ``None`` if there is none."""

    @abc.abstractmethod
    def find_digest(self, digest: str) -> KeyRecord | None:
        """The imported key whose digest is ``digest``, or ``None``."""

    @abc.abstractmethod
    def records(self) -> list[KeyRecord]:
        """Every record, in no particular order."""

    def listing(self) -> Listing:
        """Every record that can be read, and the error for each that cannot: for an
        operator's view, where one unreadable record must hide none of the others (the
        request path reads records one at a time, and refuses an unreadable one alone).

        This default is :meth:`records`, with nothing unreadable: right for a store
        whose records are all checked when it is built.
        """
        return Listing(self.records(), [])

    @abc.abstractmethod
    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        """Store ``records`` (new, or replacing same-id ones) all at once or not at all,
        so a rotation is never left half written.

        :param expected: key id -> the record read before deciding the change (``None``:
            there was no such key). The write is then a compare-and-set: if any stored
            record differs, nothing is written. Every lifecycle operation passes it, so a
            change made in between (a revocation during a rotation) is never overwritten.
        :raises Conflict: if a stored record is not the expected one.
        :raises ReadOnlyStore: if the store cannot be written at run time.
        """

    # -- owners: a store that keeps them overrides all four ---------------------------

    def get_owner(self, name: str) -> OwnerRecord | None:
        """The owner ``name``'s record, or ``None`` if it has none (its keys then share
        no limits: an owner with nothing set is only a label).

        :raises OwnersUnsupported: this default, for a store that keeps no owners.
        """
        raise OwnersUnsupported(type(self).__name__)

    def owners(self) -> list[OwnerRecord]:
        """Every owner record, in no particular order."""
        raise OwnersUnsupported(type(self).__name__)

    def save_owner(self, owner: OwnerRecord) -> None:
        """Store ``owner`` (new, or replacing the same name's), telling every process
        that caches it, as :meth:`save` does for keys.

        :raises ReadOnlyStore: if the store cannot be written at run time.
        """
        raise OwnersUnsupported(type(self).__name__)

    def delete_owner(self, name: str) -> bool:
        """Remove ``name``'s record (its keys keep naming it); whether there was one."""
        raise OwnersUnsupported(type(self).__name__)

    def touch(self, used: Mapping[str, float]) -> None:
        """Record when keys were last used (``key_id -> time``), keeping the latest.

        Called in batches, off the request path. Read-only stores keep it in process.
        """
        for key_id, when in used.items():
            self._last_used[key_id] = max(when, self._last_used.get(key_id, when))

    def last_used(self, key_id: str) -> float | None:
        """When ``key_id`` was last used, as far as this store knows."""
        return self._last_used.get(key_id)

    @functools.cached_property
    def _last_used(self) -> dict[str, float]:
        return {}

    def require(self, key_id: str) -> KeyRecord:
        """The record for ``key_id``.

        :raises KeyNotFound: if there is none.
        """
        record = self.get(key_id)
        if record is None:
            raise KeyNotFound(key_id)
        return record

    def check(self) -> None:
        """Probe the backend; raises :class:`~stores.StoreUnavailable` if it is down."""

    def close(self) -> None:
        """Release connections and threads; the store is not used afterwards."""


class InProcessStore(KeyStore):
    """A store whose records live in this process (``memory://``, ``env://``)."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self._hold(records)

    def _hold(self, records: Iterable[KeyRecord]) -> None:
        by_id = {record.key_id: record for record in records}
        self._records, self._imported = by_id, {r.digest: r for r in by_id.values() if r.imported}

    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def find_digest(self, digest: str) -> KeyRecord | None:
        return self._imported.get(digest)

    def records(self) -> list[KeyRecord]:
        return list(self._records.values())

    def get_owner(self, name: str) -> OwnerRecord | None:
        return self._owners.get(name)

    def owners(self) -> list[OwnerRecord]:
        return list(self._owners.values())

    @functools.cached_property
    def _owners(self) -> dict[str, OwnerRecord]:
        return {}


def check_expected(
    current: Mapping[str, KeyRecord], expected: Mapping[str, KeyRecord | None] | None
) -> None:
    """The compare of a compare-and-set on records held in this process.

    :raises Conflict: naming every key whose record is not the expected one.
    """
    expected = expected or {}
    changed = [key_id for key_id, record in expected.items() if current.get(key_id) != record]
    if changed:
        raise Conflict(sorted(changed))
