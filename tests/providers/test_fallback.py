"""Fallback chains between two real simulators: the primary down, the backup serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from regen.providers import (
    BreakerSettings,
    ImagePipeline,
    ProviderConfig,
    Registry,
    Secret,
    serving,
)
from regen.retry import GiveUp, Kind, Policy
from regen.sim import SimServer, run_simulator

from .conftest import KEY, POLLING, requests

POLICY = Policy(attempts=3, timeout=5.0, wait=0.01, max_wait=0.05, deadline=3.0)
THREE = BreakerSettings(failures=3, window_s=30.0, open_s=30.0)


@pytest.fixture(scope="module")
def _backup_server() -> Iterator[SimServer]:
    with run_simulator(task_seconds=0.1) as server:
        yield server


@pytest.fixture
def backup(_backup_server: SimServer) -> SimServer:
    _backup_server.reset()
    return _backup_server


def _registry(primary: SimServer, backup: SimServer, **primary_settings: Any) -> Registry:
    kind = primary_settings.pop("kind", "openai")
    url = primary.dashscope_base_url if kind == "dashscope" else primary.openai_base_url
    return Registry(
        [
            ProviderConfig(
                name="primary",
                kind=kind,
                base_url=url,
                api_key=Secret(KEY),
                policy=POLICY,
                polling=POLLING if kind == "dashscope" else None,
                breaker=THREE,
                fallback=("backup",),
                **primary_settings,
            ),
            ProviderConfig(
                name="backup",
                kind="openai",
                base_url=backup.openai_base_url,
                api_key=Secret(KEY),
                policy=POLICY,
            ),
        ]
    )


async def test_a_fallback_serves_every_item_of_a_batch_while_the_primary_is_down(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    gate = asyncio.Semaphore(4)
    async with _registry(sim, backup) as registry:
        llm = registry.openai("primary")

        async def item(i: int) -> str | None:
            async with gate:
                result = await llm.chat(f"item {i}")
                return result.provider

        served = await asyncio.gather(*(item(i) for i in range(40)))
        counts = await registry.state.counts()
    assert served == ["backup"] * 40
    # The breaker opened after 3 outage failures (plus what was already in flight).
    assert requests(sim, "chat") <= 3 + 4
    assert requests(backup, "chat") == 40
    assert counts[("primary", "", "saved_by_breaker")] >= 40 - 7
    assert counts[("primary", "unavailable", "fallbacks")] >= 40 - 7
    assert counts[("primary", "server_error", "fallbacks")] >= 3


async def test_images_from_dashscope_fall_back_to_an_openai_provider(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    async with _registry(sim, backup, kind="dashscope") as registry:
        wanx = registry.dashscope("primary")
        images = await wanx.generate_images("a lighthouse", size="512*512")
        assert images[0].provider == "backup"
        assert images[0].url is not None
        assert images[0].url.startswith(backup.url)
        with serving() as served:
            result = await ImagePipeline(wanx).run("a harbour")
        assert result.provider == "backup"
        assert served.provider == "backup"
    assert backup.stats()["prompts"]["a lighthouse"]["routes"] == {"images": 1}


async def test_a_fallback_answers_images_asked_as_bytes_with_bytes(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    async with _registry(sim, backup) as registry:
        images = await registry.openai("primary").generate_images(
            "a lighthouse", size="256x256", response_format="b64_json"
        )
    assert images[0].provider == "backup"
    assert images[0].url is None
    assert images[0].data is not None
    assert images[0].data.startswith(b"\x89PNG")
    assert backup.stats()["prompts"]["a lighthouse"]["routes"] == {"images": 1}


async def test_a_healthy_primary_serves_and_says_so(sim: SimServer, backup: SimServer) -> None:
    async with _registry(sim, backup) as registry:
        result = await registry.openai("primary").chat("hello")
        with serving() as served:
            image = await ImagePipeline(registry.openai("primary")).run("a cat")
    assert result.provider == "primary"
    assert image.provider == "primary"
    assert served.providers == ["primary"]
    assert requests(backup, "chat") == 0


async def test_failures_the_chain_does_not_allow_stay_on_the_primary(
    sim: SimServer, backup: SimServer
) -> None:
    async with _registry(sim, backup) as registry:
        with pytest.raises(GiveUp) as failed:
            await registry.openai("primary").chat(
                "hello", headers={"X-Regen-Fault": "invalid_param"}
            )
    assert failed.value.kind is Kind.BAD_REQUEST
    assert requests(backup, "chat") == 0


async def test_fallback_on_can_hand_over_rate_limits_too(sim: SimServer, backup: SimServer) -> None:
    on = frozenset({Kind.RATE_LIMITED, Kind.SERVER_ERROR})
    async with _registry(sim, backup, fallback_on=on) as registry:
        result = await registry.openai("primary").chat(
            "hello", headers={"X-Regen-Fault": "rate_limit"}
        )
    assert result.provider == "backup"


async def test_a_non_idempotent_call_without_a_key_never_falls_back(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    once = POLICY.replace(idempotent=False)
    async with _registry(sim, backup) as registry:
        llm = registry.openai("primary")
        with pytest.raises(GiveUp):
            await llm.chat("pay", policy=once)
        keyed = await llm.chat("pay", policy=once.replace(idempotency_key="order-1"))
    assert requests(backup, "chat") == 1
    assert keyed.provider == "backup"


async def test_when_every_provider_is_open_the_call_fails_unavailable(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    backup.outage(60)
    async with _registry(sim, backup) as registry:
        registry.add(
            ProviderConfig(
                name="backup",
                kind="openai",
                base_url=backup.openai_base_url,
                api_key=Secret(KEY),
                policy=POLICY,
                breaker=THREE,
            )
        )
        llm = registry.openai("primary")
        for _ in range(3):
            with pytest.raises(GiveUp):
                await llm.chat("hello")
        seen = requests(sim, "chat"), requests(backup, "chat")
        with pytest.raises(GiveUp) as refused:
            await llm.chat("hello")
    assert refused.value.kind is Kind.UNAVAILABLE
    assert "every provider of the chain" in refused.value.last.message  # type: ignore[union-attr]
    assert (requests(sim, "chat"), requests(backup, "chat")) == seen
