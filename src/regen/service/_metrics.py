"""Prometheus metrics, read from the event log when scraped: runs by status, failed
attempts by failure kind, give-ups, step durations; and, with a health monitor, each
provider's health and latency. The provider counters every worker writes to the store
(attempts, retries, give-ups, breaker openings, fallbacks, calls saved) and each
provider's breaker state are read from the engine's provider state at each scrape.

Counters are built by reading every run's events after the last cursor read (the whole
log on the first scrape), so they count what the database holds, across restarts, and
no background task is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from regen.engine import Engine, EventType, RunStatus
from regen.health import BREAKER_STATES, UNKNOWN, HealthMonitor, ProviderStats, provider_stats

#: The media type of the metrics' text format.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST
_PAGE = 1000
#: Runs counted per status at most (a gauge past it reads as this number).
RUN_COUNT_CAP = 10_000
_STEP_ENDS = {
    EventType.STEP_SUCCEEDED: "succeeded",
    EventType.STEP_PARTIAL: "partial",
    EventType.STEP_FAILED: "failed",
}


class Metrics:
    """The service's metrics on one registry of its own (apps may mount several)."""

    def __init__(self, engine: Engine, health: HealthMonitor | None = None) -> None:
        self.engine = engine
        self.health = health
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Gauge("regen_runs", "Runs by status.", ["status"], registry=self.registry)
        self.attempts = Counter(
            "regen_attempts_failed",
            "Failed attempts (retried or given up) by failure kind.",
            ["kind"],
            registry=self.registry,
        )
        self.give_ups = Counter(
            "regen_give_ups", "Map items given up after their attempts.", registry=self.registry
        )
        self.runs_ended = Counter(
            "regen_runs_ended", "Runs that ended, by status.", ["status"], registry=self.registry
        )
        self.steps = Histogram(
            "regen_step_duration_seconds",
            "Step executions from start to end, by step and outcome.",
            ["step", "status"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.provider_up = Gauge(
            "regen_provider_healthy",
            "1 if the provider's last health check passed, 0 if not (unchecked: absent).",
            ["provider"],
            registry=self.registry,
        )
        self.provider_latency = Gauge(
            "regen_provider_latency_seconds",
            "Round trip of the provider's last health check.",
            ["provider"],
            registry=self.registry,
        )
        self.providers = _ProviderCounters()
        self.registry.register(self.providers)
        self._cursor = 0
        self._started: dict[tuple[str, str], float] = {}

    async def render(self) -> bytes:
        """The metrics in Prometheus' text format, brought up to date first."""
        await self._read_events()
        self.providers.stats = await provider_stats(self.engine.provider_state)
        for status in RunStatus:
            runs = await self.engine.list_runs(status=[status], limit=RUN_COUNT_CAP)
            self.runs.labels(str(status)).set(len(runs))
        for provider in [] if self.health is None else self.health.statuses():
            if provider.status == UNKNOWN:
                continue
            self.provider_up.labels(provider.name).set(1 if provider.healthy else 0)
            if provider.latency_ms is not None:
                self.provider_latency.labels(provider.name).set(provider.latency_ms / 1000)
        return generate_latest(self.registry)

    def _count_last_attempt(self, data: dict[str, Any]) -> None:
        """The attempt a step or item gave up after: ``attempt.failed`` is written only
        for attempts retried, so the last one is counted from the failure's record (its
        last attempt, or the failure itself when it was not retried at all)."""
        error = data.get("error")
        if not isinstance(error, dict):
            return
        attempts = error.get("attempts")
        last = attempts[-1] if isinstance(attempts, list) and attempts else error
        if isinstance(last, dict) and last.get("kind"):
            self.attempts.labels(str(last["kind"])).inc()

    async def _read_events(self) -> None:
        while True:
            batch = await self.engine.read_all_events(self._cursor, _PAGE)
            for event in batch:
                self._count(event.type, event.run_id, event.at, event.data)
                self._cursor = event.cursor
            if len(batch) < _PAGE:
                return

    def _count(self, kind: str, run_id: str, at: float, data: dict[str, Any]) -> None:
        if kind in (EventType.ITEM_GIVEN_UP, EventType.STEP_FAILED):
            self._count_last_attempt(data)
        if kind == EventType.ATTEMPT_FAILED:
            self.attempts.labels(str(data.get("kind", "unknown"))).inc()
        elif kind == EventType.ITEM_GIVEN_UP:
            self.give_ups.inc()
        elif kind == EventType.STEP_STARTED:
            self._started[run_id, str(data.get("step"))] = at
        elif kind in _STEP_ENDS:
            step = str(data.get("step"))
            began = self._started.pop((run_id, step), None)
            if began is not None:
                self.steps.labels(step, _STEP_ENDS[EventType(kind)]).observe(max(at - began, 0.0))
        elif kind.startswith("run.") and kind not in (
            EventType.RUN_QUEUED,
            EventType.RUN_STARTED,
        ):
            self.runs_ended.labels(kind[4:]).inc()


class _ProviderCounters(Collector):
    """The store's provider counters as counters, and breaker states as a gauge, from the
    stats read at the last scrape (totals over the buckets kept: when the clean-up drops
    old ones a total goes down, which Prometheus reads as a counter reset)."""

    def __init__(self) -> None:
        self.stats: list[ProviderStats] = []

    def describe(self) -> list[Metric]:
        return []  # described only when collected: the labels come from the store

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "regen_provider_calls",
            "Provider call counters from every worker, by provider, failure kind ('' when not "
            "per kind) and counter: attempts, retries, give_ups, breaker_opened, fallbacks, "
            "saved_by_breaker, saved_by_cache, saved_by_checkpoint (provider '': the engine's).",
            labels=["provider", "kind", "counter"],
        )
        breakers = GaugeMetricFamily(
            "regen_provider_breaker_state",
            "The provider's circuit breaker: 0 closed, 1 half-open, 2 open (the worst of its "
            "models' breakers).",
            labels=["provider"],
        )
        for provider in self.stats:
            for kind in provider.kinds:
                for name, n in sorted(kind.counts.items()):
                    calls.add_metric([provider.provider, kind.kind, name], n)
            if provider.provider:
                breakers.add_metric(
                    [provider.provider], BREAKER_STATES[provider.breaker or "closed"]
                )
        yield calls
        yield breakers
