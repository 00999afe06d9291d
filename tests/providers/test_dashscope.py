"""DashScope image tasks against the simulator: submit, poll, and every task fault."""

from __future__ import annotations

import logging
import time

import pytest

from regen.providers import (
    DashScopeProvider,
    Polling,
    TaskFailed,
    TaskTimeout,
    TaskUnknown,
)
from regen.retry import Attempt, GiveUp, Kind, Policy
from regen.sim import SimServer

from .conftest import fault, poll_failures, requests

PROMPT = "a red fox in snow"


def submitted(sim: SimServer) -> list[int]:
    """The ``n`` of every task the simulator was given, in order."""
    return [task["n"] for task in sim.stats()["tasks"].values()]


async def test_a_task_is_submitted_polled_and_read(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    images = await dashscope.generate_images(PROMPT, n=2, size="1024*1024")
    assert [i.index for i in images] == [0, 1]
    assert all(i.url and i.revised_prompt == PROMPT for i in images)
    assert [i.task_id for i in images] == [next(iter(sim.stats()["tasks"]))] * 2
    assert requests(sim, "dashscope_submit") == 1
    assert requests(sim, "dashscope_task") >= 2  # PENDING/RUNNING first, then SUCCEEDED


async def test_one_poll_reads_the_status(dashscope: DashScopeProvider) -> None:
    task_id = await dashscope.submit(PROMPT)
    status = await dashscope.fetch(task_id)
    assert status.task_id == task_id
    assert status.status in ("PENDING", "RUNNING")
    done = await dashscope.wait(task_id)
    assert done.status == "SUCCEEDED"
    assert done.results[0]["url"]


@pytest.mark.parametrize(
    ("spec", "kind", "status"),
    [
        ("auth", Kind.AUTH, 401),
        ("permission", Kind.AUTH, 403),
        ("quota", Kind.QUOTA_EXHAUSTED, 400),
        ("content_policy", Kind.CONTENT_POLICY, 400),
        ("invalid_param", Kind.BAD_REQUEST, 400),
        ("unknown_model", Kind.BAD_REQUEST, 400),
    ],
)
async def test_submission_refusals_fail_at_once(
    dashscope: DashScopeProvider, sim: SimServer, spec: str, kind: Kind, status: int
) -> None:
    with pytest.raises(GiveUp) as caught:
        await dashscope.generate_images(PROMPT, headers=fault(spec))
    assert caught.value.kind is kind
    assert caught.value.last is not None
    assert caught.value.last.status == status
    assert requests(sim, "dashscope_submit") == 1
    assert requests(sim, "dashscope_task") == 0


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("server_error*1", Kind.SERVER_ERROR),
        ("overloaded*1", Kind.SERVER_ERROR),
        ("rate_limit:0*1", Kind.RATE_LIMITED),
        ("reset*1", Kind.CONNECTION),
        ("html_200*1", Kind.BAD_RESPONSE),
        ("missing_fields*1", Kind.BAD_RESPONSE),  # no output.task_id
    ],
)
async def test_transient_submission_faults_resubmit(
    dashscope: DashScopeProvider, sim: SimServer, spec: str, kind: Kind
) -> None:
    kinds: list[Kind] = []
    policy = Policy(attempts=3, timeout=2, wait=0.01, on_retry=lambda a: kinds.append(a.kind))
    images = await dashscope.generate_images(PROMPT, headers=fault(spec), policy=policy)
    assert images[0].url
    assert kinds == [kind]
    assert requests(sim, "dashscope_submit") == 2


