"""The official ``dashscope`` SDK against the simulator's asynchronous image tasks."""

from __future__ import annotations

import io
import time
import types
from collections.abc import Iterator
from typing import Any

import dashscope
import dashscope.client.base_api
import httpx
import pytest
import requests
from dashscope import ImageSynthesis
from PIL import Image

from regen.sim import SimServer, run_simulator

PROMPT = "一只在雪地里的红狐狸"


@pytest.fixture(autouse=True)
def point_sdk_at_sim(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", sim.dashscope_base_url)
    monkeypatch.setattr(dashscope, "api_key", "sk-dashscope-test")


def submit(prompt: str = PROMPT, fault: str | None = None, **kwargs: Any) -> Any:
    headers = {"X-Regen-Fault": fault} if fault else None
    return ImageSynthesis.async_call(
        model="wanx-v1", prompt=prompt, n=1, size="1024*1024", headers=headers, **kwargs
    )


#: A bound on waits for a task's end that only a broken simulator reaches: tasks take
#: 0.3 s of the simulator's time, however slowly a loaded machine polls them.
WAIT_LIMIT = 30.0


def poll_until_final(task: Any) -> Any:
    """Poll until the task leaves PENDING/RUNNING; return that poll's response."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        response = ImageSynthesis.fetch(task)
        status = response.output.task_status if response.output else None
        if status not in ("PENDING", "RUNNING"):
            return response
        assert time.monotonic() < deadline, f"task still {status} after {WAIT_LIMIT}s"
        time.sleep(0.02)


def wait_for_a_task_submitted_now() -> None:
    """Return once a task submitted now (without faults) has succeeded: by then, any task
    submitted earlier has run for longer than a task takes."""
    assert poll_until_final(submit(prompt="a control task")).output.task_status == "SUCCEEDED"


def test_task_moves_from_pending_through_running_to_succeeded(sim: SimServer) -> None:
    task = submit()
    assert task.status_code == 200
    assert task.output.task_status == "PENDING"
    seen = []
    deadline = time.monotonic() + WAIT_LIMIT
    while not seen or seen[-1] != "SUCCEEDED":
        assert time.monotonic() < deadline, f"the task went {seen} in {WAIT_LIMIT}s"
        status = ImageSynthesis.fetch(task).output.task_status
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.02)
    # The first poll may already miss the short PENDING window on a loaded machine.
    assert seen in (["PENDING", "RUNNING", "SUCCEEDED"], ["RUNNING", "SUCCEEDED"])


def test_succeeded_task_gives_a_downloadable_png_of_the_size(sim: SimServer) -> None:
    task = ImageSynthesis.async_call(model="wan2.2-t2i-flash", prompt=PROMPT, n=1, size="720*1280")
    result = poll_until_final(task)
    assert result.output.task_status == "SUCCEEDED"
    url = result.output.results[0].url
    image = Image.open(io.BytesIO(httpx.get(url).content))
    assert image.format == "PNG"
    assert image.size == (720, 1280)
    stats = sim.stats()
    assert stats["prompts"][PROMPT]["produced"] == 1
    task = stats["tasks"][result.output.task_id]
    assert task["status"] == "SUCCEEDED"
    assert task["polls"] >= 1


def test_wait_and_call_return_the_final_task(sim: SimServer) -> None:
    waited = ImageSynthesis.wait(submit("a lighthouse"))
    assert waited.output.task_status == "SUCCEEDED"
    called = ImageSynthesis.call(model="wanx-v1", prompt="a harbour", n=2, size="512*512")
    assert called.status_code == 200
    assert called.output.task_status == "SUCCEEDED"
    assert [r.url is not None for r in called.output.results] == [True, True]


def test_same_prompt_gives_the_same_image(sim: SimServer) -> None:
    first = poll_until_final(submit("a cat"))
    second = poll_until_final(submit("a cat"))
    urls = [r.output.results[0].url for r in (first, second)]
    assert httpx.get(urls[0]).content == httpx.get(urls[1]).content


# --- refusals and faults, as the SDK returns them (it raises nothing) ------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("auth", 401, "InvalidApiKey"),
        ("permission", 403, "AccessDenied"),
        ("rate_limit", 429, "Throttling"),
        ("rate_limit_burst", 429, "Throttling.RateQuota"),
        ("retry_after_long", 429, "Throttling.AllocationQuota"),
        ("quota", 400, "Arrearage"),
        ("server_error", 500, "InternalError"),
        ("overloaded", 503, "ServiceUnavailable"),
        ("content_policy", 400, "DataInspectionFailed"),
        ("invalid_param", 400, "InvalidParameter"),
        ("unknown_model", 400, "InvalidParameter"),
    ],
)
def test_submit_faults_come_back_as_responses(fault: str, status: int, code: str) -> None:
    response = submit(fault=fault)
    assert response.status_code == status
    assert response.code == code
    assert response.message


def test_rate_limit_has_retry_after(sim: SimServer) -> None:
    response = submit(fault="rate_limit:4")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"  # type: ignore[index]


def test_bad_size_is_invalid_parameter() -> None:
    response = ImageSynthesis.async_call(model="wanx-v1", prompt="a fox", size="1024x1024")
    assert response.status_code == 400
    assert response.code == "InvalidParameter"
    assert "size" in response.message


def test_unknown_model_is_invalid_parameter() -> None:
    response = ImageSynthesis.async_call(model="wanx-v99", prompt="a fox")
    assert (response.status_code, response.code) == (400, "InvalidParameter")


def test_missing_key_is_401(sim: SimServer) -> None:
    response = httpx.post(
        f"{sim.dashscope_base_url}/services/aigc/text2image/image-synthesis",
        json={"model": "wanx-v1", "input": {"prompt": "x"}},
        headers={"X-DashScope-Async": "enable"},
    )
    assert response.status_code == 401
    assert response.json()["code"] == "InvalidApiKey"
    assert "request_id" in response.json()


def test_sync_call_without_async_header_is_refused(sim: SimServer) -> None:
    response = httpx.post(
        f"{sim.dashscope_base_url}/services/aigc/text2image/image-synthesis",
        json={"model": "wanx-v1", "input": {"prompt": "x"}},
        headers={"Authorization": "Bearer sk-x"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "AccessDenied"


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("task_failed", "InternalError"),
        ("task_failed:DataInspectionFailed", "DataInspectionFailed"),
    ],
)
def test_task_failed_ends_failed_with_output_code(fault: str, code: str) -> None:
    result = poll_until_final(submit(fault=fault))
    assert result.status_code == 200
    assert result.output.task_status == "FAILED"
    assert result.output.code == code
    assert result.output.message


def test_task_stuck_stays_running(sim: SimServer) -> None:
    task = submit(fault="task_stuck")
    wait_for_a_task_submitted_now()
    assert ImageSynthesis.fetch(task).output.task_status == "RUNNING"
    timed_out = ImageSynthesis.wait(task, wait_timeout=0.5)
    assert timed_out.code == "WaitTaskTimeout"


def test_task_unknown(sim: SimServer) -> None:
    result = ImageSynthesis.fetch(submit(fault="task_unknown"))
    assert result.output.task_status == "UNKNOWN"
    assert ImageSynthesis.fetch("no-such-task").output.task_status == "UNKNOWN"


def test_partial_results_leave_some_results_without_url(sim: SimServer) -> None:
    task = ImageSynthesis.async_call(
        model="wanx-v1", prompt="four boats", n=4, headers={"X-Regen-Fault": "partial_results"}
    )
    result = poll_until_final(task)
    assert result.output.task_status == "SUCCEEDED"
    has_url = [bool(item.url) for item in result.output.results]
    assert has_url == [True, True, False, False]
    assert result.output.results[3].code
    assert sim.stats()["prompts"]["four boats"]["produced"] == 2


def test_poll_rate_limit_refuses_the_first_poll_and_keeps_the_task(sim: SimServer) -> None:
    task = submit(fault="poll_rate_limit")
    throttled = ImageSynthesis.fetch(task)
    assert throttled.status_code == 429
    assert throttled.code == "Throttling"
    assert poll_until_final(task).output.task_status == "SUCCEEDED"


def test_missing_fields_submit_without_task_id() -> None:
    response = submit(fault="missing_fields")
    assert response.status_code == 200
    assert response.output.task_id is None


def test_missing_fields_results_without_url(sim: SimServer) -> None:
    task = submit()
    assert poll_until_final(task).output.task_status == "SUCCEEDED"
    response = httpx.get(
        f"{sim.dashscope_base_url}/tasks/{task.output.task_id}",
        headers={"Authorization": "Bearer sk-x", "X-Regen-Fault": "missing_fields"},
    )
    output = response.json()["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert "url" not in output["results"][0]


def test_bad_gateway_html_is_a_502_with_the_page_as_message() -> None:
    response = submit(fault="bad_gateway_html")
    assert response.status_code == 502
    assert "502 Bad Gateway" in response.message


def test_task_stuck_pending_variant(sim: SimServer) -> None:
    task = submit(fault="task_stuck:PENDING")
    wait_for_a_task_submitted_now()
    assert ImageSynthesis.fetch(task).output.task_status == "PENDING"


# --- network faults, as the SDK surfaces them (requests' exceptions) -------------------


def submit_stats(sim: SimServer) -> dict[str, Any]:
    routes: dict[str, Any] = sim.stats()["routes"]
    return dict(routes["dashscope_submit"])


def test_reset_raises_requests_connection_error_after_one_silent_resend(sim: SimServer) -> None:
    # The SDK resends a submission once when the connection drops before any header (it
    # takes the reset for a stale pooled connection): the simulator sees two requests.
    with pytest.raises(requests.exceptions.ConnectionError):
        submit(fault="reset")
    stats = submit_stats(sim)
    assert stats["requests"] == 2
    assert stats["outcomes"] == {"reset": 2}
    assert sim.stats()["tasks"] == {}


def test_one_reset_is_ridden_through_by_the_sdk_resend(sim: SimServer) -> None:
    task = submit(fault="reset*1")
    assert task.status_code == 200
    assert task.output.task_status == "PENDING"
    stats = submit_stats(sim)
    assert stats["requests"] == 2
    assert stats["outcomes"] == {"reset": 1, "ok": 1}
    assert len(sim.stats()["tasks"]) == 1  # the reset came before the task was made


def test_html_200_raises_a_json_decode_error(sim: SimServer) -> None:
    # A proxy's HTML page with status 200: the SDK parses it as JSON and raises; it is not
    # resent and no task exists.
    with pytest.raises(requests.exceptions.JSONDecodeError):
        submit(fault="html_200")
    stats = submit_stats(sim)
    assert stats["requests"] == 1
    assert stats["outcomes"] == {"html_200": 1}
    assert stats["statuses"] == {"200": 1}
    assert sim.stats()["tasks"] == {}


def test_hang_raises_read_timeout_at_the_request_timeout(sim: SimServer) -> None:
    # ``request_timeout`` is the SDK's per-request timeout (300 s by default). A read
    # timeout is not a ConnectionError, so the SDK does not resend it.
    with pytest.raises(requests.exceptions.ReadTimeout):
        submit(fault="hang", request_timeout=0.3)
    stats = submit_stats(sim)
    assert stats["requests"] == 1
    assert stats["outcomes"] == {"hang": 1}
    assert stats["statuses"] == {}  # never answered


# --- ImageSynthesis.wait: what it retries while polling ---------------------------------


@pytest.fixture
def instant(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    """A simulator whose tasks are done at once, the SDK pointed at it."""
    with run_simulator(task_seconds=0.0) as server:
        monkeypatch.setattr(dashscope, "base_http_api_url", server.dashscope_base_url)
        yield server


@pytest.fixture
def sdk_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits ``ImageSynthesis.wait`` asks for between polls, recorded instead of slept."""
    sleeps: list[float] = []
    clock = types.SimpleNamespace(time=time.time, sleep=sleeps.append)
    monkeypatch.setattr(dashscope.client.base_api, "time", clock)
    return sleeps


def poll_stats(sim: SimServer) -> dict[str, Any]:
    routes: dict[str, Any] = sim.stats()["routes"]
    return dict(routes["dashscope_task"])


def test_wait_rides_through_a_503_poll(instant: SimServer, sdk_sleeps: list[float]) -> None:
    task = submit()
    instant.script(
        {"task_id": task.output.task_id, "route": "dashscope_task", "steps": ["overloaded"]}
    )
    result = ImageSynthesis.wait(task)
    assert result.status_code == 200
    assert result.output.task_status == "SUCCEEDED"
    stats = poll_stats(instant)
    assert stats["requests"] == 2
    assert stats["statuses"] == {"503": 1, "200": 1}
    assert sdk_sleeps == [1]  # its first poll interval, then it polled again


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("server_error", 500, "InternalError"),
        ("bad_gateway_html", 502, None),
        ("rate_limit", 429, "Throttling"),
    ],
)
def test_wait_returns_any_other_failed_poll_without_retrying(
    instant: SimServer, sdk_sleeps: list[float], fault: str, status: int, code: str | None
) -> None:
    task = submit()
    instant.script({"task_id": task.output.task_id, "route": "dashscope_task", "steps": [fault]})
    result = ImageSynthesis.wait(task)
    assert result.status_code == status
    if code is not None:
        assert result.code == code
    assert result.output is None
    stats = poll_stats(instant)
    assert stats["requests"] == 1
    assert stats["statuses"] == {str(status): 1}
    assert sdk_sleeps == []
    # The task itself is fine: one more poll finds it done.
    assert ImageSynthesis.fetch(task).output.task_status == "SUCCEEDED"
