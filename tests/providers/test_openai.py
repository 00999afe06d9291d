"""OpenAI-compatible chat and images against the simulator: every fault row that applies,
with its kind, its verdict, and the requests the simulator saw."""

from __future__ import annotations

import time

import pytest

from regen.providers import APIError, BadResponse, OpenAIProvider, download_image, image_info
from regen.retry import Attempt, GiveUp, Kind, Policy, test_mode
from regen.sim import SimServer

from .conftest import fault, requests


async def give_up(coro: object) -> GiveUp:
    with pytest.raises(GiveUp) as caught:
        await coro  # type: ignore[misc]
    return caught.value


# --- fail at once --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "status"),
    [
        ("auth", Kind.AUTH, 401),
        ("permission", Kind.AUTH, 403),
        ("quota", Kind.QUOTA_EXHAUSTED, 429),
        ("quota:402", Kind.QUOTA_EXHAUSTED, 402),
        ("content_policy", Kind.CONTENT_POLICY, 400),
        ("invalid_param", Kind.BAD_REQUEST, 400),
        ("unknown_model", Kind.BAD_REQUEST, 404),
    ],
)
async def test_chat_fails_at_once(
    openai: OpenAIProvider, sim: SimServer, spec: str, kind: Kind, status: int
) -> None:
    error = await give_up(openai.chat("hello", headers=fault(spec)))
    assert error.kind is kind
    assert error.last is not None
    assert not error.last.retry
    assert error.last.status == status
    assert len(error.attempts) == 1
    assert isinstance(error.__cause__, APIError)
    assert requests(sim, "chat") == 1


async def test_an_unknown_model_name_fails_at_once(openai: OpenAIProvider, sim: SimServer) -> None:
    error = await give_up(openai.chat("hello", model="no-such-model"))
    assert error.kind is Kind.BAD_REQUEST
    assert requests(sim, "chat") == 1


