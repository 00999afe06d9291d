"""Breakers, the shared rate limit and adaptive concurrency, against real simulators."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from regen.providers import (
    BreakerSettings,
    Guard,
    LimitSettings,
    MemoryState,
    OpenAIProvider,
    ProviderConfig,
    Registry,
    Secret,
    Unavailable,
)
from regen.retry import GiveUp, Kind, Policy
from regen.sim import SimServer

from .conftest import KEY, fault, requests

#: A deadline shorter than any breaker's opening: a refused call gives up at once.
QUICK = Policy(attempts=3, timeout=2.0, wait=0.01, max_wait=0.05, deadline=1.0)
THREE = BreakerSettings(failures=3, window_s=30.0, open_s=30.0)


def _registry(sim: SimServer, **settings: Any) -> Registry:
    settings.setdefault("policy", QUICK)
    return Registry(
        [
            ProviderConfig(
                name="sim",
                kind="openai",
                base_url=sim.openai_base_url,
                api_key=Secret(KEY),
                **settings,
            )
        ]
    )


@pytest.fixture
async def down(sim: SimServer) -> AsyncIterator[SimServer]:
    sim.outage(60)
    yield sim
    sim.recover()


async def test_the_breaker_opens_after_the_threshold_and_spares_the_dead_provider(
    down: SimServer,
) -> None:
    async with _registry(down, breaker=THREE) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp) as first:
            await llm.chat("hello")
        assert first.value.kind is Kind.SERVER_ERROR
        assert requests(down, "chat") == 3
        for _ in range(10):
            with pytest.raises(GiveUp) as refused:
                await llm.chat("hello")
            assert refused.value.kind is Kind.UNAVAILABLE
            assert refused.value.last is not None
            assert refused.value.last.reason == "deadline"  # 30 s to the reopening
        assert requests(down, "chat") == 3  # not one request while open
        counts = await registry.state.counts()
        assert counts[("sim", "", "saved_by_breaker")] == 10
        assert counts[("sim", "server_error", "breaker_opened")] == 1
        assert counts[("sim", "", "attempts")] == 3
        breakers = await registry.breakers()
        assert breakers["breaker:sim:gpt-4o-mini"]["state"] == "open"


async def test_calls_the_open_breaker_held_back_are_not_counted_as_retries(
    down: SimServer,
) -> None:
    # Retries per attempt sent stays a fraction: a call held back reached no provider.
    short = BreakerSettings(failures=3, window_s=30.0, open_s=0.05)
    patient = Policy(attempts=4, timeout=2.0, wait=0.01, max_wait=0.1, deadline=5.0)
    async with _registry(down, breaker=short, policy=patient) as registry:
        llm = registry.openai("sim")
        for _ in range(3):
            with pytest.raises(GiveUp):
                await llm.chat("hello")
        counts = await registry.state.counts()
    refused = counts[("sim", "", "saved_by_breaker")]
    assert refused > 0  # the breaker did hold calls back, and they were retried
    retries = sum(n for (_, _, name), n in counts.items() if name == "retries")
    assert retries <= counts[("sim", "", "attempts")]
    assert ("sim", "unavailable", "retries") not in counts


async def test_non_outage_failures_never_open_it(sim: SimServer) -> None:
    async with _registry(sim, breaker=THREE) as registry:
        llm = registry.openai("sim")
        for _ in range(6):
            with pytest.raises(GiveUp):
                await llm.chat("hello", headers=fault("invalid_param"))
        assert (await llm.chat("hello")).text
        assert requests(sim, "chat") == 7


async def test_a_refused_call_waits_for_the_reopening_when_its_deadline_allows(
    down: SimServer,
) -> None:
    quick_open = BreakerSettings(failures=3, open_s=0.4)
    patient = Policy(attempts=4, timeout=2.0, wait=0.01, max_wait=0.05)
    async with _registry(down, breaker=quick_open, policy=patient) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp):
            await llm.chat("hello", policy=patient.replace(attempts=3))
        down.recover()
        started = time.monotonic()
        result = await llm.chat("hello")  # refused once, waits ~0.4 s, probes, succeeds
        assert result.text
        assert 0.2 < time.monotonic() - started < 2.0
        assert (await registry.breakers()) == {}  # closed and forgotten


async def test_half_open_probes_reopen_while_down_and_close_once_it_recovers(
    down: SimServer,
) -> None:
    quick_open = BreakerSettings(failures=3, open_s=0.3)
    async with _registry(down, breaker=quick_open) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp):
            await llm.chat("hello")
        assert requests(down, "chat") == 3
        await asyncio.sleep(0.35)
        with pytest.raises(GiveUp):
            await llm.chat("hello", policy=QUICK.replace(attempts=1))  # a probe: 503, re-opened
        assert requests(down, "chat") == 4
        with pytest.raises(GiveUp) as refused:
            await llm.chat("hello", policy=QUICK.replace(attempts=1))
        assert refused.value.kind is Kind.UNAVAILABLE
        assert requests(down, "chat") == 4
        down.recover()
        await asyncio.sleep(0.35)
        results = await asyncio.gather(*(llm.chat(f"p{i}") for i in range(5)))
        assert all(r.text for r in results)
        counts = await registry.state.counts()
        assert counts[("sim", "server_error", "breaker_opened")] == 2


async def test_breakers_are_per_model(down: SimServer) -> None:
    async with _registry(down, breaker=THREE) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp):
            await llm.chat("hello", model="gpt-4o")
        down.recover()
        assert (await llm.chat("hello")).text  # gpt-4o-mini's breaker is closed
        with pytest.raises(GiveUp) as refused:
            await llm.chat("hello", model="gpt-4o")
        assert refused.value.kind is Kind.UNAVAILABLE


async def test_the_shared_rate_limit_keeps_clients_under_the_providers_limit(
    sim: SimServer,
) -> None:
    sim.limit(20, burst=5)
    slow = Policy(attempts=1, timeout=10.0)
    # Without a client-side limit, a burst of 20 meets the provider's 429s.
    async with OpenAIProvider(sim.openai_base_url, KEY, policy=slow) as bare:
        outcomes = await asyncio.gather(
            *(bare.chat(f"b{i}") for i in range(20)), return_exceptions=True
        )
    assert any(isinstance(o, GiveUp) for o in outcomes)
    sim.reset()
    sim.limit(20, burst=5)
    # Paced at half the provider's rate, with a smaller burst: requests sent on time may
    # reach the simulator up to 0.3 s apart from when they were sent (a loaded machine)
    # and still stay within its bucket.
    paced = LimitSettings(rps=10, burst=2)
    async with _registry(sim, limit=paced, policy=slow) as registry:
        llm = registry.openai("sim")
        started = time.monotonic()
        results = await asyncio.gather(*(llm.chat(f"c{i}") for i in range(20)))
        elapsed = time.monotonic() - started
    assert all(r.text for r in results)
    assert sim.stats()["limit"]["answered"] == 0
    assert elapsed >= (20 - 2) / 10 - 0.1


async def test_a_request_that_cannot_wait_for_its_token_is_throttled_without_a_request(
    sim: SimServer,
) -> None:
    tight = LimitSettings(rps=0.5, burst=1)
    one = Policy(attempts=1, timeout=0.5)
    async with _registry(sim, limit=tight, policy=one) as registry:
        llm = registry.openai("sim")
        assert (await llm.chat("a")).text
        with pytest.raises(GiveUp) as held:
            await llm.chat("b")
        assert held.value.kind is Kind.RATE_LIMITED
        assert held.value.last is not None
        assert held.value.last.reason == "client_rate_limit"
    assert requests(sim, "chat") == 1


async def test_adaptive_concurrency_halves_on_a_429(sim: SimServer) -> None:
    policy = Policy(attempts=2, timeout=2.0, wait=0.01, max_wait=0.05)
    async with _registry(sim, limit=LimitSettings(concurrency=8), policy=policy) as registry:
        llm = registry.openai("sim")
        result = await llm.chat("hello", headers=fault("rate_limit:0*1"))
        assert result.text
        assert registry.guard("sim").concurrency.limit == 4
    assert requests(sim, "chat") == 2


async def test_a_standalone_adapter_has_no_guard(down: SimServer) -> None:
    async with OpenAIProvider(down.openai_base_url, KEY, policy=QUICK) as llm:
        for _ in range(3):
            with pytest.raises(GiveUp) as failed:
                await llm.chat("hello")
            assert failed.value.kind is Kind.SERVER_ERROR
    assert requests(down, "chat") == 9


async def test_unavailable_carries_the_reopening(down: SimServer) -> None:
    async with _registry(down, breaker=THREE) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp):
            await llm.chat("hello")
        with pytest.raises(Unavailable) as refused:
            await llm.chat_once("hello")
        assert 29 < refused.value.retry_after <= 30
        assert refused.value.failure.sent is False


async def test_tokens_a_reply_used_hold_the_next_request_under_a_tokens_per_minute_limit(
    sim: SimServer,
) -> None:
    one = Policy(attempts=1, timeout=1.0)
    async with _registry(sim, limit=LimitSettings(tpm=5), policy=one) as registry:
        llm = registry.openai("sim")
        first = await llm.chat("a sentence long enough to use a few dozen tokens")
        assert first.usage["total_tokens"] > 5  # over the whole minute's budget
        with pytest.raises(GiveUp) as held:
            await llm.chat("again")
        assert held.value.kind is Kind.RATE_LIMITED
    assert requests(sim, "chat") == 1


async def test_streams_go_through_the_breaker_too(down: SimServer) -> None:
    async with _registry(down, breaker=THREE) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp) as failed:
            await llm.complete("hello", stream=True)
        assert failed.value.kind is Kind.SERVER_ERROR
        with pytest.raises(GiveUp) as refused:
            await llm.complete("hello", stream=True)
        assert refused.value.kind is Kind.UNAVAILABLE
        counts = await registry.state.counts()
    assert requests(down, "chat_stream") == 3
    assert counts[("sim", "server_error", "retries")] == 2
    assert counts[("sim", "server_error", "give_ups")] == 1


async def test_a_probe_cancelled_midway_frees_its_slot() -> None:
    guard = Guard("p", MemoryState(), breaker=BreakerSettings(failures=1, open_s=0.05))

    async def broken() -> None:
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await guard.run("m", broken)
    await asyncio.sleep(0.06)
    hung = asyncio.Event()
    probe = asyncio.create_task(guard.run("m", hung.wait))
    await asyncio.sleep(0.01)
    with pytest.raises(Unavailable):
        await guard.run("m", broken)  # the one probe slot is taken
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    assert (await guard.status())["breaker:p:m"]["state"] == "half_open"

    async def fine() -> str:
        return "ok"

    assert await guard.run("m", fine) == "ok"  # the freed slot probes, and closes it
    assert await guard.status() == {}


async def test_a_retry_after_holds_this_processs_next_calls(sim: SimServer) -> None:
    one = Policy(attempts=1, timeout=0.5)
    async with _registry(sim, policy=one) as registry:
        llm = registry.openai("sim")
        with pytest.raises(GiveUp) as limited:
            await llm.chat("a", headers=fault("rate_limit:5"))
        assert limited.value.kind is Kind.RATE_LIMITED
        with pytest.raises(GiveUp) as held:
            await llm.chat("b")
        assert held.value.last is not None
        assert held.value.last.reason == "client_rate_limit"
        assert "Retry-After" in held.value.last.message
    assert requests(sim, "chat") == 1
