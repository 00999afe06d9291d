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
    StreamChunk,
    StreamEvent,
    StreamReset,
    serving,
)
from regen.retry import GiveUp, Kind, Policy, classify
from regen.sim import SimServer, run_simulator

from .conftest import KEY, POLLING, fault, requests

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
    fallback = primary_settings.pop("fallback", ("backup",))
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
                fallback=fallback,
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


# --- streams -----------------------------------------------------------------------------


def _text(events: list[StreamEvent]) -> str:
    assert not any(isinstance(e, StreamReset) for e in events)
    return "".join(e.text for e in events if isinstance(e, StreamChunk))


async def test_a_stream_opened_while_the_primary_is_down_comes_from_the_fallback(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    async with _registry(sim, backup) as registry:
        llm = registry.openai("primary")
        with serving() as served:
            streams = [[e async for e in llm.stream(f"story {i}")] for i in range(5)]
        expected = (await registry.openai("backup").chat("story 0")).text
        counts = await registry.state.counts()
        breakers = await registry.breakers()
    assert _text(streams[0]) == expected  # whole, without a reset
    assert all(_text(events) for events in streams)
    assert served.providers == ["backup"] * 5
    # Three streams failed on the primary before their first text; its breaker opened.
    assert requests(sim, "chat_stream") == 3
    assert requests(backup, "chat_stream") == 5
    assert breakers["breaker:primary:gpt-4o-mini"]["state"] == "open"
    assert counts[("primary", "server_error", "fallbacks")] == 3
    assert counts[("primary", "unavailable", "fallbacks")] == 2
    assert counts[("primary", "", "saved_by_breaker")] == 2


@pytest.mark.parametrize("spec", ["empty_choices", "html_200"])
async def test_a_stream_whose_opening_fails_goes_to_the_fallback(
    sim: SimServer, backup: SimServer, spec: str
) -> None:
    async with _registry(sim, backup) as registry:
        with serving() as served:
            texts = [
                t async for t in registry.openai("primary").stream_once("hi", headers=fault(spec))
            ]
        counts = await registry.state.counts()
    assert "".join(texts)
    assert served.providers == ["backup"]
    assert counts[("primary", "bad_response", "failures")] == 1
    assert counts[("primary", "bad_response", "fallbacks")] == 1


@pytest.mark.parametrize(
    ("spec", "kind"), [("stream_cut", Kind.CONNECTION), ("stream_error_event", Kind.SERVER_ERROR)]
)
async def test_a_stream_that_already_sent_text_fails_on_its_own_provider(
    sim: SimServer, backup: SimServer, spec: str, kind: Kind
) -> None:
    async with _registry(sim, backup) as registry:
        llm = registry.openai("primary")
        received: list[str] = []

        async def read() -> None:
            async for text in llm.stream_once("a story", headers=fault(spec)):
                received.append(text)

        with serving() as served, pytest.raises(Exception) as failed:  # noqa: PT011 - kind below
            await read()
        assert received  # text was yielded before the failure
        assert classify(failed.value).kind is kind
        assert served.providers == []
        # Under a policy, the retry announces a reset and streams again from the start.
        with serving() as served:
            events = [e async for e in llm.stream("a story", headers=fault(f"{spec}*1"))]
        counts = await registry.state.counts()
    assert [e.kind for e in events if isinstance(e, StreamReset)] == [kind]
    assert served.providers == ["primary"]
    assert requests(backup, "chat_stream") == 0
    assert counts[("primary", str(kind), "failures")] == 2


async def test_a_non_idempotent_stream_without_a_key_never_falls_back(
    sim: SimServer, backup: SimServer
) -> None:
    sim.outage(60)
    once = POLICY.replace(idempotent=False)
    async with _registry(sim, backup) as registry:
        llm = registry.openai("primary")
        with pytest.raises(GiveUp):
            await llm.complete("pay", stream=True, policy=once)
        assert requests(backup, "chat_stream") == 0
        with serving() as served:
            keyed = once.replace(idempotency_key="order-1")
            text = await llm.complete("pay", stream=True, policy=keyed)
    assert text
    assert served.providers == ["backup"]
    assert requests(backup, "chat_stream") == 1


# --- image downloads -------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["fake_image:html", "truncated_image"])
async def test_images_that_cannot_be_downloaded_open_their_providers_breaker(
    sim: SimServer, backup: SimServer, spec: str
) -> None:
    async with _registry(sim, backup, fallback=()) as registry:
        pipeline = ImagePipeline(registry.openai("primary"))
        with pytest.raises(GiveUp) as failed:
            await pipeline.run("a cat", headers=fault(spec))
        assert failed.value.kind is Kind.BAD_CONTENT
        breakers = await registry.breakers()
        with pytest.raises(GiveUp) as refused:
            await pipeline.run("a dog")
    assert breakers["breaker:primary:dall-e-3"]["state"] == "open"
    assert breakers["breaker:primary:dall-e-3"]["kind"] == "bad_content"
    assert refused.value.kind is Kind.UNAVAILABLE
    # Three images made and three downloads failed; the next item sent nothing.
    assert requests(sim, "images") == 3
    assert requests(sim, "file") == 3


@pytest.mark.parametrize("kind", ["openai", "dashscope"])
async def test_an_image_its_provider_cannot_deliver_comes_from_the_fallback(
    sim: SimServer, backup: SimServer, kind: str
) -> None:
    async with _registry(sim, backup, kind=kind) as registry:
        adapter = (
            registry.dashscope("primary") if kind == "dashscope" else registry.openai("primary")
        )
        pipeline = ImagePipeline(adapter)
        with serving() as served:
            results = [
                await pipeline.run(f"a cat {i}", headers=fault("fake_image:html")) for i in range(5)
            ]
        counts = await registry.state.counts()
    assert [r.provider for r in results] == ["backup"] * 5
    assert served.providers == ["backup"] * 5
    assert all(r.attempts == 1 for r in results)  # handed over within the attempt
    assert all((r.image.url or "").startswith(backup.url) for r in results)
    # The primary's breaker opened after three images its host could not deliver.
    assert requests(sim, "file") == 3
    assert sim.stats()["routes"]["file"]["outcomes"] == {"fake_image": 3}
    assert counts[("primary", "bad_content", "fallbacks")] == 3
    assert counts[("primary", "unavailable", "fallbacks")] == 2
