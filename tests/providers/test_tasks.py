"""The generic submit-and-poll helper, on the simulator's photo/video task API (seed 002)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from regen.providers import (
    APIError,
    Polling,
    TaskFailed,
    TaskState,
    TaskTimeout,
    Transport,
    poll_until_done,
    submit_and_poll,
)
from regen.retry import ConfigError, Failure, GiveUp, Kind, Policy, classify_response
from regen.sim import SimServer

from .conftest import KEY, fault, poll_failures, requests

FAST = Polling(interval=0.03, max_interval=0.05, deadline=2.0, error_wait=0.02, max_error_wait=0.05)


class PhotoAPI:
    """A minimal client of the simulator's photo API, written the way an app would."""

    def __init__(self, transport: Transport, base_url: str) -> None:
        self.transport = transport
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {KEY}"}

    async def _json(
        self, method: str, path: str, body: Any = None, extra: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self.transport.request(
            method, f"{self.base_url}{path}", json=body, headers={**self.headers, **(extra or {})}
        )
        failure = classify_response(response.status, response.headers, response.body)
        if failure is not None:
            raise APIError(f"photo API: HTTP {response.status}", failure)
        data: dict[str, Any] = json.loads(response.body)
        return data

    async def submit(self, prompt: str, extra: dict[str, str] | None = None) -> str:
        data = await self._json("POST", "/art-photos", {"prompt": prompt}, extra)
        return str(data["task_id"])

    async def poll(self, task_id: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._json("GET", f"/tasks/{task_id}", extra=extra)


def failed(reply: dict[str, Any], state: TaskState) -> TaskFailed:
    code = (reply.get("error") or {}).get("code")
    kind = Kind.CONTENT_POLICY if code == "content_policy_violation" else Kind.SERVER_ERROR
    return TaskFailed(f"photo task {state}: {code}", Failure.of(kind, str(code)), code=code)


@pytest.fixture
async def api(sim: SimServer) -> AsyncIterator[PhotoAPI]:
    async with Transport() as transport:
        yield PhotoAPI(transport, sim.photo_base_url)


async def test_submit_and_poll_returns_the_finished_task(api: PhotoAPI, sim: SimServer) -> None:
    reply = await submit_and_poll(
        lambda: api.submit("a family photo"), api.poll, lambda r: r["status"], polling=FAST
    )
    assert reply["status"] == "succeeded"
    assert reply["result"]["image_url"]
    assert requests(sim, "photo_submit") == 1
    assert requests(sim, "photo_task") >= 2


async def test_a_failed_task_raises_what_failed_builds(api: PhotoAPI) -> None:
    with pytest.raises(TaskFailed) as caught:
        await submit_and_poll(
            lambda: api.submit("x", fault("task_failed:content_policy_violation")),
            api.poll,
            lambda r: r["status"],
            polling=FAST,
            failed=failed,
        )
    assert caught.value.kind is Kind.CONTENT_POLICY


async def test_by_default_a_failed_task_is_a_retryable_server_error(api: PhotoAPI) -> None:
    with pytest.raises(TaskFailed) as caught:
        await submit_and_poll(
            lambda: api.submit("x", fault("task_failed")),
            api.poll,
            lambda r: r["status"],
            polling=FAST,
        )
    assert (caught.value.kind, caught.value.retry) == (Kind.SERVER_ERROR, True)
    assert caught.value.task_id is not None
    assert caught.value.task_id.startswith("art-")


async def test_under_a_policy_a_stuck_task_is_resubmitted(api: PhotoAPI, sim: SimServer) -> None:
    polling = Polling(interval=0.05, max_interval=0.05, deadline=0.4)
    policy = Policy(attempts=2, timeout=5, wait=0.01)
    started = time.monotonic()
    reply = await policy.acall(
        submit_and_poll,
        lambda: api.submit("x", fault("task_stuck*1")),
        api.poll,
        lambda r: r["status"],
        polling=polling,
    )
    assert reply["status"] == "succeeded"
    assert time.monotonic() - started >= 0.4
    assert requests(sim, "photo_submit") == 2


async def test_the_deadline_raises_task_timeout(api: PhotoAPI) -> None:
    task_id = await api.submit("x", fault("task_stuck"))
    with pytest.raises(TaskTimeout) as caught:
        await poll_until_done(
            lambda: api.poll(task_id),
            lambda r: r["status"],
            polling=Polling(interval=0.05, deadline=0.2),
            task_id=task_id,
        )
    assert (caught.value.kind, caught.value.reason) == (Kind.TIMEOUT, "task_stuck")


async def test_poll_rate_limits_and_errors_keep_the_task(
    api: PhotoAPI, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="regen.providers")
    task_id = await api.submit("x", fault("poll_rate_limit:2"))
    reply = await poll_until_done(
        lambda: api.poll(task_id, fault("server_error*1")),
        lambda r: r["status"],
        polling=FAST,
        task_id=task_id,
    )
    assert reply["status"] == "succeeded"
    assert reply["task_id"] == task_id  # the same task, kept through every failed poll
    # The 500 comes first (the header's fault); the task's two throttled polls follow,
    # each waiting the Retry-After: 1 the 429 carries.
    assert poll_failures(caplog) == [
        (Kind.SERVER_ERROR, FAST.error_wait),
        (Kind.RATE_LIMITED, 1.0),
        (Kind.RATE_LIMITED, 1.0),
    ]
    statuses = sim.stats()["routes"]["photo_task"]["statuses"]
    assert statuses["429"] == 2
    assert statuses["500"] == 1
    assert requests(sim, "photo_submit") == 1


async def test_a_permanent_poll_error_is_raised_at_once(api: PhotoAPI, sim: SimServer) -> None:
    with pytest.raises(APIError) as caught:
        await poll_until_done(lambda: api.poll("art-nope"), lambda r: r["status"], polling=FAST)
    assert caught.value.kind is Kind.BAD_REQUEST  # 404 task_not_found
    assert requests(sim, "photo_task") == 1


async def test_a_poll_that_gives_up_its_own_retries_is_not_retried_again(
    api: PhotoAPI, sim: SimServer
) -> None:
    task_id = await api.submit("x")
    poll = Policy(attempts=2, timeout=1, wait=0.01)(api.poll)
    with pytest.raises(GiveUp):
        await poll_until_done(
            lambda: poll(task_id, fault("server_error")), lambda r: r["status"], polling=FAST
        )
    assert requests(sim, "photo_task") == 2  # retries do not multiply across layers


async def test_video_tasks_too(sim: SimServer) -> None:
    async with Transport() as transport:
        headers = {"Authorization": f"Bearer {KEY}"}

        async def submit() -> str:
            response = await transport.request(
                "POST",
                f"{sim.photo_base_url}/videos",
                json={"prompt": "waves", "duration": 2},
                headers=headers,
            )
            return str(json.loads(response.body)["task_id"])

        async def poll(task_id: str) -> dict[str, Any]:
            response = await transport.request(
                "GET", f"{sim.photo_base_url}/videos/{task_id}", headers=headers
            )
            data: dict[str, Any] = json.loads(response.body)
            return data

        reply = await submit_and_poll(submit, poll, lambda r: r["status"], polling=FAST)
    assert ".gif?" in reply["result"]["video_url"]


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("SUCCEEDED", TaskState.SUCCEEDED),
        ("done", TaskState.SUCCEEDED),
        ("in_queue", TaskState.PENDING),
        ("queued", TaskState.PENDING),
        ("Processing", TaskState.RUNNING),
        ("failed", TaskState.FAILED),
        ("cancelled", TaskState.CANCELED),
        ("not_found", TaskState.UNKNOWN),
        ("weird", None),
        (None, None),
    ],
)
def test_status_words_are_understood(word: str | None, state: TaskState | None) -> None:
    assert TaskState.parse(word) is state


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"interval": 0}, "polling interval=0: expected a number of seconds > 0"),
        ({"deadline": -1}, "polling deadline=-1: "),
        ({"error_wait": "2s"}, "polling error_wait='2s': "),
        ({"multiplier": 0.5}, "polling multiplier=0.5: expected a number ≥ 1"),
        ({"multiplier": "fast"}, "polling multiplier='fast': "),
        ({"interval": 5, "max_interval": 1}, r"polling max_interval=1: expected ≥ interval \(5\)"),
        ({"max_errors": -1}, "polling max_errors=-1: expected a whole number ≥ 0"),
        ({"max_errors": 2.5}, "polling max_errors=2.5: "),
    ],
)
def test_bad_polling_settings_name_the_setting(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Polling(**settings)
