"""Generate + download as one attempt: a bad download regenerates, under one attempt budget."""

from __future__ import annotations

import logging

import pytest

from regen.providers import DashScopeProvider, ImagePipeline, ImageResult, OpenAIProvider
from regen.retry import GiveUp, Kind, Policy
from regen.sim import SimServer

from .conftest import fault, requests

PROMPT = "a harbour at dawn"


def pipeline(provider: OpenAIProvider | DashScopeProvider, **settings: object) -> ImagePipeline:
    policy = Policy(
        **{
            "attempts": 3,
            "timeout": 2.0,
            "wait": 0.01,  # type: ignore[arg-type]
            **settings,
        }
    )
    return ImagePipeline(provider, policy=policy)


async def test_an_image_is_generated_downloaded_and_described(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    result = await pipeline(openai).run(PROMPT, size="512x512")
    assert isinstance(result, ImageResult)
    assert (result.image.info.format, result.image.info.width) == ("png", 512)
    assert result.attempts == 1
    assert result.history == ()
    assert result.errors == []
    summary = result.to_dict()
    assert summary["sha256"] == result.image.info.sha256
    assert summary["attempts"] == 1
    assert requests(sim, "images") == 1
    assert requests(sim, "file") == 1


async def test_b64_json_images_need_no_download(openai: OpenAIProvider, sim: SimServer) -> None:
    result = await pipeline(openai).run(PROMPT, response_format="b64_json", size="256x256")
    assert result.image.url is None
    assert result.image.info.width == 256
    assert requests(sim, "file") == 0


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("fake_image*1", Kind.BAD_CONTENT),
        ("fake_image:html*1", Kind.BAD_CONTENT),
        ("url_expired*1", Kind.BAD_CONTENT),
        ("truncated_image*1", Kind.BAD_CONTENT),
        ("missing_fields*1", Kind.BAD_RESPONSE),
        ("hang*1", Kind.TIMEOUT),
        ("server_error*1", Kind.SERVER_ERROR),
    ],
)
async def test_a_failed_generation_or_download_regenerates(
    openai: OpenAIProvider, sim: SimServer, spec: str, kind: Kind
) -> None:
    result = await pipeline(openai, timeout=0.5).run(PROMPT, headers=fault(spec))
    assert result.attempts == 2
    assert [a.kind for a in result.history] == [kind]
    assert result.image.info.format == "png"
    assert requests(sim, "images") == 2  # a new image, not a second try at the same URL
    assert sim.stats()["prompts"][PROMPT]["produced"] in (1, 2)


async def test_a_hung_download_regenerates_after_the_download_timeout(
    openai: OpenAIProvider, sim: SimServer
) -> None:
    result = await pipeline(openai, phases={"download": 0.3}).run(
        PROMPT, download_headers=fault("hang*1")
    )
    assert [(a.kind, a.reason) for a in result.history] == [(Kind.TIMEOUT, "download")]
    assert requests(sim, "images") == 2
    assert requests(sim, "file") == 2


async def test_a_generation_timeout_is_named(openai: OpenAIProvider) -> None:
    result = await pipeline(openai, timeout=0.3).run(PROMPT, headers=fault("slow:1*1"))
    assert [(a.kind, a.reason) for a in result.history] == [(Kind.TIMEOUT, "generate")]


async def test_gives_up_after_max_attempts_with_the_last_errors(
    sim: SimServer, openai: OpenAIProvider
) -> None:
    env = {
        "ALIYUN_IMAGE_MAX_ATTEMPTS": "3",
        "ALIYUN_IMAGE_RETRY_SLEEP_S": "0",
        "ALIYUN_IMAGE_TIMEOUT_S": "2",
        "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "1",
    }
    policy = Policy.from_env("ALIYUN_IMAGE", env)
    with pytest.raises(GiveUp) as caught:
        await ImagePipeline(openai, policy=policy).run(PROMPT, headers=fault("fake_image"))
    error = caught.value
    assert error.kind is Kind.BAD_CONTENT
    assert len(error.attempts) == 3
    assert len(error.errors) == 3
    assert all("bad_content" in e for e in error.errors)
    assert requests(sim, "images") == 3


async def test_auth_fails_at_once(openai: OpenAIProvider, sim: SimServer) -> None:
    with pytest.raises(GiveUp) as caught:
        await pipeline(openai).run(PROMPT, headers=fault("auth"))
    assert caught.value.kind is Kind.AUTH
    assert requests(sim, "images") == 1
    assert requests(sim, "file") == 0


async def test_dashscope_tasks_feed_the_pipeline(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    result = await pipeline(dashscope).run(PROMPT, headers=fault("fake_image*1"), size="720*1280")
    assert (result.image.info.width, result.image.info.height) == (720, 1280)
    assert [a.kind for a in result.history] == [Kind.BAD_CONTENT]
    assert requests(sim, "dashscope_submit") == 2


async def test_the_users_on_retry_hook_still_runs(
    openai: OpenAIProvider, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []
    with caplog.at_level(logging.INFO, logger="regen.retry"):
        await pipeline(openai, on_retry=lambda a: seen.append(a.number)).run(
            PROMPT, headers=fault("fake_image*1")
        )
    assert seen == [1]
    assert "attempt 1 of 3 failed (bad_content)" in caplog.text


def test_run_sync(sim: SimServer) -> None:
    provider = OpenAIProvider(sim.openai_base_url, "sk-sync-0123456789abcd")
    assert ImagePipeline(provider).run_sync(PROMPT).image.info.format == "png"
