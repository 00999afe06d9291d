"""Streamed chat: cut, unfinished and erroring streams are retried, a failed attempt is
announced with a reset, and partial text is never a result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from regen.providers import (
    BadResponse,
    OpenAIProvider,
    StreamChunk,
    StreamEvent,
    StreamReset,
)
from regen.retry import GiveUp, Kind, Policy
from regen.sim import SimServer

from .conftest import fault, requests

PROMPT = "tell me a story"


async def collect(provider: OpenAIProvider, **kwargs: object) -> list[StreamEvent]:
    return [event async for event in provider.stream(PROMPT, **kwargs)]  # type: ignore[arg-type]


def text_after_last_reset(events: list[StreamEvent]) -> str:
    parts: list[str] = []
    for event in events:
        if isinstance(event, StreamReset):
            parts.clear()
        else:
            parts.append(event.text)
    return "".join(parts)


async def test_a_clean_stream_has_no_reset(openai: OpenAIProvider, sim: SimServer) -> None:
    events = await collect(openai)
    assert all(isinstance(e, StreamChunk) and e.attempt == 1 for e in events)
    full = (await openai.chat(PROMPT)).text
    assert text_after_last_reset(events) == full
    assert requests(sim, "chat_stream") == 1


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("stream_cut*1", Kind.CONNECTION),
        ("stream_cut:0.9*1", Kind.CONNECTION),
        ("stream_no_done*1", Kind.BAD_RESPONSE),
        ("stream_error_event*1", Kind.SERVER_ERROR),
        ("empty_choices*1", Kind.BAD_RESPONSE),
        ("html_200*1", Kind.BAD_RESPONSE),
        ("reset*1", Kind.CONNECTION),
        ("server_error*1", Kind.SERVER_ERROR),
        ("hang*1", Kind.TIMEOUT),
    ],
)
async def test_a_broken_stream_is_reset_and_retried(
    openai: OpenAIProvider, sim: SimServer, spec: str, kind: Kind
) -> None:
    policy = Policy(attempts=3, timeout=0.5, wait=0.01)
    events = await collect(openai, headers=fault(spec), policy=policy)
    resets = [e for e in events if isinstance(e, StreamReset)]
    assert len(resets) == 1
    assert resets[0].attempt == 1
    assert resets[0].kind is kind
    sent_before = sum(
        len(e.text) for e in events[: events.index(resets[0])] if isinstance(e, StreamChunk)
    )
    assert resets[0].discarded == sent_before
    assert all(
        e.attempt == 2 for e in events[events.index(resets[0]) + 1 :] if isinstance(e, StreamChunk)
    )
    assert text_after_last_reset(events) == (await openai.chat(PROMPT)).text
    assert requests(sim, "chat_stream") == 2


async def test_keepalive_comments_are_not_a_fault(openai: OpenAIProvider, sim: SimServer) -> None:
    events = await collect(openai, headers=fault("keepalive_noise"))
    assert not any(isinstance(e, StreamReset) for e in events)
    assert text_after_last_reset(events) == (await openai.chat(PROMPT)).text
    stats = sim.stats()
    assert stats["faults"] == {"keepalive_noise": 1}  # the comments were sent
    assert stats["routes"]["chat_stream"]["outcomes"] == {"keepalive_noise": 1}
    assert requests(sim, "chat_stream") == 1


async def test_complete_returns_only_the_whole_text(openai: OpenAIProvider, sim: SimServer) -> None:
    whole = await openai.complete(PROMPT, stream=True, headers=fault("stream_cut*2"))
    assert whole == await openai.complete(PROMPT)
    assert requests(sim, "chat_stream") == 3


async def test_a_stream_that_never_completes_gives_up(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    events: list[StreamEvent] = []

    async def consume() -> None:
        async for event in openai.stream(PROMPT, headers=fault("stream_cut")):
            events.append(event)

    with pytest.raises(GiveUp) as caught:
        await consume()
    assert caught.value.kind is Kind.CONNECTION
    assert len(caught.value.attempts) == 3
    # Two resets between three attempts; the last attempt's text is discarded by the raise.
    assert [e.attempt for e in events if isinstance(e, StreamReset)] == [1, 2]
    assert requests(sim, "chat_stream") == 3


async def test_complete_never_returns_partial_text(openai: OpenAIProvider) -> None:
    with pytest.raises(GiveUp):
        await openai.complete(PROMPT, stream=True, headers=fault("stream_no_done"))


async def test_stream_once_raises_on_a_missing_end(openai: OpenAIProvider) -> None:
    with pytest.raises(BadResponse) as caught:
        async for _ in openai.stream_once(PROMPT, headers=fault("stream_no_done")):
            pass
    assert caught.value.reason == "stream_no_done"


async def test_an_error_event_is_classified_by_its_code(openai: OpenAIProvider) -> None:
    with pytest.raises(GiveUp) as caught:
        await openai.complete(
            PROMPT, stream=True, headers=fault("stream_error_event"), policy=Policy(attempts=1)
        )
    assert caught.value.kind is Kind.SERVER_ERROR
    assert caught.value.last is not None
    assert caught.value.last.reason == "server_error"


async def test_content_policy_on_a_stream_fails_at_once(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    with pytest.raises(GiveUp) as caught:
        await collect(openai, headers=fault("content_policy"))
    assert caught.value.kind is Kind.CONTENT_POLICY
    assert requests(sim, "chat_stream") == 1


def connections_to(port: int) -> set[tuple[int, int]]:
    """The (local port, remote port) pairs of loopback TCP connections established to or
    from ``port``, from the kernel's table (both ends show when both are on this host)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("needs Linux's /proc/net/tcp to see the connections")
    found: set[tuple[int, int]] = set()
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = int(fields[1][-4:], 16), int(fields[2][-4:], 16), fields[3]
        if state == "01" and port in (local, remote):  # 01: ESTABLISHED
            found.add((local, remote))
    return found


async def test_a_consumer_that_stops_early_cancels_the_attempt(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    before = connections_to(sim.port)
    stream = openai.stream(PROMPT, headers=fault("hang"), policy=Policy(attempts=1, timeout=30))
    first = asyncio.ensure_future(anext(stream))
    # Until the request reaches the hanging simulator (its stats live on another thread,
    # with no event to wait on).
    while requests(sim, "chat_stream") == 0:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    opened = connections_to(sim.port) - before
    assert len(opened) == 2  # the client's end and the simulator's end of one connection
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await stream.aclose()
    # The attempt was cancelled with the consumer: its connection is closed, not left
    # hanging on the simulator nor put back in the pool.
    assert not opened & connections_to(sim.port)
    routes = sim.stats()["routes"]["chat_stream"]
    assert routes["outcomes"] == {"hang": 1}
    assert routes["statuses"] == {}  # never answered


async def test_breaking_out_of_a_stream_closes_it(openai: OpenAIProvider, sim: SimServer) -> None:
    async for event in openai.stream(PROMPT):
        assert isinstance(event, StreamChunk)
        break
    # The connection was dropped, not pooled with unread bytes: the next call works.
    assert (await openai.chat(PROMPT)).text
