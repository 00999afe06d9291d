"""Seed 002's five integrated calls on regen: art photo, its status, video, its status, and the
WeChat-Pay-like payment (start, and retry) keyed by its ``out_trade_no``.

Every call is retried once (``attempts=2``) with a 30 s per-attempt timeout, as the seed
asks. The payment is not idempotent by nature: it is retried only because it carries its
order number as an idempotency key (the payment API charges an ``out_trade_no`` once).

The two clients subclass :class:`regen.providers.BaseProvider`, which gives them the
masked key, the shared transport, and the error classification of the other adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from examples.api_retry.api_retry import client_errors
from regen.providers import (
    APIError,
    BaseProvider,
    Polling,
    Secret,
    TaskFailed,
    TaskState,
    Transport,
    submit_and_poll,
)
from regen.retry import Failure, Kind, Policy

#: The seed: one retry, 30 s per attempt, backoff 1 s doubling, capped at 5 s; a server's
#: ``Retry-After`` is waited within the same 5 s, and a longer one gives up at once.
SEED_POLICY = Policy(
    attempts=2,
    timeout=30.0,
    wait=1.0,
    multiplier=2.0,
    max_wait=5.0,
    retry_after_max=5.0,
    classifier=client_errors,
)
#: How the convenience methods poll a task until it is done.
POLLING = Polling(interval=0.5, max_interval=2.0, deadline=120.0)


@dataclass(frozen=True, slots=True)
class PhotoTask:
    """A photo or video task as the API reports it."""

    task_id: str
    kind: str
    status: str
    progress: int = 0
    result: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None

    @property
    def state(self) -> TaskState | None:
        """The status as a :class:`TaskState` (``queued`` is pending, ``succeeded`` done)."""
        return TaskState.parse(self.status)

    @property
    def url(self) -> str | None:
        """The finished photo's or video's URL."""
        value = self.result.get("video_url") or self.result.get("image_url")
        return str(value) if value else None


@dataclass(frozen=True, slots=True)
class Order:
    """What the user pays for. ``out_trade_no`` is the merchant's order number."""

    out_trade_no: str
    description: str
    total: int  # in fen
    openid: str


@dataclass(frozen=True, slots=True)
class Payment:
    """A placed order: the ``prepay_id`` the mini-program's payment sheet needs."""

    out_trade_no: str
    prepay_id: str


