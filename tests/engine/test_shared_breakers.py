"""Breakers every worker shares: registries given their engines' provider state, on one
database, against a real simulator in an outage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regen.engine import Engine
from regen.health import provider_stats
from regen.providers import BreakerSettings, ProviderConfig, Registry, Secret
from regen.retry import GiveUp, Kind, Policy
from regen.sim import SimServer, run_simulator

KEY = "sk-test-shared-breakers-0123456789"
#: A deadline shorter than the breaker's opening: a refused call gives up at once.
QUICK = Policy(attempts=3, timeout=2.0, wait=0.01, max_wait=0.05, deadline=1.0)


@pytest.fixture
def down() -> Iterator[SimServer]:
    with run_simulator() as server:
        server.outage(60)
        yield server


def _registry(sim: SimServer, engine: Engine) -> Registry:
    registry = Registry(
        [
            ProviderConfig(
                name="sim",
                kind="openai",
                base_url=sim.openai_base_url,
                api_key=Secret(KEY),
                policy=QUICK,
                breaker=BreakerSettings(failures=3, window_s=30.0, open_s=30.0),
            )
        ]
    )
    registry.use_state(engine.provider_state)
    return registry


def _chats(sim: SimServer) -> int:
    return int(sim.stats()["routes"].get("chat", {}).get("requests", 0))


async def test_an_outage_one_worker_met_spares_the_provider_for_every_other_worker(
    down: SimServer, database: str, tmp_path: Path
) -> None:
    first, second = Engine(database, home=tmp_path), Engine(database, home=tmp_path)
    try:
        async with _registry(down, first) as one, _registry(down, second) as other:
            with pytest.raises(GiveUp) as met:
                await one.openai("sim").chat("hello")
            assert met.value.kind is Kind.SERVER_ERROR
            assert _chats(down) == 3
            with pytest.raises(GiveUp) as refused:
                await other.openai("sim").chat("hello")
            assert refused.value.kind is Kind.UNAVAILABLE
            assert _chats(down) == 3  # the other worker sent nothing
        await first.provider_state.flush()  # written within a second anyway, or at a run's end
        (stats,) = await provider_stats(second.provider_state)
        assert (stats["attempts"], stats["breaker_opened"], stats["saved_by_breaker"]) == (3, 1, 1)
        assert stats.breaker == "open"
    finally:
        await first.aclose()
        await second.aclose()
