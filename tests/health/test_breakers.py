"""Health checks feed the providers' circuit breakers, and show them beside the health:
a check meeting an outage counts against the provider, an answered one closes a half-open
breaker as a probe would; a refused key says nothing of an outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.health.conftest import monitor, provider
from tests.service.server import Served

from regen.engine import Engine
from regen.health import HealthMonitor
from regen.providers import BreakerSettings, ProviderConfig, Registry
from regen.retry import FakeClock, test_mode
from regen.service import create_app
from regen.sim import SimServer

TRIP = BreakerSettings(failures=2, window_s=60.0, open_s=30.0)


def _tripping(config: ProviderConfig) -> ProviderConfig:
    return dataclasses.replace(config, breaker=TRIP)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    with test_mode(clock=fake):
        yield fake


async def test_failed_checks_open_the_breaker_and_an_answer_closes_it_after_open_s(
    sim: SimServer, registry: Registry, clock: FakeClock
) -> None:
    down = _tripping(provider("openai", sim.openai_base_url, fault="overloaded"))
    watched = monitor(registry, down)
    (first,) = await watched.check()
    assert (first.status, first.breaker) == ("unhealthy", "closed")  # one failure so far
    (second,) = await watched.check()
    assert (second.breaker, second.breaker_retry_after) == ("open", 30.0)
    assert watched.statuses()[0].to_dict()["breaker"] == "open"

    registry.add(_tripping(provider("openai", sim.openai_base_url)))  # the outage is over
    (early,) = await watched.check()
    assert (early.status, early.breaker) == ("healthy", "open")  # not yet time to probe
    clock.advance(31)
    await watched.read_breakers()
    assert watched.status("openai").breaker == "half_open"
    # Workers' calls are let through as the half-open breakers' probes (one per model);
    # while they are out, an answered check closes the breakers for every caller.
    guard = registry.guard("openai")
    async with guard.attempt("gpt-4o-mini"), guard.attempt("dall-e-3"):
        (probed,) = await watched.check()
        assert (probed.status, probed.breaker) == ("healthy", "closed")
    await watched.read_breakers()
    assert watched.status("openai").breaker == "closed"


async def test_a_hung_check_counts_as_a_timeout_against_the_provider(
    sim: SimServer, registry: Registry, clock: FakeClock
) -> None:
    watched = monitor(registry, _tripping(provider("hung", sim.openai_base_url, fault="hang")))
    await watched.check()
    (status,) = await watched.check()
    assert (status.error, status.breaker) == ("timeout", "open")
    breakers = await registry.state.read("breaker:hung")
    assert sorted(breakers) == ["breaker:hung:dall-e-3", "breaker:hung:gpt-4o-mini"]
    assert {value["kind"] for value in breakers.values()} == {"timeout"}


async def test_a_refused_key_leaves_the_breaker_closed(
    sim: SimServer, registry: Registry, clock: FakeClock
) -> None:
    watched = monitor(registry, _tripping(provider("openai", sim.openai_base_url, fault="auth")))
    for _ in range(3):
        (status,) = await watched.check()
    assert (status.error, status.breaker) == ("401", "closed")


async def test_checks_feed_the_breaker_every_worker_on_the_database_shares(
    sim: SimServer, registry: Registry, tmp_path: Path, clock: FakeClock
) -> None:
    url = f"sqlite:///{tmp_path / 'regen.db'}"
    engine, worker = Engine(url, home=tmp_path), Engine(url, home=tmp_path)
    try:
        registry.use_state(engine.provider_state)
        watched = monitor(
            registry, _tripping(provider("dashscope", sim.openai_base_url, fault="server_error"))
        )
        await watched.check()
        await watched.check()
        seen = await worker.provider_state.read("breaker:dashscope:")
        assert {value["state"] for value in seen.values()} == {"open"}
        assert "breaker:dashscope:gpt-4o-mini" in seen  # the breaker workers' chat calls use
    finally:
        await engine.aclose()
        await worker.aclose()


def test_the_health_api_and_the_dashboards_cards_show_the_breaker(
    sim: SimServer, tmp_path: Path
) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path)
    registry = Registry(
        [provider("good", sim.openai_base_url), provider("other", sim.openai_base_url)]
    )
    registry.use_state(engine.provider_state)
    far = 4_000_000_000.0  # another worker's breaker, open for a long while
    asyncio.run(
        engine.provider_state.update(
            "breaker:good:gpt-4o",
            lambda _: ({"state": "open", "until": far, "opened": 1.0, "kind": "timeout"}, None),
        )
    )
    try:
        app = create_app(engine, health=HealthMonitor(registry))
        started = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(running: Any) -> AsyncIterator[None]:
            async with started(running):
                yield
            await registry.aclose()  # its connections belong to the server's loop

        app.router.lifespan_context = lifespan
        with Served(app) as served, httpx.Client(base_url=served.url, timeout=10) as client:
            report = {p["name"]: p for p in client.get("/api/models/health").json()["providers"]}
            assert (report["good"]["breaker"], report["other"]["breaker"]) == ("open", "closed")
            assert report["good"]["breaker_retry_after"] > 3600
            assert client.get("/api/models/health/good").json()["breaker"] == "open"
            page = client.get("/providers").text
            assert 'data-field="breaker" class="breaker open">open (' in page
            assert 'data-field="breaker" class="breaker closed">closed<' in page
    finally:
        engine.close()
