"""Provider state every worker shares: :class:`StoreState`, a
:class:`regen.providers.SharedState` kept in the engine's store.

Breakers and rate limits read and change their values through the store's atomic
read-modify-write, so what one worker learns about a provider (an outage, a 429) holds
for every run in every process using that database. Counters (attempts, retries, calls
saved...) are added in memory and written in batches: a provider call costs a dict update,
not a transaction; a batch is written at most every ``flush_every`` seconds by the call
that finds it due, when it grows past ``flush_at`` counters, when a run's execution ends
and when the engine closes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from regen.store import Count, Store

logger = logging.getLogger("regen.engine")
T = TypeVar("T")
CountKey = tuple[str, str, str]
#: Counters are kept per minute (as ``SharedState.count`` says), so ``regen stats --since``
#: is exact to the minute and old minutes can be dropped.
BUCKET_S = 60.0


def bucket_start(now: float) -> float:
    """The start of the one-minute bucket holding ``now``."""
    return (now // BUCKET_S) * BUCKET_S


class StoreState:
    """:class:`regen.providers.SharedState` on a :class:`regen.store.Store`.

    Values are stored as JSON text; ``update``'s ``change`` receives and returns the
    decoded value. Counts stay in memory until a flush (see the module's notes).
    """

    def __init__(self, store: Store, *, flush_every: float = 1.0, flush_at: int = 512) -> None:
        if flush_every < 0 or flush_at < 1:
            raise ValueError(
                f"StoreState flush_every={flush_every!r} must be >= 0 and "
                f"flush_at={flush_at!r} >= 1"
            )
        self._store = store
        self._flush_every = flush_every
        self._flush_at = flush_at
        self._lock = threading.Lock()
        self._pending: dict[tuple[float, str, str, str], int] = {}
        self._last_flush = time.monotonic()

    def __repr__(self) -> str:
        return f"StoreState({self._store.location!r})"

    # --- values --------------------------------------------------------------------------------

    async def update(self, key: str, change: Callable[[Any | None], tuple[Any | None, T]]) -> T:
        """Atomically apply ``change`` to the value under ``key``; see ``SharedState``."""

        def on_text(text: str | None) -> tuple[str | None, T]:
            new, result = change(None if text is None else json.loads(text))
            return (None if new is None else _dumps(new, key)), result

        return await self._store.update_state(key, on_text)

    async def read(self, prefix: str) -> dict[str, Any]:
        """Every value whose key starts with ``prefix``."""
        return {k: json.loads(v) for k, v in (await self._store.read_state(prefix)).items()}

    # --- counters ------------------------------------------------------------------------------

    def add(self, counts: Mapping[CountKey, int], now: float) -> None:
        """Add ``counts`` to the one-minute bucket holding ``now``, in memory only (for
        code that cannot await; the next flush writes them)."""
        if not counts:
            return
        start = bucket_start(now)
        with self._lock:
            for (provider, kind, name), n in counts.items():
                if n:
                    key = (start, provider, kind, name)
                    self._pending[key] = self._pending.get(key, 0) + n

    async def count(self, counts: Mapping[CountKey, int], now: float) -> None:
        """Add ``counts`` to the bucket holding ``now``; written with the next batch."""
        self.add(counts, now)
        if self._due():
            await self.flush()

    async def counts(self, since: float | None = None) -> dict[CountKey, int]:
        """Counter totals over buckets starting at or after ``since`` (all when None),
        including this process's counts not yet written."""
        await self.flush()
        return await self._store.read_counts(since)

    async def flush(self) -> None:
        """Write the counts added so far, in one transaction. On a store error they are
        kept for the next flush and the error is logged, not raised: counters must never
        fail a provider call."""
        with self._lock:
            taken, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not taken:
            return
        rows = [Count(b, p, k, name, n) for (b, p, k, name), n in sorted(taken.items())]
        try:
            await self._store.add_counts(rows)
        except Exception as exc:
            with self._lock:
                for key, n in taken.items():
                    self._pending[key] = self._pending.get(key, 0) + n
            logger.warning(
                "regen: provider counters could not be written; kept for the next try",
                extra={"error": str(exc), "counters": len(taken)},
            )

    def _due(self) -> bool:
        with self._lock:
            return bool(self._pending) and (
                len(self._pending) >= self._flush_at
                or time.monotonic() - self._last_flush >= self._flush_every
            )


def _dumps(value: Any, key: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"shared state {key!r}: the new value is not JSON-able ({exc})") from exc


_current: ContextVar[StoreState | None] = ContextVar("regen_provider_state", default=None)


def current_provider_state() -> StoreState | None:
    """The provider state of the engine executing the current run (its store's, shared by
    every worker: give it to the provider registry a flow's resources build); ``None``
    outside a run."""
    return _current.get()


@contextmanager
def providing(state: StoreState) -> Iterator[None]:
    """Make ``state`` the :func:`current_provider_state` inside the block."""
    token = _current.set(state)
    try:
        yield
    finally:
        _current.reset(token)
