"""Seed 000 §6.1: the image retry wrapper, with the one-attempt function monkeypatched; and
every failure type of §4.1 against the simulator's DashScope (real HTTP, no mocks)."""

from __future__ import annotations

import os
import pickle
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from examples.daily_news import images
from examples.daily_news.images import (
    AliyunImageClient,
    GeneratedPicture,
    ImageGenerationAbandoned,
    generate_image_with_retry,
    image_policy,
)

import regen
from regen import ConfigError, Kind
from regen.providers import APIError, image_from_bytes
from regen.retry import Failure
from regen.sim import SimServer, render_png, run_simulator

KEY = "sk-test-daily-news-0123456789"
PROMPT = "每日新闻配图：长江流域迎来今年首场大范围降雨"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's defaults: no ALIYUN_IMAGE_* or DASHSCOPE_* from the machine running tests."""
    for name in list(os.environ):
        if name.startswith(("ALIYUN_IMAGE_", "DASHSCOPE_")):
            monkeypatch.delenv(name)


def picture() -> GeneratedPicture:
    return GeneratedPicture(image_from_bytes(render_png(PROMPT, 64, 64)), url=None)


class FakeGenerate:
    """Stands in for ``generate_aliyun_image`` (ONE attempt): raises or returns in turn."""

    def __init__(self, *outcomes: BaseException | GeneratedPicture) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, prompt: str, **kwargs: Any) -> GeneratedPicture:
        self.calls += 1
        outcome = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def patch(
    monkeypatch: pytest.MonkeyPatch,
    *outcomes: BaseException | GeneratedPicture,
) -> FakeGenerate:
    fake = FakeGenerate(*outcomes)
    monkeypatch.setattr(images, "generate_aliyun_image", fake)
    return fake


CLIENT = AliyunImageClient("http://127.0.0.1:9/api/v1", KEY)  # never called: patched


# --- the seed's three tests ---------------------------------------------------------------


async def test_two_timeouts_then_success_retries_and_succeeds_on_attempt_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = patch(monkeypatch, TimeoutError("生图请求超时"), TimeoutError("下载超时"), picture())
    with regen.test_mode() as clock:
        outcome = await generate_image_with_retry(PROMPT, client=CLIENT)
    assert fake.calls == 3
    assert outcome.attempts == 3
    assert clock.sleeps == [2.0, 2.0]  # ALIYUN_IMAGE_RETRY_SLEEP_S, fixed
    assert [a.kind for a in outcome.history] == [Kind.TIMEOUT, Kind.TIMEOUT]
    assert outcome.errors == [
        "timeout: TimeoutError: 生图请求超时",
        "timeout: TimeoutError: 下载超时",
    ]
    assert outcome.summary()["give_up"] is False


async def test_three_timeouts_raise_image_generation_abandoned_with_3_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = patch(monkeypatch, TimeoutError("生图请求超时"))
    with regen.test_mode() as clock, pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=CLIENT)
    error = caught.value
    assert fake.calls == 3
    assert len(error.attempts) == 3
    assert isinstance(error, regen.GiveUp)
    assert error.errors == ["timeout: TimeoutError: 生图请求超时"] * 3
    assert error.kind is Kind.TIMEOUT
    assert error.prompt == PROMPT
    assert clock.sleeps == [2.0, 2.0]
    assert error.summary()["attempts"] == 3
    assert error.summary()["give_up"] is True


