"""Seed 002's five calls against the simulator: each retried once, and the payment charged
once however its answers are lost."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from examples.family_photo.__main__ import main
from examples.family_photo.client import SEED_POLICY, Order, PayAPI, PhotoAPI

from regen.providers import Polling, TaskFailed, Transport
from regen.retry import Attempt, GiveUp, Kind, test_mode
from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-family-photo-test-0123456789"
FAST = SEED_POLICY.replace(timeout=0.5, wait=0.01, max_wait=0.05)
ORDER = Order("FP20240210009999", "全家福套餐", 990, "o_test_user")


def fault(spec: str) -> dict[str, str]:
    return {"X-Regen-Fault": spec}


def requests(sim: SimServer, route: str) -> int:
    return int(sim.stats()["routes"].get(route, {}).get("requests", 0))


def charges(sim: SimServer) -> int:
    return int(sim.stats()["payments"]["charges"])


@pytest.fixture(scope="module")
def _server() -> Iterator[SimServer]:
    with run_simulator(task_seconds=0.1) as server:
        yield server


@pytest.fixture
def sim(_server: SimServer) -> SimServer:
    _server.reset()
    return _server


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with Transport() as shared:
        yield shared


@pytest.fixture
def photos(sim: SimServer, transport: Transport) -> PhotoAPI:
    polling = Polling(interval=0.03, max_interval=0.05, deadline=1.0)
    return PhotoAPI(sim.photo_base_url, KEY, policy=FAST, transport=transport, polling=polling)


@pytest.fixture
def pay(sim: SimServer, transport: Transport) -> PayAPI:
    return PayAPI(sim.pay_base_url, KEY, policy=FAST, transport=transport)


def test_the_seed_policy_is_one_retry_and_30_seconds() -> None:
    assert (SEED_POLICY.attempts, SEED_POLICY.timeout) == (2, 30.0)
    assert [SEED_POLICY.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


@pytest.mark.parametrize(("status", "calls"), [(408, 1), (409, 1), (429, 2), (503, 2)])
async def test_every_4xx_but_429_is_thrown_at_once_as_the_seed_says(
    status: int, calls: int
) -> None:
    made = 0

    async def call() -> None:
        nonlocal made
        made += 1
        raise _Refused(status)

    with test_mode(), pytest.raises(GiveUp):
        await SEED_POLICY.acall(call)
    assert made == calls  # regen's own taxonomy retries 408 and 409


@pytest.mark.parametrize(("retry_after", "calls", "sleeps"), [(4, 2, [4.0]), (30, 1, [])])
async def test_a_429_is_retried_after_the_servers_wait_only_within_the_seeds_5_s(
    retry_after: int, calls: int, sleeps: list[float]
) -> None:
    made = 0

    async def call() -> None:
        nonlocal made
        made += 1
        error = _Refused(429)
        error.headers = {"retry-after": str(retry_after)}  # type: ignore[attr-defined]
        raise error

    with test_mode() as clock, pytest.raises(GiveUp):
        await SEED_POLICY.acall(call)
    assert (made, clock.sleeps) == (calls, sleeps)  # type: ignore[attr-defined]


# --- art photo and video: submit -------------------------------------------------------------


@pytest.mark.parametrize("call", ["generate_art_photo", "generate_video"])
@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("server_error*1", Kind.SERVER_ERROR),
        ("overloaded*1", Kind.SERVER_ERROR),
        ("bad_gateway_html*1", Kind.SERVER_ERROR),
        ("rate_limit:0*1", Kind.RATE_LIMITED),
        ("reset*1", Kind.CONNECTION),
        ("hang*1", Kind.TIMEOUT),
        ("html_200*1", Kind.BAD_RESPONSE),
        ("missing_fields*1", Kind.BAD_RESPONSE),
    ],
)
async def test_a_submission_is_retried_once(
    photos: PhotoAPI, sim: SimServer, call: str, spec: str, kind: Kind
) -> None:
    failed: list[Attempt] = []
    photos.policy = FAST.replace(on_retry=failed.append)
    task_id = await getattr(photos, call)("全家福", headers=fault(spec))
    assert task_id
    assert [a.kind for a in failed] == [kind]
    route = "photo_submit" if call == "generate_art_photo" else "video_submit"
    assert requests(sim, route) == 2


@pytest.mark.parametrize("call", ["generate_art_photo", "generate_video"])
@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("auth", Kind.AUTH),
        ("permission", Kind.AUTH),
        ("content_policy", Kind.CONTENT_POLICY),
        ("invalid_param", Kind.BAD_REQUEST),
        ("unknown_model", Kind.BAD_REQUEST),
        ("quota", Kind.QUOTA_EXHAUSTED),
    ],
)
async def test_a_client_error_is_not_retried(
    photos: PhotoAPI, sim: SimServer, call: str, spec: str, kind: Kind
) -> None:
    with pytest.raises(GiveUp) as caught:
        await getattr(photos, call)("全家福", headers=fault(spec))
    assert caught.value.kind is kind
    assert caught.value.last is not None
    assert not caught.value.last.retry
    route = "photo_submit" if call == "generate_art_photo" else "video_submit"
    assert requests(sim, route) == 1
    assert sim.stats()["tasks"] == {}


async def test_a_second_failure_gives_up_after_two_attempts(
    photos: PhotoAPI, sim: SimServer
) -> None:
    with pytest.raises(GiveUp) as caught:
        await photos.generate_video("全家福", headers=fault("server_error"))
    assert [a.number for a in caught.value.attempts] == [1, 2]
    assert requests(sim, "video_submit") == 2


# --- task status -------------------------------------------------------------------------------


#: Each status call, the submission that makes its task, and the route it polls.
STATUS_CALLS = {
    "get_task_status": ("generate_art_photo", "photo_task"),
    "get_video_task_status": ("generate_video", "video_task"),
}


@pytest.mark.parametrize("call", sorted(STATUS_CALLS))
@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("server_error*1", Kind.SERVER_ERROR),
        ("bad_gateway_html*1", Kind.SERVER_ERROR),
        ("rate_limit:0*1", Kind.RATE_LIMITED),
        ("reset*1", Kind.CONNECTION),
        ("hang*1", Kind.TIMEOUT),
        ("html_200*1", Kind.BAD_RESPONSE),
    ],
)
async def test_a_status_poll_is_retried_once(
    photos: PhotoAPI, sim: SimServer, call: str, spec: str, kind: Kind
) -> None:
    submit, route = STATUS_CALLS[call]
    task_id = await getattr(photos, submit)("全家福")
    failed: list[Attempt] = []
    photos.policy = FAST.replace(on_retry=failed.append)
    task = await getattr(photos, call)(task_id, headers=fault(spec))
    assert task.task_id == task_id
    assert task.status in ("queued", "processing", "succeeded")
    assert [a.kind for a in failed] == [kind]
    assert requests(sim, route) == 2


@pytest.mark.parametrize("call", sorted(STATUS_CALLS))
@pytest.mark.parametrize(("spec", "kind"), [("auth", Kind.AUTH), ("permission", Kind.AUTH)])
async def test_a_refused_status_poll_is_not_retried(
    photos: PhotoAPI, sim: SimServer, call: str, spec: str, kind: Kind
) -> None:
    submit, route = STATUS_CALLS[call]
    task_id = await getattr(photos, submit)("全家福")
    with pytest.raises(GiveUp) as caught:
        await getattr(photos, call)(task_id, headers=fault(spec))
    assert caught.value.kind is kind
    assert len(caught.value.attempts) == 1
    assert requests(sim, route) == 1


@pytest.mark.parametrize("call", sorted(STATUS_CALLS))
async def test_a_status_poll_that_fails_twice_gives_up(
    photos: PhotoAPI, sim: SimServer, call: str
) -> None:
    submit, route = STATUS_CALLS[call]
    task_id = await getattr(photos, submit)("全家福")
    with pytest.raises(GiveUp) as caught:
        await getattr(photos, call)(task_id, headers=fault("server_error"))
    assert caught.value.kind is Kind.SERVER_ERROR
    assert [a.number for a in caught.value.attempts] == [1, 2]
    assert requests(sim, route) == 2


async def test_a_rate_limited_status_poll_waits_its_retry_after(
    photos: PhotoAPI, sim: SimServer
) -> None:
    task_id = await photos.generate_video("全家福")
    started = time.monotonic()
    await photos.get_video_task_status(task_id, headers=fault("poll_rate_limit*1"))
    assert time.monotonic() - started >= 1.0
    assert requests(sim, "video_task") == 2


async def test_an_unknown_task_is_a_state_not_an_error(photos: PhotoAPI, sim: SimServer) -> None:
    task = await photos.get_task_status("art-does-not-exist")
    assert task.status == "unknown"
    assert requests(sim, "photo_task") == 1


# --- to the end ----------------------------------------------------------------------------------


async def test_a_photo_and_a_video_are_made(photos: PhotoAPI, sim: SimServer) -> None:
    photo = await photos.create_art_photo("全家福", style="watercolor")
    assert photo.url is not None
    assert ".png?" in photo.url
    video = await photos.create_video("全家福动起来", image_url=photo.url, duration=2)
    assert video.url is not None
    assert ".gif?" in video.url


#: Each submit-and-poll call and the route it submits to.
TASK_CALLS = {"create_art_photo": "photo_submit", "create_video": "video_submit"}


@pytest.mark.parametrize("call", sorted(TASK_CALLS))
@pytest.mark.parametrize(
    ("spec", "kind", "reason"),
    [
        ("task_stuck*1", Kind.TIMEOUT, "task_stuck"),
        ("task_failed*1", Kind.SERVER_ERROR, "InternalError"),
        ("task_unknown*1", Kind.BAD_RESPONSE, "task_unknown"),
    ],
)
async def test_a_task_that_cannot_finish_is_submitted_again(
    photos: PhotoAPI, sim: SimServer, call: str, spec: str, kind: Kind, reason: str
) -> None:
    failed: list[Attempt] = []
    photos.policy = FAST.replace(on_retry=failed.append)
    made = await getattr(photos, call)("全家福", headers=fault(spec))
    assert made.url
    assert [(a.kind, a.reason) for a in failed] == [(kind, reason)]
    assert requests(sim, TASK_CALLS[call]) == 2
    first, second = sim.stats()["tasks"].values()
    assert first["status"] != "SUCCEEDED"
    assert second["status"] == "SUCCEEDED"


@pytest.mark.parametrize("call", sorted(TASK_CALLS))
async def test_a_moderated_task_is_not_submitted_again(
    photos: PhotoAPI, sim: SimServer, call: str
) -> None:
    with pytest.raises(GiveUp) as caught:
        await getattr(photos, call)("全家福", headers=fault("task_failed:content_policy_violation"))
    assert caught.value.kind is Kind.CONTENT_POLICY
    assert isinstance(caught.value.__cause__, TaskFailed)
    assert requests(sim, TASK_CALLS[call]) == 1


# --- payment -----------------------------------------------------------------------------------


async def test_a_payment_is_placed_once(pay: PayAPI, sim: SimServer) -> None:
    payment = await pay.transactions_jsapi(ORDER)
    assert payment.prepay_id.startswith("wx")
    assert charges(sim) == 1
    order = await pay.query(ORDER.out_trade_no)
    assert order is not None
    assert order["trade_state"] == "SUCCESS"


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("server_error*1", Kind.SERVER_ERROR),  # refused before the charge
        ("rate_limit:0*1", Kind.RATE_LIMITED),  # refused before the charge
        ("reset*1", Kind.CONNECTION),  # the answer lost after the charge
        ("hang*1", Kind.TIMEOUT),  # the answer never comes after the charge
        ("bad_gateway_html*1", Kind.SERVER_ERROR),  # a proxy's page after the charge
    ],
)
async def test_a_lost_payment_answer_is_retried_and_charged_once(
    pay: PayAPI, sim: SimServer, spec: str, kind: Kind
) -> None:
    failed: list[Attempt] = []
    policy = pay.payment_policy(ORDER, "发起支付").replace(on_retry=failed.append)
    payment = await pay.transactions_jsapi(ORDER, headers=fault(spec), policy=policy)
    assert payment.prepay_id
    assert [a.kind for a in failed] == [kind]
    assert requests(sim, "pay") == 2
    assert charges(sim) == 1  # the order number kept the retry from charging again


@pytest.mark.parametrize(("spec", "kind"), [("reset*1", Kind.CONNECTION), ("hang*1", Kind.TIMEOUT)])
async def test_without_an_idempotency_key_a_lost_answer_is_not_retried(
    pay: PayAPI, sim: SimServer, spec: str, kind: Kind
) -> None:
    unkeyed = FAST.replace(idempotent=False)
    with pytest.raises(GiveUp) as caught:
        await pay.transactions_jsapi(ORDER, headers=fault(spec), policy=unkeyed)
    assert caught.value.kind is kind
    assert caught.value.last is not None
    assert caught.value.last.reason == "not_idempotent"
    assert requests(sim, "pay") == 1
    assert charges(sim) == 1  # charged, though the client could not know: hence the key
    again = await pay.retry_payment(ORDER)  # the user taps "pay" again: no second charge
    assert again.prepay_id
    assert charges(sim) == 1


async def test_a_payment_that_never_left_is_retried_even_without_a_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with PayAPI(
        f"http://127.0.0.1:{port}/v3/pay", KEY, policy=FAST.replace(idempotent=False)
    ) as nowhere:
        with pytest.raises(GiveUp) as caught:
            await nowhere.transactions_jsapi(ORDER, policy=nowhere.policy)
    assert [a.kind for a in caught.value.attempts] == [Kind.CONNECTION, Kind.CONNECTION]


@pytest.mark.parametrize(
    ("spec", "kind", "charged_first"),
    [
        ("hang*1", Kind.TIMEOUT, True),  # charged, then the answer never came
        ("bad_gateway_html*1", Kind.SERVER_ERROR, True),  # charged, then a proxy's 502 page
        ("server_error*1", Kind.SERVER_ERROR, False),  # a 500 before the charge
        ("overloaded*1", Kind.SERVER_ERROR, False),  # a 503 before the charge
    ],
)
async def test_retry_payment_is_retried_with_the_same_order_number_and_charged_once(
    pay: PayAPI, sim: SimServer, spec: str, kind: Kind, charged_first: bool
) -> None:
    failed: list[tuple[Kind, int]] = []

    def on_retry(attempt: Attempt) -> None:  # what the first try left on the server
        failed.append((attempt.kind, charges(sim)))

    pay.policy = FAST.replace(on_retry=on_retry)
    payment = await pay.retry_payment(ORDER, headers=fault(spec))
    assert payment.out_trade_no == ORDER.out_trade_no
    assert payment.prepay_id.startswith("wx")
    assert failed == [(kind, 1 if charged_first else 0)]
    assert requests(sim, "pay") == 2
    payments = sim.stats()["payments"]
    assert payments["charges"] == 1
    assert payments["amount_total"] == ORDER.total
    # Both requests carried the one order number; the ledger holds one order for it.
    assert payments["by_out_trade_no"] == {
        ORDER.out_trade_no: {"requests": 2, "charges": 1, "amount": ORDER.total}
    }
    outcomes = sim.stats()["routes"]["pay"]["outcomes"]
    assert outcomes == {spec.partition("*")[0]: 1, "ok": 1}


async def test_retry_payment_returns_the_first_prepay_id(pay: PayAPI, sim: SimServer) -> None:
    first = await pay.transactions_jsapi(ORDER)
    again = await pay.retry_payment(ORDER, headers=fault("reset*1"))
    assert again == first
    assert charges(sim) == 1
    assert sim.stats()["payments"]["by_out_trade_no"][ORDER.out_trade_no]["requests"] == 3


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("invalid_param", Kind.BAD_REQUEST), ("auth", Kind.AUTH), ("quota", Kind.QUOTA_EXHAUSTED)],
)
async def test_a_refused_payment_is_not_retried(
    pay: PayAPI, sim: SimServer, spec: str, kind: Kind
) -> None:
    with pytest.raises(GiveUp) as caught:
        await pay.transactions_jsapi(ORDER, headers=fault(spec))
    assert caught.value.kind is kind
    assert requests(sim, "pay") == 1
    assert charges(sim) == 0


async def test_an_order_number_reused_for_another_amount_is_refused(
    pay: PayAPI, sim: SimServer
) -> None:
    await pay.transactions_jsapi(ORDER)
    other = Order(ORDER.out_trade_no, ORDER.description, 1990, ORDER.openid)
    with pytest.raises(GiveUp) as caught:
        await pay.transactions_jsapi(other)
    assert caught.value.kind is Kind.BAD_REQUEST
    assert charges(sim) == 1


# --- the runnable example ---------------------------------------------------------------------


def test_the_example_runs_against_the_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with test_mode():  # the faults' 1 s backoffs are recorded, not slept
        assert main(["--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "same prepay_id=True" in printed
    assert "payment requests=3 charges=1" in printed
    assert (tmp_path / "art_photo.png").stat().st_size > 0
    assert (tmp_path / "video.gif").stat().st_size > 0


def test_an_unreachable_base_url_ends_in_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run(
        [sys.executable, "-m", "examples.family_photo"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FAMILY_PHOTO_BASE_URL": closed},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    *retry_logs, last = result.stderr.strip().splitlines()
    assert all(line.startswith("[API重试] 生成艺术照 - ") for line in retry_logs)
    assert last.startswith(f"family_photo: cannot reach {closed} (set by FAMILY_PHOTO_BASE_URL)")
    assert "no connection" in last
    assert "unset FAMILY_PHOTO_BASE_URL" in last


@pytest.mark.parametrize("given", [["--base-url", "api.example.com"], []])
def test_a_base_url_that_is_not_http_is_refused_naming_where_it_was_set(
    given: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAMILY_PHOTO_BASE_URL", "api.example.com")
    with pytest.raises(SystemExit) as info:
        main(given)
    assert info.value.code == 2
    source = "--base-url" if given else "FAMILY_PHOTO_BASE_URL"
    assert f"{source}='api.example.com': expected the API's http(s) root URL" in (
        capsys.readouterr().err
    )
