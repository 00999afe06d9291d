"""Starting and stopping: fast, no leaked threads, hung requests do not block shutdown."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from regen.sim import SimConfig, run_simulator

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": "Bearer sk"}


def test_starts_and_stops_quickly_without_leaking_threads() -> None:
    with run_simulator():
        pass  # the first start pays for imports
    before = set(threading.enumerate())
    started = time.perf_counter()
    with run_simulator() as sim:
        startup = time.perf_counter() - started
        assert httpx.get(f"{sim.url}/_sim/health").json() == {"ok": True}
    assert startup < 1.0  # typically a few milliseconds; generous for loaded CI machines
    assert set(threading.enumerate()) == before


def test_a_hung_request_does_not_block_shutdown() -> None:
    answers: list[object] = []

    def call(url: str) -> None:
        try:
            answers.append(
                httpx.post(url, json=CHAT, headers={**AUTH, "X-Regen-Fault": "hang"}, timeout=10)
            )
        except httpx.HTTPError as exc:
            answers.append(exc)

    with run_simulator() as sim:
        caller = threading.Thread(target=call, args=(f"{sim.openai_base_url}/chat/completions",))
        caller.start()
        time.sleep(0.2)
        stopping = time.perf_counter()
    stopped = time.perf_counter() - stopping
    caller.join(5)
    assert stopped < 1.5
    assert len(answers) == 1


def test_latency_model_delays_answers() -> None:
    with run_simulator(latency=0.15, jitter=0.01) as sim, httpx.Client(headers=AUTH) as http:
        http.get(f"{sim.openai_base_url}/models")
        started = time.perf_counter()
        http.get(f"{sim.openai_base_url}/models")
        assert time.perf_counter() - started >= 0.13


def test_rpm_limit_is_enforced_when_configured() -> None:
    with run_simulator(rpm=2) as sim, httpx.Client(headers=AUTH) as http:
        responses = [http.get(f"{sim.openai_base_url}/models") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses] == ["1", "0", "0"]
    assert float(responses[2].headers["retry-after"]) > 0


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="add up to"):
        SimConfig(faults={"hang": 0.7, "rate_limit": 0.6})
    with pytest.raises(ValueError, match="unknown fault"):
        SimConfig(faults={"gremlins": 0.1})
    with pytest.raises(ValueError, match="latency"):
        SimConfig(latency=-1)
    with pytest.raises(TypeError, match="not both"):
        run_simulator(SimConfig(), seed=3).__enter__()


def test_two_simulators_side_by_side() -> None:
    with run_simulator() as one, run_simulator() as two:
        assert one.url != two.url
        for sim in (one, two):
            assert (
                httpx.post(
                    f"{sim.openai_base_url}/chat/completions", json=CHAT, headers=AUTH
                ).status_code
                == 200
            )
        assert one.stats()["requests"] == two.stats()["requests"] == 1
