"""The outage window and the per-second request limit, seen as a client sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from regen.sim import SimConfig, SimServer, run_simulator

AUTH = {"Authorization": "Bearer sk"}


def _models(sim: SimServer, n: int) -> list[httpx.Response]:
    with httpx.Client(base_url=sim.openai_base_url, headers=AUTH) as client:
        return [client.get("/models") for _ in range(n)]


@pytest.fixture(scope="module")
def down_from_third() -> Iterator[SimServer]:
    with run_simulator(outage_after=3, outage_for=0.4) as server:
        yield server


def test_outage_answers_503_from_the_nth_request_for_its_duration(
    down_from_third: SimServer,
) -> None:
    sim = down_from_third
    sim.reset()
    statuses = [r.status_code for r in _models(sim, 5)]
    assert statuses == [200, 200, 503, 503, 503]
    time.sleep(0.5)
    assert [r.status_code for r in _models(sim, 2)] == [200, 200]
    stats = sim.stats()
    assert stats["outage"]["answered"] == 3
    assert stats["routes"]["models"]["outcomes"] == {"ok": 4, "outage": 3}


def test_reset_brings_the_configured_outage_back(down_from_third: SimServer) -> None:
    sim = down_from_third
    sim.reset()
    _models(sim, 4)
    sim.reset()
    assert [r.status_code for r in _models(sim, 3)] == [200, 200, 503]


def test_outage_started_and_ended_through_the_control_api(sim: SimServer) -> None:
    with httpx.Client(base_url=sim.url) as control:
        started = control.post("/_sim/outage", json={"for": 30}).json()
        assert started["active"] is True
        assert _models(sim, 1)[0].status_code == 503
        dashscope = httpx.get(f"{sim.dashscope_base_url}/tasks/x", headers=AUTH)
        assert dashscope.status_code == 503
        assert dashscope.json()["code"] == "ServiceUnavailable"
        assert control.delete("/_sim/outage").json()["active"] is False
        assert _models(sim, 1)[0].status_code == 200
        bad = control.post("/_sim/outage", json={"after": 2})
        assert bad.status_code == 400
        assert "for" in bad.json()["error"]


def test_rps_limit_refuses_past_the_burst_with_retry_after(sim: SimServer) -> None:
    sim.limit(2.0, burst=3)
    statuses = [r.status_code for r in _models(sim, 5)]
    assert statuses[:3] == [200, 200, 200]
    refused = _models(sim, 1)[0]
    assert refused.status_code == 429
    assert float(refused.headers["retry-after-ms"]) > 0
    time.sleep(0.6)  # one token back at 2 per second
    assert _models(sim, 1)[0].status_code == 200
    stats = sim.stats()
    assert stats["limit"]["answered"] >= 3
    assert stats["routes"]["models"]["outcomes"]["rps_limited"] == stats["limit"]["answered"]


def test_limit_set_through_the_control_api(sim: SimServer) -> None:
    with httpx.Client(base_url=sim.url) as control:
        assert control.post("/_sim/limit", json={"rps": 1, "burst": 1}).json()["burst"] == 1
        assert [r.status_code for r in _models(sim, 2)] == [200, 429]
        assert control.post("/_sim/limit", json={"rps": None}).json()["rps"] is None
        assert [r.status_code for r in _models(sim, 3)] == [200, 200, 200]
        assert control.post("/_sim/limit", json={"rps": -1}).status_code == 400


def test_bad_settings_are_refused_with_what_to_fix() -> None:
    with pytest.raises(ValueError, match="outage_for"):
        SimConfig(outage_after=3)
    with pytest.raises(ValueError, match="burst needs rps"):
        SimConfig(burst=5)
    with pytest.raises(ValueError, match="rps"):
        SimConfig(rps=0)
