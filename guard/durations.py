"""Durations as operators type them: ``90d``, ``24h``, ``1h30m``, ``45s``, ``2w``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``.

    :raises ValueError: for anything but one or more ``<number><unit>`` parts.
    """
    cleaned = text.strip().lower()
    if not cleaned or _PART.sub("", cleaned):
        raise ValueError(f"{text!r} is not a duration: use e.g. 90d, 24h, 1h30m, 45s")
    return float(sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned)))
