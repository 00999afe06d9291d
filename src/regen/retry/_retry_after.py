"""Reading a server's requested wait from ``Retry-After`` and ``retry-after-ms``."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Any


def header(headers: Any, name: str) -> str | None:
    """A header's value from any mapping-like headers object, matched case-insensitively."""
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == lowered:
                return str(item)
    return None if value is None else str(value)


def parse_retry_after(headers: Any, now: float) -> float | None:
    """Seconds the server asked to wait, or ``None`` when it did not say (or said nonsense).

    ``retry-after-ms`` wins over ``retry-after``; the latter may be seconds or an HTTP date,
    which is read against ``now`` (wall-clock seconds since the epoch).
    """
    millis = header(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - now)
    return seconds if seconds >= 0 else None