class HttpError(Exception):
    """An API client's HTTP error, as the seed's code raises them."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConfigError("api_key missing"), Kind.CONFIG),
        (RuntimeError("api_key missing"), Kind.CONFIG),
        (HttpError(401, "Unauthorized"), Kind.AUTH),
        (HttpError(403, "AccessDenied"), Kind.AUTH),
        (RuntimeError("HTTP 401: InvalidApiKey"), Kind.AUTH),
        (HttpError(400, "InvalidParameter: size 999*999 is not supported"), Kind.BAD_REQUEST),
        (
            APIError(
                "aliyun: HTTP 400 InvalidParameter: model not found",
                Failure.of(Kind.BAD_REQUEST, "InvalidParameter", status=400),
            ),
            Kind.BAD_REQUEST,
        ),
    ],
    ids=[
        "config-missing-key",
        "seed-missing-key",
        "401",
        "403",
        "seed-401",
        "bad-size",
        "bad-model",
    ],
)
async def test_non_retryable_errors_are_called_once(
    monkeypatch: pytest.MonkeyPatch, error: Exception, kind: Kind
) -> None:
    fake = patch(monkeypatch, error, picture())
    with regen.test_mode() as clock, pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=CLIENT)
    assert fake.calls == 1
    assert len(caught.value.attempts) == 1
    assert caught.value.kind is kind
    assert clock.sleeps == []
    assert caught.value.__cause__ is error


async def test_a_sync_one_attempt_function_works_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def generate(prompt: str, **kwargs: Any) -> GeneratedPicture:
        calls.append(prompt)
        if len(calls) == 1:
            raise RuntimeError("图片生成超时")  # the seed's plain error with a message
        return picture()

    monkeypatch.setattr(images, "generate_aliyun_image", generate)
    with regen.test_mode():
        outcome = await generate_image_with_retry(PROMPT, client=CLIENT)
    assert outcome.attempts == 2
    assert outcome.history[0].kind is Kind.TIMEOUT


async def test_abandoned_pickles_with_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    patch(monkeypatch, TimeoutError("超时"))
    with regen.test_mode(), pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=CLIENT)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert len(copy.attempts) == 3
    assert copy.errors == caught.value.errors
    assert copy.prompt == PROMPT


# --- the policy: the seed's variables and defaults ---------------------------------------


def test_policy_defaults_are_the_seeds() -> None:
    policy = image_policy()
    assert policy.attempts == 3
    assert (policy.wait, policy.multiplier) == (2.0, 1.0)
    assert policy.phases["generate"] == 180.0
    assert policy.phases["download"] == 60.0
    assert policy.timeout == 240.0  # one attempt = generation + download


def test_policy_reads_the_aliyun_image_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIYUN_IMAGE_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("ALIYUN_IMAGE_RETRY_SLEEP_S", "0.5")
    monkeypatch.setenv("ALIYUN_IMAGE_TIMEOUT_S", "30")
    monkeypatch.setenv("ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S", "10")
    policy = image_policy()
    assert (policy.attempts, policy.wait, policy.timeout) == (5, 0.5, 40.0)
    assert policy.phases["generate"] == 30.0
    assert policy.phases["download"] == 10.0


def test_a_bad_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIYUN_IMAGE_MAX_ATTEMPTS", "three")
    with pytest.raises(ConfigError, match="ALIYUN_IMAGE_MAX_ATTEMPTS"):
        image_policy()


async def test_max_attempts_from_the_environment_bounds_the_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIYUN_IMAGE_MAX_ATTEMPTS", "5")
    fake = patch(monkeypatch, TimeoutError("超时"))
    with regen.test_mode(), pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=CLIENT)
    assert fake.calls == 5
    assert len(caught.value.attempts) == 5
    assert len(caught.value.errors) == 3  # the last three only


# --- one real attempt against the simulator: what is retried, what is not ------------------

FAST = {
    "ALIYUN_IMAGE_TIMEOUT_S": "0.5",
    "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.01",
    "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "0.5",
}


@pytest.fixture(scope="module")
def _sim() -> Iterator[SimServer]:
    with run_simulator(task_seconds=0.05) as server:
        yield server


@pytest.fixture
def sim(_sim: SimServer) -> SimServer:
    _sim.reset()
    return _sim


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[AliyunImageClient]:
    aliyun = AliyunImageClient(sim.dashscope_base_url, KEY, poll_interval=0.01)
    yield aliyun
    await aliyun.aclose()


def submits(sim: SimServer, prompt: str = PROMPT) -> int:
    entry = sim.stats()["prompts"].get(prompt, {})
    return int(entry.get("routes", {}).get("dashscope_submit", 0))


async def test_one_attempt_generates_downloads_and_checks_an_image(
    client: AliyunImageClient,
    sim: SimServer,
) -> None:
    got = await images.generate_aliyun_image(PROMPT, client=client)
    assert got.image.info.format == "png"
    assert got.image.info.width == 1024
    assert got.task_id
    assert got.url
    assert got.url.startswith(sim.url)
    assert sim.stats()["prompts"][PROMPT]["produced"] == 1


@pytest.mark.parametrize(
    ("steps", "kind"),
    [
        (["hang"], Kind.TIMEOUT),  # the request never answers
        (["task_stuck"], Kind.TIMEOUT),  # the task stays RUNNING past ALIYUN_IMAGE_TIMEOUT_S
        (["reset"], Kind.CONNECTION),
        (["missing_fields"], Kind.BAD_RESPONSE),  # no task id
        (["html_200"], Kind.BAD_RESPONSE),
        (["fake_image"], Kind.BAD_CONTENT),  # ~330 bytes of XML saved as .png
        (["fake_image:html"], Kind.BAD_CONTENT),  # an HTML error page
        (["truncated_image"], Kind.BAD_CONTENT),
        (["url_expired"], Kind.BAD_CONTENT),
        (["server_error"], Kind.SERVER_ERROR),
        (["task_failed"], Kind.SERVER_ERROR),
    ],
)
async def test_weather_is_retried_with_a_new_image(
    client: AliyunImageClient, sim: SimServer, steps: list[str], kind: Kind
) -> None:
    sim.script({"prompt": PROMPT, "steps": [*steps, "ok"]})
    outcome = await generate_image_with_retry(PROMPT, client=client, policy=image_policy(FAST))
    assert outcome.attempts == 2
    assert [a.kind for a in outcome.history] == [kind]
    assert outcome.picture.image.info.format == "png"
    assert submits(sim) == 2  # a failed download regenerates: a second task, not a re-fetch


@pytest.mark.parametrize(
    ("steps", "kind"),
    [
        (["auth"], Kind.AUTH),
        (["permission"], Kind.AUTH),
        (["invalid_param"], Kind.BAD_REQUEST),
        (["unknown_model"], Kind.BAD_REQUEST),
        (["content_policy"], Kind.CONTENT_POLICY),
    ],
)
async def test_refusals_fail_at_once(
    client: AliyunImageClient, sim: SimServer, steps: list[str], kind: Kind
) -> None:
    sim.script({"prompt": PROMPT, "steps": [*steps, "ok"]})
    with pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=client, policy=image_policy(FAST))
    assert len(caught.value.attempts) == 1
    assert caught.value.kind is kind
    assert submits(sim) == 1


async def test_an_unsupported_size_or_model_fails_at_once(sim: SimServer) -> None:
    for settings in ({"size": "1024x1024"}, {"size": "9999*9999"}, {"model": "wanx-nope"}):
        aliyun = AliyunImageClient(sim.dashscope_base_url, KEY, poll_interval=0.01, **settings)
        try:
            with pytest.raises(ImageGenerationAbandoned) as caught:
                await generate_image_with_retry(PROMPT, client=aliyun, policy=image_policy(FAST))
        finally:
            await aliyun.aclose()
        assert len(caught.value.attempts) == 1
        assert caught.value.kind is Kind.BAD_REQUEST


async def test_a_missing_key_fails_before_any_request(sim: SimServer) -> None:
    aliyun = AliyunImageClient(sim.dashscope_base_url, None)
    with pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=aliyun, policy=image_policy(FAST))
    assert len(caught.value.attempts) == 1
    assert caught.value.kind is Kind.CONFIG
    assert "api_key missing" in caught.value.errors[0]
    assert sim.stats()["requests"] == 0


async def test_three_bad_downloads_give_up_after_three_images(
    client: AliyunImageClient, sim: SimServer
) -> None:
    sim.script({"prompt": PROMPT, "then": "fake_image"})
    with pytest.raises(ImageGenerationAbandoned) as caught:
        await generate_image_with_retry(PROMPT, client=client, policy=image_policy(FAST))
    error = caught.value
    assert len(error.attempts) == 3
    assert len(error.errors) == 3
    assert all(e.startswith("bad_content: BadContent:") for e in error.errors)
    assert submits(sim) == 3
    assert sim.stats()["prompts"][PROMPT]["produced"] == 3


def test_the_client_never_shows_its_key() -> None:
    shown = repr(AliyunImageClient("https://dashscope.aliyuncs.com/api/v1", KEY))
    assert KEY not in shown
    assert "…6789" in shown


async def test_a_generation_longer_than_the_adapters_poll_deadline_waits_for_timeout_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The built-in poll deadline (180 s) shrunk to 0.2 s, so that a generation longer than it
    # takes under a second here: ALIYUN_IMAGE_TIMEOUT_S, not that deadline, bounds the wait.
    monkeypatch.setattr(images, "DEFAULT_TIMEOUT_S", 0.2)
    policy = image_policy({**FAST, "ALIYUN_IMAGE_TIMEOUT_S": "3", "ALIYUN_IMAGE_MAX_ATTEMPTS": "1"})
    with run_simulator(task_seconds=0.6) as slow:
        aliyun = AliyunImageClient(slow.dashscope_base_url, KEY, poll_interval=0.05)
        try:
            outcome = await generate_image_with_retry(PROMPT, client=aliyun, policy=policy)
        finally:
            await aliyun.aclose()
    assert outcome.attempts == 1
    assert outcome.picture.image.info.format == "png"


async def test_a_generation_past_timeout_s_is_an_attempt_timeout_not_a_poll_deadline() -> None:
    policy = image_policy(
        {**FAST, "ALIYUN_IMAGE_TIMEOUT_S": "0.3", "ALIYUN_IMAGE_MAX_ATTEMPTS": "1"}
    )
    with run_simulator(task_seconds=5) as slow:
        aliyun = AliyunImageClient(slow.dashscope_base_url, KEY, poll_interval=0.05)
        try:
            with pytest.raises(ImageGenerationAbandoned) as caught:
                await generate_image_with_retry(PROMPT, client=aliyun, policy=policy)
        finally:
            await aliyun.aclose()
    assert caught.value.errors == ["timeout: AttemptTimeout: phase 'generate' timed out after 0.3s"]
