"""Where circuit breakers and rate limits keep their state.

A :class:`SharedState` holds small JSON-able values under string keys
(``breaker:<provider>[:<model>]``, ``limit:<provider>``) and per-minute counters. Breakers
and limiters change their value through :meth:`SharedState.update` with a pure function,
so the same code runs on one process's memory (:class:`MemoryState`, the default) and on a
database that every worker shares (supplied by the engine): whatever one worker learns
about an outage, the others know at their next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")

#: The counters' bucket width: one minute.
BUCKET_S = 60.0


def bucket_start(now: float) -> float:
    """The start of the one-minute bucket holding ``now`` (seconds since the epoch)."""
    return (now // BUCKET_S) * BUCKET_S


@runtime_checkable
class SharedState(Protocol):
    """Where providers keep breaker and rate-limit state: one process (MemoryState), or a
    database shared by every worker (the engine supplies one)."""

    async def update(self, key: str, change: Callable[[Any | None], tuple[Any | None, T]]) -> T:
        """Atomically: read the JSON-able value under ``key`` (None if absent), call
        ``change(value) -> (new_value, result)``, store ``new_value`` (None deletes it),
        return ``result``. ``change`` is pure and may be called more than once."""
        ...

    async def read(self, prefix: str) -> dict[str, Any]:
        """Every value whose key starts with ``prefix``."""
        ...

    async def count(self, counts: Mapping[tuple[str, str, str], int], now: float) -> None:
        """Add to counters keyed (provider, kind, name) — name e.g. "attempts", "retries",
        "give_ups", "breaker_opened", "fallbacks", "saved_by_breaker" — in the one-minute
        bucket holding ``now`` (kind "" when not per failure kind)."""
        ...

    async def counts(self, since: float | None = None) -> dict[tuple[str, str, str], int]:
        """Counter totals over buckets starting at or after ``since`` (all when None)."""
        ...


class MemoryState:
    """One process's shared state: a dict behind a lock, costing microseconds a call.

    Values are kept as given, not copied: callers treat them as immutable (the breaker and
    limiter functions build new values rather than change old ones). Counter buckets older
    than ``keep_s`` (a day by default) are dropped as new ones are added, so a long-lived
    process does not grow without bound.
    """

    def __init__(self, *, keep_s: float = 86_400.0) -> None:
        if keep_s <= 0:
            raise ValueError(f"MemoryState keep_s must be positive, got {keep_s!r}")
        self._keep_s = keep_s
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._buckets: dict[float, dict[tuple[str, str, str], int]] = {}

    async def update(self, key: str, change: Callable[[Any | None], tuple[Any | None, T]]) -> T:
        """Apply ``change`` to the value under ``key`` atomically; see :class:`SharedState`."""
        with self._lock:
            new_value, result = change(self._values.get(key))
            if new_value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = new_value
        return result

    async def read(self, prefix: str) -> dict[str, Any]:
        """Every value whose key starts with ``prefix``."""
        with self._lock:
            return {k: v for k, v in self._values.items() if k.startswith(prefix)}

    async def count(self, counts: Mapping[tuple[str, str, str], int], now: float) -> None:
        """Add ``counts`` to the one-minute bucket holding ``now``."""
        if not counts:
            return
        start = bucket_start(now)
        with self._lock:
            bucket = self._buckets.get(start)
            if bucket is None:
                bucket = self._buckets[start] = {}
                horizon = start - self._keep_s
                for old in [b for b in self._buckets if b < horizon]:
                    del self._buckets[old]
            for key, n in counts.items():
                bucket[key] = bucket.get(key, 0) + n

    async def counts(self, since: float | None = None) -> dict[tuple[str, str, str], int]:
        """Counter totals over buckets starting at or after ``since`` (all when None)."""
        totals: dict[tuple[str, str, str], int] = {}
        with self._lock:
            for start, bucket in self._buckets.items():
                if since is not None and start < since:
                    continue
                for key, n in bucket.items():
                    totals[key] = totals.get(key, 0) + n
        return totals
