"""One simulator per test module (started in ~3 ms), reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from regen.sim import SimServer, run_simulator


@pytest.fixture(scope="module")
def sim_server() -> Iterator[SimServer]:
    with run_simulator(task_seconds=0.3, slow_seconds=1.0) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer) -> SimServer:
    sim_server.reset()
    return sim_server
