"""Retry statistics: the provider counters of a :class:`regen.providers.SharedState`
summed per provider and failure kind, with each provider's breaker state.

Counters are keyed ``(provider, kind, name)``; ``kind`` is ``""`` for counts that are
not per failure kind (attempts, usually), and provider ``""`` holds what the engine saved
without calling any provider (steps and items kept by their checkpoints, result cache
hits). What ``regen stats``, ``/metrics`` and the alert watcher show is computed here once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regen.providers import SharedState

#: The counter names, in the order tables show them.
COUNTERS = (
    "attempts",
    "retries",
    "give_ups",
    "breaker_opened",
    "fallbacks",
    "saved_by_breaker",
    "saved_by_cache",
    "saved_by_checkpoint",
)
#: Breaker states, with the number ``/metrics`` gives each (0 closed, 1 half-open, 2 open).
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
BREAKER_PREFIX = "breaker:"


@dataclass(frozen=True, slots=True)
class KindStats:
    """One provider's counters for one failure kind (``""``: not per kind)."""

    kind: str
    counts: Mapping[str, int]

    def __getitem__(self, name: str) -> int:
        return int(self.counts.get(name, 0))

    def to_dict(self) -> dict[str, Any]:
        """Every counter by name (zero when not counted)."""
        return {"kind": self.kind, **{name: self[name] for name in _names(self.counts)}}


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A provider's counters in total and per failure kind, and its breaker.

    ``breaker``: ``closed``, ``half_open`` or ``open`` (``None``: no breaker state is
    kept, which a breaker that never saw a failure looks like); ``breakers``: each
    breaker's state by key, when the provider has one per model.
    """

    provider: str
    totals: Mapping[str, int]
    kinds: tuple[KindStats, ...] = ()
    breaker: str | None = None
    breakers: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return int(self.totals.get(name, 0))

    @property
    def retry_rate(self) -> float | None:
        """Retries per attempt (``None`` before any attempt)."""
        attempts = self["attempts"]
        return None if not attempts else self["retries"] / attempts

    @property
    def saved(self) -> int:
        """Calls not made: refused by the open breaker, served by the cache, kept by
        checkpoints."""
        return self["saved_by_breaker"] + self["saved_by_cache"] + self["saved_by_checkpoint"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: totals, retry rate, calls saved, breaker, and the per-kind rows."""
        return {
            "provider": self.provider,
            **{name: self[name] for name in _names(self.totals)},
            "retry_rate": self.retry_rate,
            "saved": self.saved,
            "breaker": self.breaker,
            "breakers": dict(self.breakers),
            "kinds": [k.to_dict() for k in self.kinds if k.kind],
        }


def summarise(
    counts: Mapping[tuple[str, str, str], int],
    breakers: Mapping[str, Any],
    now: float | None = None,
) -> list[ProviderStats]:
    """Counter totals and breaker values (as ``read("breaker:")`` gives them) as one
    :class:`ProviderStats` per provider, by name; the engine's own savings (provider
    ``""``) come last. ``now``: the time breakers are judged at (default: the clock's)."""
    at = time.time() if now is None else now
    per: dict[str, dict[str, dict[str, int]]] = {}
    for (provider, kind, name), n in counts.items():
        kinds = per.setdefault(provider, {})
        kinds.setdefault(kind, {})[name] = kinds.get(kind, {}).get(name, 0) + n
    states: dict[str, dict[str, str]] = {}
    for key, value in breakers.items():
        provider = key.removeprefix(BREAKER_PREFIX).split(":", 1)[0]
        states.setdefault(provider, {})[key] = breaker_state(value, at)
        per.setdefault(provider, {})
    found = []
    for provider in sorted(per, key=lambda p: (p == "", p)):
        kinds = per[provider]
        totals: dict[str, int] = {}
        for counters in kinds.values():
            for name, n in counters.items():
                totals[name] = totals.get(name, 0) + n
        found.append(
            ProviderStats(
                provider,
                totals,
                tuple(KindStats(kind, kinds[kind]) for kind in sorted(kinds)),
                _worst(states.get(provider, {}).values()),
                states.get(provider, {}),
            )
        )
    return found


async def provider_stats(state: SharedState, since: float | None = None) -> list[ProviderStats]:
    """:func:`summarise` of ``state``'s counters (buckets from ``since`` on) and breakers."""
    return summarise(await state.counts(since), await state.read(BREAKER_PREFIX))


def breaker_state(value: Any, now: float | None = None) -> str:
    """A breaker value's state: ``closed``, ``half_open`` or ``open`` (the providers'
    breakers keep it under ``"state"``, an open one with the time it lets a probe through
    under ``"until"``: past it, it is half-open; anything unreadable reads as
    ``closed``)."""
    state = value.get("state") if isinstance(value, Mapping) else value
    text = str(state).replace("-", "_").lower() if state is not None else "closed"
    if text == "open" and isinstance(value, Mapping):
        until = value.get("until")
        at = time.time() if now is None else now
        if isinstance(until, int | float) and until <= at:
            return "half_open"
    return text if text in BREAKER_STATES else "closed"


def _worst(states: Any) -> str | None:
    chosen = None
    for state in states:
        if chosen is None or BREAKER_STATES[state] > BREAKER_STATES[chosen]:
            chosen = state
    return chosen


def _names(counts: Mapping[str, int]) -> list[str]:
    """The known counters in order, then any other counted name."""
    return [*COUNTERS, *sorted(n for n in counts if n not in COUNTERS)]
