"""A simulator that accepts one key, a real store on each backend (a SQLite file, a
PostgreSQL database), and providers built on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from regen.health import HealthMonitor, HealthSettings
from regen.providers import ProviderConfig, Registry, Secret
from regen.sim import SimServer, run_simulator
from regen.store import Store, open_store

#: The only key the simulator accepts.
KEY = "sk-health-good-0123456789abcdef"
#: A key it refuses with a 401; it must never show in a status, log or the store.
WRONG_KEY = "sk-health-wrong-fedcba9876543210"
#: Short enough for a hung check to end quickly, long enough for a loaded machine.
TIMEOUT = 0.5
FAST = HealthSettings(interval=60.0, timeout=TIMEOUT)


@pytest.fixture(scope="session")
def _sim_server() -> Iterator[SimServer]:
    with run_simulator(keys=(KEY,)) as server:
        yield server


@pytest.fixture
def sim(_sim_server: SimServer) -> SimServer:
    """The simulator with its stats, counters and rate window reset."""
    _sim_server.reset()
    return _sim_server


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    opened = open_store(database)
    try:
        yield opened
    finally:
        await opened.close()


def provider(
    name: str,
    base_url: str,
    *,
    kind: str = "openai",
    key: str | None = KEY,
    fault: str | None = None,
    model: str | None = None,
    image_model: str | None = None,
) -> ProviderConfig:
    """A provider on ``base_url``; ``fault`` is sent with every request it makes."""
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=base_url,
        model=model,
        image_model=image_model,
        api_key=Secret(key) if key else None,
        key_source=f"{name.upper()}_API_KEY",
        headers={"X-Regen-Fault": fault} if fault else {},
    )


def requests(sim: SimServer, route: str) -> int:
    """How many requests the simulator saw on ``route``."""
    routes: dict[str, Any] = sim.stats()["routes"]
    return int(routes.get(route, {}).get("requests", 0))


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    """An empty registry (add providers to it); its connections closed after the test."""
    async with Registry() as opened:
        yield opened


def monitor(
    registry: Registry, *configs: ProviderConfig, store: Any = None, **settings: float
) -> HealthMonitor:
    for config in configs:
        registry.add(config)
    chosen = HealthSettings(**{"interval": FAST.interval, "timeout": FAST.timeout, **settings})
    return HealthMonitor(registry, store=store, settings=chosen)
