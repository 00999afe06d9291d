"""pytest fixtures for testing your own pipeline against the simulator.

Enable them in your ``conftest.py``::

    pytest_plugins = ["regen.sim.pytest_plugin"]

    def test_my_batch_survives_a_fake_image(regen_sim):
        regen_sim.script({"prompt": "a red fox", "route": "file", "steps": ["fake_image"]})
        run_my_batch(base_url=regen_sim.openai_base_url)
        assert regen_sim.stats()["prompts"]["a red fox"]["produced"] == 2

``regen_sim_server`` is one simulator for the whole test session (started on a free port
of 127.0.0.1 in a thread); ``regen_sim`` is the same server, reset before each test
(stats, tasks, payments, scripts), so tests do not see each other's traffic. Override
``regen_sim_options`` (a session-scoped fixture returning :class:`SimConfig` fields such as
``{"task_seconds": 0.2, "faults": {"rate_limit": 0.1}, "seed": 7}``) to configure it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from regen.sim._testing import SimServer, run_simulator


@pytest.fixture(scope="session")
def regen_sim_options() -> dict[str, Any]:
    """Fields of the session's :class:`~regen.sim.SimConfig` (override to configure)."""
    return {"task_seconds": 0.2}


@pytest.fixture(scope="session")
def regen_sim_server(regen_sim_options: dict[str, Any]) -> Iterator[SimServer]:
    """One simulator for the test session."""
    with run_simulator(**regen_sim_options) as server:
        yield server


@pytest.fixture
def regen_sim(regen_sim_server: SimServer) -> SimServer:
    """The session's simulator, reset before this test."""
    regen_sim_server.reset()
    return regen_sim_server
