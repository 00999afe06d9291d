"""The monitor against the real simulator: statuses, faults, Retry-After, quota, concurrency,
the schedule and the history, with no key ever shown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from regen.health import HealthMonitor, HealthSettings, UnknownProvider
from regen.providers import Registry
from regen.sim import SimServer, run_simulator
from regen.store import Store

from .conftest import KEY, TIMEOUT, WRONG_KEY, monitor, provider, requests


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition()`` in small steps until it is true (5 s at most)."""
    deadline = time.monotonic() + 5.0
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_statuses_are_unknown_before_the_first_check_and_send_nothing(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url))
    (status,) = watched.statuses()
    assert (status.name, status.status, status.last_check) == ("openai", "unknown", None)
    assert requests(sim, "models") == 0


async def test_a_healthy_provider_has_latency_quota_and_time(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url))
    before = time.time()
    (status,) = await watched.check()
    assert status.status == "healthy"
    assert status.error is None
    assert status.latency_ms is not None
    assert 0 < status.latency_ms < TIMEOUT * 1000
    assert status.last_check is not None
    assert before <= status.last_check <= time.time()
    # The simulator reports 9,999 of 10,000 requests and 1,999,000 of 2,000,000 tokens
    # left: the tokens are the tighter.
    assert status.quota_remaining == 99.95
    assert watched.status("openai") == status
    assert requests(sim, "models") == 1


async def test_quota_is_the_lower_of_the_requests_and_tokens_families(registry: Registry) -> None:
    with run_simulator(rpm=4) as sim:
        watched = monitor(registry, provider("openai", sim.openai_base_url))
        (first,) = await watched.check()
        (second,) = await watched.check()
    assert (first.quota_remaining, second.quota_remaining) == (75.0, 50.0)


async def test_a_refused_key_is_401_and_never_shown(
    sim: SimServer,
    registry: Registry,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    watched = monitor(
        registry,
        provider("openai", sim.openai_base_url, key=WRONG_KEY),
        provider("dashscope", sim.dashscope_base_url, kind="dashscope", key=WRONG_KEY),
        store=store,
    )
    statuses = await watched.check()
    assert [(s.name, s.status, s.error) for s in statuses] == [
        ("dashscope", "unhealthy", "401"),
        ("openai", "unhealthy", "401"),
    ]
    assert all(s.latency_ms is not None for s in statuses)  # the server did answer
    shown = [
        repr(statuses),
        str([s.to_dict() for s in statuses]),
        str(watched.config()),
        caplog.text,
        str(await store.latest_health()),
        str(await watched.history("openai")),
    ]
    for text in shown:
        assert WRONG_KEY not in text
        assert KEY not in text
    assert "health check of openai: unhealthy (401)" in caplog.text


async def test_permission_denied_is_403(sim: SimServer, registry: Registry) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url, fault="permission"))
    (status,) = await watched.check()
    assert (status.status, status.error) == ("unhealthy", "403")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("server_error", "500"),
        ("bad_gateway_html", "502"),
        ("overloaded", "503"),
        ("reset", "connection"),
        ("html_200", "bad response"),
        ("missing_fields", "bad response"),
    ],
)
async def test_other_failures_read_in_a_few_words(
    sim: SimServer, registry: Registry, fault: str, error: str
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url, fault=fault))
    (status,) = await watched.check()
    assert (status.status, status.error) == ("unhealthy", error)
    assert requests(sim, "models") == 1  # checked once: no retries


async def test_a_hung_provider_is_a_timeout_within_the_check_timeout(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(
        registry,
        provider("hung", sim.openai_base_url, fault="hang"),
        provider("fine", sim.openai_base_url),
    )
    started = time.monotonic()
    statuses = await watched.check()
    elapsed = time.monotonic() - started
    assert [(s.name, s.status, s.error) for s in statuses] == [
        ("fine", "healthy", None),
        ("hung", "unhealthy", "timeout"),
    ]
    assert statuses[1].latency_ms is None
    assert TIMEOUT <= elapsed < TIMEOUT + 1.0
    assert requests(sim, "models") == 2  # one each: the hung one is not retried


async def test_a_provider_without_a_key_is_unhealthy_without_a_request(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url, key=None))
    (status,) = await watched.check()
    assert (status.status, status.error, status.latency_ms) == ("unhealthy", "no key", None)
    assert requests(sim, "models") == 0


async def test_a_429_defers_the_next_check_until_retry_after_has_passed(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url, fault="rate_limit:30"))
    (status,) = await watched.check()
    assert (status.status, status.error) == ("unhealthy", "rate limited")
    assert status.last_check is not None
    assert status.next_check == pytest.approx(status.last_check + 30, abs=0.01)
    assert watched.delay("openai") == pytest.approx(60, abs=0.5)  # the interval is longer
    # Asked again at once: the provider is not asked (the rate limit gets no request more).
    (again,) = await watched.check()
    assert again == status
    assert requests(sim, "models") == 1