async def test_a_stuck_task_is_resubmitted_only_after_the_poll_deadline(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    failed: list[Attempt] = []
    policy = Policy(attempts=2, timeout=5, wait=0.01, on_retry=failed.append)
    started = time.monotonic()
    images = await dashscope.generate_images(
        PROMPT,
        headers=fault("task_stuck*1"),
        policy=policy,
        polling=Polling(interval=0.05, max_interval=0.05, deadline=0.5),
    )
    assert images[0].url
    assert time.monotonic() - started >= 0.5
    assert [(a.kind, a.reason) for a in failed] == [(Kind.TIMEOUT, "task_stuck")]
    assert isinstance(failed[0].error, TaskTimeout)
    assert failed[0].duration >= 0.5  # the stuck task's attempt lasted the poll deadline
    assert requests(sim, "dashscope_submit") == 2
    # It kept polling the stuck task meanwhile (how often depends on the machine's load).
    stuck = [t for t in sim.stats()["tasks"].values() if "task_stuck" in t["faults"]]
    assert len(stuck) == 1
    assert stuck[0]["polls"] >= 2


async def test_a_task_that_failed_internally_is_resubmitted(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    failed: list[Attempt] = []
    policy = Policy(attempts=2, timeout=5, wait=0.01, on_retry=failed.append)
    images = await dashscope.generate_images(
        PROMPT, headers=fault("task_failed:InternalError*1"), policy=policy
    )
    assert images[0].url
    assert [(a.kind, a.reason) for a in failed] == [(Kind.SERVER_ERROR, "InternalError")]
    assert isinstance(failed[0].error, TaskFailed)
    assert requests(sim, "dashscope_submit") == 2


async def test_a_task_failed_by_moderation_fails_at_once(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    with pytest.raises(GiveUp) as caught:
        await dashscope.generate_images(PROMPT, headers=fault("task_failed:DataInspectionFailed"))
    assert caught.value.kind is Kind.CONTENT_POLICY
    assert isinstance(caught.value.__cause__, TaskFailed)
    assert caught.value.__cause__.code == "DataInspectionFailed"
    assert requests(sim, "dashscope_submit") == 1


async def test_an_unknown_task_is_resubmitted(dashscope: DashScopeProvider, sim: SimServer) -> None:
    failed: list[Attempt] = []
    policy = Policy(attempts=2, timeout=5, wait=0.01, on_retry=failed.append)
    images = await dashscope.generate_images(PROMPT, headers=fault("task_unknown*1"), policy=policy)
    assert images[0].url
    assert [(a.kind, a.reason) for a in failed] == [(Kind.BAD_RESPONSE, "task_unknown")]
    assert isinstance(failed[0].error, TaskUnknown)
    assert requests(sim, "dashscope_submit") == 2


async def test_partial_results_regenerate_only_the_missing_ones(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    failed: list[Attempt] = []
    policy = Policy(attempts=2, timeout=5, wait=0.01, on_retry=failed.append)
    images = await dashscope.generate_images(
        PROMPT, n=4, headers=fault("partial_results:1*1"), policy=policy
    )
    assert len(images) == 4
    assert all(i.url for i in images)
    assert [i.index for i in images] == [0, 1, 2, 3]
    assert [(a.kind, a.reason) for a in failed] == [(Kind.BAD_RESPONSE, "partial_results")]
    assert submitted(sim) == [4, 1]


async def test_generate_once_refuses_partial_results(dashscope: DashScopeProvider) -> None:
    with pytest.raises(Exception, match="1 of 2 results carried no url") as caught:
        await dashscope.generate_once(PROMPT, n=2, headers=fault("partial_results:1"))
    assert getattr(caught.value, "reason", None) == "partial_results"


async def test_a_rate_limited_poll_backs_off_and_keeps_the_task(
    dashscope: DashScopeProvider, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="regen.providers")
    failed: list[Attempt] = []
    policy = Policy(attempts=2, timeout=5, wait=0.01, on_retry=failed.append)
    started = time.monotonic()
    images = await dashscope.generate_images(
        PROMPT, headers=fault("poll_rate_limit"), policy=policy
    )
    assert images[0].url
    assert time.monotonic() - started >= 1.0  # the poll's Retry-After: 1 was honoured
    assert poll_failures(caplog) == [(Kind.RATE_LIMITED, 1.0)]
    assert failed == []  # the task was kept: no attempt failed
    assert requests(sim, "dashscope_submit") == 1
    stats = sim.stats()
    statuses = stats["routes"]["dashscope_task"]["statuses"]
    assert statuses["429"] == 1
    assert statuses["200"] >= 1
    assert [task["polls"] for task in stats["tasks"].values()] == [
        statuses["429"] + statuses["200"]
    ]


@pytest.mark.parametrize(
    ("spec", "name", "status", "kinds"),
    [
        ("server_error*2", "server_error", "500", [Kind.SERVER_ERROR] * 2),
        ("overloaded*1", "overloaded", "503", [Kind.SERVER_ERROR]),
        ("bad_gateway_html*1", "bad_gateway_html", "502", [Kind.SERVER_ERROR]),
        ("rate_limit:0*1", "rate_limit", "429", [Kind.RATE_LIMITED]),
        ("reset*1", "reset", None, [Kind.CONNECTION]),
        ("html_200*1", "html_200", "200", [Kind.BAD_RESPONSE]),
        ("missing_fields*1", "missing_fields", "200", [Kind.BAD_RESPONSE]),  # no task_status
    ],
)
async def test_transient_poll_errors_are_retried_in_place(
    dashscope: DashScopeProvider,
    sim: SimServer,
    caplog: pytest.LogCaptureFixture,
    spec: str,
    name: str,
    status: str | None,
    kinds: list[Kind],
) -> None:
    caplog.set_level(logging.INFO, logger="regen.providers")
    failed: list[Attempt] = []
    policy = Policy(attempts=2, timeout=5, wait=0.01, on_retry=failed.append)
    images = await dashscope.generate_images(PROMPT, poll_headers=fault(spec), policy=policy)
    assert images[0].url
    assert failed == []  # polls are not attempts
    assert [kind for kind, _ in poll_failures(caplog)] == kinds
    assert requests(sim, "dashscope_submit") == 1
    # The simulator did answer the polls with the fault, and then with the task.
    polls = sim.stats()["routes"]["dashscope_task"]
    assert polls["outcomes"][name] == len(kinds)
    assert polls["outcomes"]["ok"] >= 1
    assert polls["requests"] == len(kinds) + polls["outcomes"]["ok"]
    if status is not None:
        assert polls["statuses"][status] >= len(kinds)


async def test_a_refused_poll_fails_the_attempt(
    dashscope: DashScopeProvider, sim: SimServer
) -> None:
    with pytest.raises(GiveUp) as caught:
        await dashscope.generate_images(PROMPT, poll_headers=fault("auth"))
    assert caught.value.kind is Kind.AUTH
    assert requests(sim, "dashscope_submit") == 1
    assert requests(sim, "dashscope_task") == 1


async def test_too_many_failed_polls_fail_the_attempt(sim: SimServer) -> None:
    polling = Polling(
        interval=0.01, max_interval=0.01, error_wait=0.01, max_error_wait=0.01, max_errors=2
    )
    async with DashScopeProvider(
        sim.dashscope_base_url, "sk-dash-0123456789ab", polling=polling, policy=Policy(attempts=1)
    ) as provider:
        with pytest.raises(GiveUp) as caught:
            await provider.generate_images(PROMPT, poll_headers=fault("server_error"))
    assert caught.value.kind is Kind.SERVER_ERROR
    assert requests(sim, "dashscope_task") == 3


def test_generate_images_sync(sim: SimServer) -> None:
    provider = DashScopeProvider(
        sim.dashscope_base_url, "sk-dash-0123456789ab", polling=Polling(interval=0.05, deadline=2)
    )
    assert provider.generate_image_sync(PROMPT).url