async def test_retry_after_longer_than_allowed_gives_up_without_waiting(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    started = time.monotonic()
    error = await give_up(openai.chat("hello", headers=fault("retry_after_long")))
    assert error.kind is Kind.RATE_LIMITED
    assert error.last is not None
    assert error.last.reason == "retry_after_too_long"
    assert time.monotonic() - started < 1
    assert requests(sim, "chat") == 1


# --- retried -------------------------------------------------------------------------------


async def test_rate_limit_waits_for_retry_after_then_succeeds(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    failed: list[Attempt] = []
    policy = Policy(attempts=3, timeout=5, wait=0.01, on_retry=failed.append)
    started = time.monotonic()
    result = await openai.chat("hello", headers=fault("rate_limit:1*1"), policy=policy)
    assert result.text
    assert time.monotonic() - started >= 1.0
    assert [(a.kind, a.retry, a.status, a.wait) for a in failed] == [
        (Kind.RATE_LIMITED, True, 429, 1.0)
    ]
    assert requests(sim, "chat") == 2


async def test_rate_limit_burst_backs_off_exponentially(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    # A burst of three 429s without Retry-After (scripted: the simulator's burst carries
    # on over requests that name no fault of their own).
    sim.script({"prompt": "hello", "steps": ["rate_limit_burst:3"]})
    failed: list[Attempt] = []
    policy = Policy(
        attempts=4, timeout=5, wait=0.5, multiplier=2, max_wait=8, on_retry=failed.append
    )
    with test_mode() as clock:
        result = await openai.chat("hello", policy=policy)
    assert result.text
    assert [(a.kind, a.retry, a.status) for a in failed] == [(Kind.RATE_LIMITED, True, 429)] * 3
    assert clock.sleeps == [0.5, 1.0, 2.0]  # type: ignore[attr-defined]
    assert requests(sim, "chat") == 4
    assert sim.stats()["routes"]["chat"]["statuses"] == {"429": 3, "200": 1}


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("server_error*1", Kind.SERVER_ERROR),
        ("bad_gateway_html*1", Kind.SERVER_ERROR),
        ("overloaded*1", Kind.SERVER_ERROR),
        ("reset*1", Kind.CONNECTION),
        ("html_200*1", Kind.BAD_RESPONSE),
        ("empty_choices*1", Kind.BAD_RESPONSE),
        ("missing_fields*1", Kind.BAD_RESPONSE),
        ("hang*1", Kind.TIMEOUT),
        ("slow:1*1", Kind.TIMEOUT),
    ],
)
async def test_chat_retries_transient_faults(
    openai: OpenAIProvider, sim: SimServer, spec: str, kind: Kind
) -> None:
    kinds: list[Kind] = []
    policy = Policy(attempts=3, timeout=0.3, wait=0.01, on_retry=lambda a: kinds.append(a.kind))
    result = await openai.chat("hello", headers=fault(spec), policy=policy)
    assert result.text.startswith("Simulated reply")
    assert kinds == [kind]
    assert requests(sim, "chat") == 2


@pytest.mark.parametrize("spec", ["empty_choices", "missing_fields"])
async def test_a_reply_without_choices_says_whether_they_were_empty_or_missing(
    openai: OpenAIProvider, spec: str
) -> None:
    reasons: list[str] = []
    policy = Policy(attempts=2, wait=0, on_retry=lambda a: reasons.append(a.reason))
    await openai.chat("hello", headers=fault(f"{spec}*1"), policy=policy)
    assert reasons == [spec]


async def test_chat_gives_up_after_its_attempts(openai: OpenAIProvider, sim: SimServer) -> None:
    error = await give_up(openai.chat("hello", headers=fault("server_error")))
    assert error.kind is Kind.SERVER_ERROR
    assert [a.number for a in error.attempts] == [1, 2, 3]
    assert len(error.errors) == 3
    assert requests(sim, "chat") == 3


async def test_a_slow_answer_within_the_timeout_succeeds(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    result = await openai.chat("hello", headers=fault("slow:0.1"))
    assert result.finish_reason == "stop"
    assert requests(sim, "chat") == 1


async def test_keepalive_blank_lines_before_a_plain_reply_parse(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    result = await openai.chat("hello", headers=fault("keepalive_noise"))
    assert result.text == (await openai.chat("hello")).text
    stats = sim.stats()
    assert stats["faults"] == {"keepalive_noise": 1}  # the blank lines were sent
    assert stats["routes"]["chat"]["outcomes"] == {"keepalive_noise": 1, "ok": 1}
    assert requests(sim, "chat") == 2


async def test_html_200_is_a_bad_response_naming_it(openai: OpenAIProvider) -> None:
    with pytest.raises(BadResponse) as caught:
        await openai.chat_once("hello", headers=fault("html_200"))
    assert caught.value.reason == "html_200"
    assert caught.value.retry


async def test_chat_result_carries_usage_and_model(openai: OpenAIProvider) -> None:
    result = await openai.chat(
        [{"role": "user", "content": "hi"}], model="deepseek-chat", max_tokens=5
    )
    assert result.model == "deepseek-chat"
    assert result.finish_reason == "length"
    assert result.usage["completion_tokens"] == 5


async def test_list_models(openai: OpenAIProvider) -> None:
    assert "jimeng-4.0" in await openai.list_models()


def test_sync_wrappers_run_without_an_event_loop(sim: SimServer) -> None:
    provider = OpenAIProvider(sim.openai_base_url, "sk-sync-0123456789abcd")
    assert provider.complete_sync("hello").startswith("Simulated reply")
    assert provider.chat_sync("again").text  # a second asyncio.run reopens the transport
    assert provider.generate_image_sync("a cat").url
    assert requests(sim, "chat") == 2


async def test_sync_wrappers_refuse_a_running_loop(openai: OpenAIProvider) -> None:
    with pytest.raises(RuntimeError, match="await"):
        openai.complete_sync("hello")


# --- images --------------------------------------------------------------------------------


async def test_image_urls_and_gateway_extras(openai: OpenAIProvider, sim: SimServer) -> None:
    images = await openai.generate_images(
        "a lighthouse",
        n=2,
        model="jimeng-4.0",
        ratio="16:9",
        resolution="1k",
        negative_prompt="blurry",
    )
    assert [i.index for i in images] == [0, 1]
    assert all(i.url and i.url.startswith(sim.url) for i in images)
    assert sim.stats()["prompts"]["a lighthouse"]["produced"] == 2
    assert images[0].url is not None
    image = await download_image(images[0].url, transport=openai.transport)
    assert image.info.width * 9 == image.info.height * 16  # the ratio reached the gateway


async def test_b64_json_images_arrive_as_bytes(openai: OpenAIProvider) -> None:
    image = await openai.generate_image("a cat", response_format="b64_json", size="256x256")
    assert image.url is None
    assert image.data is not None
    info = image_info(image.data)
    assert (info.format, info.width, info.height) == ("png", 256, 256)


@pytest.mark.parametrize(
    ("spec", "kind", "calls"),
    [
        ("missing_fields*1", Kind.BAD_RESPONSE, 2),
        ("html_200*1", Kind.BAD_RESPONSE, 2),
        ("server_error*1", Kind.SERVER_ERROR, 2),
        ("content_policy", Kind.CONTENT_POLICY, 1),
        ("content_policy:moderation_blocked", Kind.CONTENT_POLICY, 1),
        ("invalid_param", Kind.BAD_REQUEST, 1),
        ("unknown_model", Kind.BAD_REQUEST, 1),
        ("auth", Kind.AUTH, 1),
    ],
)
async def test_image_generation_faults(
    openai: OpenAIProvider, sim: SimServer, spec: str, kind: Kind, calls: int
) -> None:
    kinds: list[Kind] = []
    policy = Policy(attempts=3, timeout=2, wait=0.01, on_retry=lambda a: kinds.append(a.kind))
    call = openai.generate_images("a cat", headers=fault(spec), policy=policy)
    if calls == 1:
        error = await give_up(call)
        assert error.kind is kind
    else:
        images = await call
        assert images[0].url
        assert kinds == [kind]
    assert requests(sim, "images") == calls