async def test_the_schedule_waits_out_retry_after_then_checks_again(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(
        registry,
        provider("openai", sim.openai_base_url, fault="rate_limit:400ms*1"),
        interval=0.02,
    )
    async with watched:
        await wait_for(lambda: watched.status("openai").status == "unhealthy")
        first = watched.status("openai")
        await wait_for(lambda: watched.status("openai").status == "healthy")
        second = watched.status("openai")
    assert first.error == "rate limited"
    assert first.last_check is not None
    assert second.last_check is not None
    assert second.last_check - first.last_check >= 0.4
    # Every 20 ms otherwise: ~20 checks would have gone out in those 400 ms.
    assert requests(sim, "models") == 2


async def test_the_schedule_checks_every_interval_and_keeps_a_history(
    sim: SimServer, registry: Registry, store: Store
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url), store=store, interval=0.03)
    async with watched:
        assert watched.running
        # A check is recorded before the next one goes out: the fourth request means three
        # are in the history (the fourth's own record may be cut short by the stop).
        await wait_for(lambda: requests(sim, "models") >= 4)
    assert not watched.running
    history = await watched.history("openai", limit=10)
    assert len(history) >= 3
    assert all(check.status == "healthy" for check in history)
    assert [c.at for c in history] == sorted((c.at for c in history), reverse=True)
    assert history[0].quota_remaining is not None
    (latest,) = await store.latest_health()
    assert latest.at == watched.status("openai").last_check
    seen = requests(sim, "models")
    await asyncio.sleep(0.1)
    assert requests(sim, "models") == seen  # stopped means stopped


async def test_one_check_at_a_time_per_provider_and_providers_in_parallel(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(
        registry,
        provider("a", sim.openai_base_url, fault="slow:300ms"),
        provider("b", sim.openai_base_url, fault="slow:300ms"),
    )
    everything = asyncio.create_task(watched.check())
    # Both providers' requests are in flight at once...
    await wait_for(lambda: requests(sim, "models") == 2)
    assert not everything.done()
    # ...and asking again while they are joins them instead of sending more.
    again, only_a = await asyncio.gather(watched.check(), watched.check("a"))
    statuses = await everything
    assert requests(sim, "models") == 2
    assert [s.status for s in statuses] == ["healthy", "healthy"]
    assert again == statuses
    assert only_a == statuses[:1]


async def test_the_official_sdk_base_urls_from_the_environment(sim: SimServer) -> None:
    environ = {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": sim.openai_base_url,
        "DEEPSEEK_API_KEY": KEY,
        "DEEPSEEK_BASE_URL": sim.compatible_base_url,
        "DASHSCOPE_API_KEY": KEY,
        "DASHSCOPE_BASE_URL": sim.dashscope_base_url,
    }
    async with Registry.load(environ=environ) as loaded:
        watched = HealthMonitor(loaded, settings=HealthSettings(timeout=TIMEOUT))
        statuses = await watched.check()
    assert [(s.name, s.kind, s.source, s.status) for s in statuses] == [
        ("dashscope", "dashscope", "environment", "healthy"),
        ("deepseek", "openai", "environment", "healthy"),
        ("openai", "openai", "environment", "healthy"),
    ]
    # DashScope was asked about a task id it never gave: no work started.
    assert requests(sim, "dashscope_task") == 1
    assert requests(sim, "dashscope_submit") == 0
    assert requests(sim, "models") == 2


async def test_dashscope_faults_read_like_the_others(sim: SimServer, registry: Registry) -> None:
    base = sim.dashscope_base_url
    watched = monitor(
        registry,
        provider("limited", base, kind="dashscope", fault="rate_limit:30"),
        provider("arrears", base, kind="dashscope", fault="quota"),
        provider("forbidden", base, kind="dashscope", fault="permission"),
    )
    statuses = await watched.check()
    assert [(s.name, s.error) for s in statuses] == [
        ("arrears", "quota exhausted"),
        ("forbidden", "403"),
        ("limited", "rate limited"),
    ]
    assert statuses[2].next_check is not None


async def test_an_unknown_name_is_refused_with_the_known_ones(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(registry, provider("openai", sim.openai_base_url))
    with pytest.raises(UnknownProvider, match=r"'nope'.*openai"):
        watched.status("nope")
    with pytest.raises(UnknownProvider):
        await watched.check("nope")
    with pytest.raises(UnknownProvider):
        await watched.history("nope")


async def test_a_model_name_stands_for_the_one_provider_that_serves_it(
    sim: SimServer, registry: Registry
) -> None:
    watched = monitor(
        registry,
        provider("openai", sim.openai_base_url, model="gpt-4o-mini"),
        provider("qwenvl", sim.dashscope_base_url, kind="dashscope", image_model="wanx-v1"),
        provider("proxy", sim.openai_base_url, model="gpt-4o-mini"),
    )
    assert watched.provider_of("wanx-v1") == "qwenvl"
    (status,) = await watched.check("wanx-v1")
    assert (status.name, status.status) == ("qwenvl", "healthy")
    assert watched.status("wanx-v1") == status
    assert watched.provider_of("proxy") == "proxy"  # a provider's own name comes first
    with pytest.raises(UnknownProvider, match=r"'gpt-4o-mini' is served by openai, proxy"):
        watched.status("gpt-4o-mini")


async def test_config_masks_keys_and_strips_url_credentials(registry: Registry) -> None:
    watched = monitor(
        registry, provider("proxy", "https://user:hunter2-password@proxy.example/v1?token=abc")
    )
    (entry,) = watched.config()
    assert entry["base_url"] == "https://proxy.example/v1"
    assert entry["api_key"] != KEY
    assert entry["api_key"].startswith("sk-")
    assert entry["has_key"] is True
    assert KEY not in str(entry)