class PhotoAPI(BaseProvider):
    """The photo/video task API (``…/photo/v1``): submit, then poll a task's status."""

    kind: ClassVar[str] = "photo"
    default_base_url: ClassVar[str] = "http://127.0.0.1:8900/photo/v1"
    default_policy: ClassVar[Policy] = SEED_POLICY

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        *,
        policy: Policy | None = None,
        transport: Transport | None = None,
        polling: Polling | None = None,
    ) -> None:
        super().__init__(base_url, api_key, name="photo", policy=policy, transport=transport)
        self.polling = polling or POLLING

    # --- one try each ---------------------------------------------------------------------

    async def _submit(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> str:
        response = await self._send("POST", path, json_body=dict(body), headers=headers)
        reply = self.json_of(response, f"POST {path}")
        task_id = reply.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise self.missing(f"POST {path}", "task_id", response.status)
        return task_id

    async def _status(
        self, path: str, kind: str, task_id: str, headers: Mapping[str, str] | None
    ) -> PhotoTask:
        response = await self._send("GET", f"{path}/{task_id}", headers=headers)
        if response.status == 404:
            # Unknown or expired: not an error of the poll, a state of the task (submit again).
            return PhotoTask(task_id, kind, "unknown")
        reply = self.json_of(response, f"GET {path}", embedded_errors=False)
        status = reply.get("status")
        if not isinstance(status, str):
            raise self.missing(f"GET {path}", "status", response.status)
        return PhotoTask(
            task_id=task_id,
            kind=kind,
            status=status,
            progress=int(reply.get("progress") or 0),
            result=reply.get("result") or {},
            error=reply.get("error"),
        )

    # --- the seed's four photo/video calls, each retried once --------------------------------

    def _seed(self, operation: str) -> Policy:
        return self.policy.replace(operation=operation)

    async def generate_art_photo(
        self,
        prompt: str,
        *,
        style: str | None = None,
        size: str = "1024x1024",
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """生成艺术照: submit an art photo; its task id."""
        body: dict[str, Any] = {"prompt": prompt, "size": size}
        if style is not None:
            body["style"] = style
        return await self._seed("生成艺术照").acall(self._submit, "art-photos", body, headers)

    async def get_task_status(
        self, task_id: str, *, headers: Mapping[str, str] | None = None
    ) -> PhotoTask:
        """任务状态查询: an art photo task's status (``unknown`` for an id it forgot)."""
        return await self._seed("任务状态查询").acall(
            self._status, "tasks", "photo", task_id, headers
        )

    async def generate_video(
        self,
        prompt: str,
        *,
        image_url: str | None = None,
        duration: int = 5,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """生成视频: submit a video (optionally from a photo); its task id."""
        body: dict[str, Any] = {"prompt": prompt, "duration": duration}
        if image_url is not None:
            body["image_url"] = image_url
        return await self._seed("生成视频").acall(self._submit, "videos", body, headers)

    async def get_video_task_status(
        self, task_id: str, *, headers: Mapping[str, str] | None = None
    ) -> PhotoTask:
        """视频任务状态查询: a video task's status."""
        return await self._seed("视频任务状态查询").acall(
            self._status, "videos", "video", task_id, headers
        )

    # --- submit and poll to the end -----------------------------------------------------------

    @staticmethod
    def _failed(task: PhotoTask, state: TaskState) -> TaskFailed:
        code = str((task.error or {}).get("code") or "failed")
        kind = Kind.CONTENT_POLICY if "content_policy" in code else Kind.SERVER_ERROR
        message = (task.error or {}).get("message") or state
        return TaskFailed(
            f"{task.kind} task {task.task_id} {state}: {code}: {message}",
            Failure.of(kind, code),
            task_id=task.task_id,
            code=code,
            provider="photo",
        )

    async def _until_done(self, submit: Any, poll: Any, operation: str) -> PhotoTask:
        # The outer policy resubmits only on task-level failures (stuck, forgotten, failed
        # internally). A submit or poll that used up its own retry raises GiveUp, which no
        # policy retries again, so retries never multiply across the two layers.
        task: PhotoTask = (
            await self._seed(operation)
            .replace(timeout=None)
            .acall(
                submit_and_poll,
                submit,
                poll,
                lambda t: t.status,
                polling=self.polling,
                failed=self._failed,
                provider=self.name,
            )
        )
        return task

    async def create_art_photo(self, prompt: str, **options: Any) -> PhotoTask:
        """Generate an art photo and poll it to the end; a stuck, forgotten or internally
        failed task is submitted again (once), a moderated one is not."""
        return await self._until_done(
            lambda: self.generate_art_photo(prompt, **options), self.get_task_status, "艺术照任务"
        )

    async def create_video(self, prompt: str, **options: Any) -> PhotoTask:
        """Generate a video and poll it to the end (as :meth:`create_art_photo`)."""
        return await self._until_done(
            lambda: self.generate_video(prompt, **options), self.get_video_task_status, "视频任务"
        )


def _pay_classifier(exc: BaseException) -> Failure | None:
    """WeChat Pay's ``NOTENOUGH`` (403) is the payer's balance, not a permission problem."""
    if isinstance(exc, APIError) and exc.code == "NOTENOUGH":
        return Failure(Kind.QUOTA_EXHAUSTED, False, "NOTENOUGH", exc.status)
    return client_errors(exc)


class PayAPI(BaseProvider):
    """The WeChat-Pay-like JSAPI order endpoint (``…/v3/pay``), idempotent by ``out_trade_no``."""

    kind: ClassVar[str] = "wechatpay"
    default_base_url: ClassVar[str] = "http://127.0.0.1:8900/v3/pay"
    default_policy: ClassVar[Policy] = SEED_POLICY

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        *,
        appid: str = "wx_sim_appid_0001",
        mchid: str = "1900000109",
        notify_url: str = "https://example.invalid/pay/notify",
        policy: Policy | None = None,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, name="wechatpay", policy=policy, transport=transport)
        self.appid, self.mchid, self.notify_url = appid, mchid, notify_url

    def payment_policy(self, order: Order, operation: str) -> Policy:
        """The seed's policy for a payment: not idempotent, keyed by its order number."""
        return self.policy.replace(
            operation=operation,
            idempotent=False,
            idempotency_key=order.out_trade_no,
            classifier=_pay_classifier,
        )

    async def _place(self, order: Order, headers: Mapping[str, str] | None) -> Payment:
        body = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": order.description,
            "out_trade_no": order.out_trade_no,
            "notify_url": self.notify_url,
            "amount": {"total": order.total, "currency": "CNY"},
            "payer": {"openid": order.openid},
        }
        # The order number is the idempotency key; the header says so to APIs that read one.
        extra = {"Idempotency-Key": order.out_trade_no, **(headers or {})}
        response = await self._send("POST", "transactions/jsapi", json_body=body, headers=extra)
        reply = self.json_of(response, "transactions/jsapi")
        prepay_id = reply.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise self.missing("transactions/jsapi", "prepay_id", response.status)
        return Payment(order.out_trade_no, prepay_id)

    async def transactions_jsapi(
        self,
        order: Order,
        *,
        headers: Mapping[str, str] | None = None,
        policy: Policy | None = None,
    ) -> Payment:
        """发起支付: place the order (``wechatPayment.transactions_jsapi``)."""
        chosen = policy or self.payment_policy(order, "发起支付")
        return await chosen.acall(self._place, order, headers)

    async def retry_payment(
        self, order: Order, *, headers: Mapping[str, str] | None = None
    ) -> Payment:
        """重试支付: the user taps "pay" again; the same order number is never charged twice."""
        return await self.payment_policy(order, "重试支付").acall(self._place, order, headers)

    async def query(self, out_trade_no: str) -> Mapping[str, Any] | None:
        """The order as the payment API knows it, or ``None`` if it was never placed."""
        response = await self._send("GET", f"transactions/out-trade-no/{out_trade_no}")
        if response.status == 404:
            return None
        return self.json_of(response, "transactions/out-trade-no")
