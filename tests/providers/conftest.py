"""One simulator for the providers suite, reset before each test; adapters on short policies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from regen.providers import DashScopeProvider, OpenAIProvider, Polling
from regen.retry import Kind, Policy
from regen.sim import SimServer, run_simulator

KEY = "sk-test-regen-0123456789abcdef"
#: Short waits and timeouts: every fault test runs in well under a second unless it
#: proves a wait (Retry-After: 1) or a deadline.
FAST = Policy(attempts=3, timeout=2.0, wait=0.01, max_wait=0.05)
POLLING = Polling(
    interval=0.03, max_interval=0.05, deadline=2.0, error_wait=0.02, max_error_wait=0.05
)


def fault(spec: str) -> dict[str, str]:
    """The header that asks the simulator for ``spec`` (``"server_error*1"``)."""
    return {"X-Regen-Fault": spec}


def requests(sim: SimServer, route: str) -> int:
    """How many requests the simulator saw on ``route``."""
    routes: dict[str, Any] = sim.stats()["routes"]
    return int(routes.get(route, {}).get("requests", 0))


def poll_failures(caplog: pytest.LogCaptureFixture) -> list[tuple[Kind, float]]:
    """The kind and the wait of every failed poll the adapters logged, in order."""
    return [
        (Kind(record.kind), record.wait)
        for record in caplog.records
        if getattr(record, "outcome", None) == "poll_failed"
    ]


@pytest.fixture(scope="session")
def _sim_server() -> Iterator[SimServer]:
    with run_simulator(task_seconds=0.1) as server:
        yield server


@pytest.fixture
def sim(_sim_server: SimServer) -> SimServer:
    """The simulator, its stats, tasks, payments and fault counters reset."""
    _sim_server.reset()
    return _sim_server


@pytest.fixture
async def openai(sim: SimServer) -> AsyncIterator[OpenAIProvider]:
    async with OpenAIProvider(sim.openai_base_url, KEY, policy=FAST, name="sim") as provider:
        yield provider


@pytest.fixture
async def dashscope(sim: SimServer) -> AsyncIterator[DashScopeProvider]:
    async with DashScopeProvider(
        sim.dashscope_base_url, KEY, policy=FAST, polling=POLLING, name="wanx"
    ) as provider:
        yield provider
