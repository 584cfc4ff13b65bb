"""The address allowlist stage: a key whose record holds ``allow_from`` networks is
refused (403 ``address_not_allowed``) from any other address.

It runs after the key verifies and before its limits: a request from elsewhere spends
nothing (no rate-limit hit, no quota), so a leaked token used from outside cannot even
exhaust its owner's limits. The address is the one the guard judges every client by:
``REMOTE_ADDR``, which ``GUARD_TRUSTED_PROXIES`` (werkzeug's ``ProxyFix``) sets from
``X-Forwarded-For`` behind that many trusted proxies, and never otherwise, so a client
cannot claim an allowed address by sending the header itself.
"""

from __future__ import annotations

import functools
import ipaddress

from guard._request.state import RequestState, refuse
from guard.errors import AddressNotAllowed
from stores import KeyRecord

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=1024)
def networks(allow_from: tuple[str, ...]) -> tuple[Network, ...]:
    """A record's ``allow_from`` as networks, parsed once per distinct list (the record
    checked each entry when it was built, so this cannot fail)."""
    return tuple(ipaddress.ip_network(text) for text in allow_from)


def allowed(allow_from: tuple[str, ...], address: str) -> bool:
    """Whether ``address`` is in one of the ``allow_from`` networks (an empty list allows
    every address). An address that cannot be read is in none: refused, not let through.
    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, as a dual-stack socket reports an
    IPv4 client) is judged as the IPv4 address it is."""
    if not allow_from:
        return True
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # ``in`` is False across versions, never an error.
    return any(ip in network for network in networks(allow_from))


def check_address(state: RequestState, record: KeyRecord, address: str) -> None:
    """Refuse (403 ``address_not_allowed``) a request from outside ``record``'s networks."""
    if record.allow_from and not allowed(record.allow_from, address):
        refuse(state, AddressNotAllowed, "address_not_allowed")
