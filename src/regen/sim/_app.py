"""The ASGI application: a table router and the steps every API request goes through.

Each API request: check the key → read and identify the body → choose faults (header
``X-Regen-Fault`` or query ``regen_fault``, else the script, else the profile) →
latency → faults that replace the whole answer → the route's own handler.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from regen.sim import _control, _dashscope, _files, _openai, _pay, _photo
from regen.sim._config import SimConfig
from regen.sim._errors import Reply, bad_request, fault_reply, openai_error, refusal
from regen.sim._faults import FaultSpec
from regen.sim._http import BodyTooLarge, ClientGone, Ctx, Receive, Scope, Send
from regen.sim._state import SimState
from regen.sim._tasks import identify_poll

Handler = Callable[[Ctx, "str | None"], Awaitable[None]]
Identify = Callable[[Ctx], "str | None"]

# Faults that replace the whole answer, in the order they win when several are asked.
_WHOLE = (
    "hang",
    "reset",
    "auth",
    "permission",
    "quota",
    "rate_limit_burst",
    "retry_after_long",
    "rate_limit",
    "overloaded",
    "server_error",
    "bad_gateway_html",
    "html_200",
)


def _no_identity(ctx: Ctx) -> str | None:
    return None


def _identify_poll(ctx: Ctx) -> str | None:
    identify_poll(ctx)
    return None


def _identify_file(ctx: Ctx) -> str | None:
    _files.identify(ctx)
    return None


def _identify_pay_query(ctx: Ctx) -> str | None:
    ctx.ident.out_trade_no = ctx.param
    return None


async def _download(ctx: Ctx, _parse_error: str | None) -> None:
    await _files.download(ctx)


async def _pay_query(ctx: Ctx, _parse_error: str | None) -> None:
    await _pay.query(ctx)


@dataclass(frozen=True, slots=True)
class Endpoint:
    route: str
    family: str
    handler: Handler
    identify: Identify = _no_identity
    body: bool = False
    auth: bool = True


def _routes() -> tuple[dict[tuple[str, str], Endpoint], tuple[tuple[str, str, Endpoint], ...]]:
    static: dict[tuple[str, str], Endpoint] = {}
    for prefix in ("/v1", "/compatible-mode/v1"):
        static["GET", f"{prefix}/models"] = Endpoint("models", "openai", _openai.models)
        static["POST", f"{prefix}/chat/completions"] = Endpoint(
            "chat", "openai", _openai.chat, _openai.identify_chat, body=True
        )
        static["POST", f"{prefix}/images/generations"] = Endpoint(
            "images", "openai", _openai.images, _openai.identify_images, body=True
        )
    static["POST", "/api/v1/services/aigc/text2image/image-synthesis"] = Endpoint(
        "dashscope_submit", "dashscope", _dashscope.submit, _dashscope.identify_submit, body=True
    )
    static["POST", "/photo/v1/art-photos"] = Endpoint(
        "photo_submit", "photo", _photo.submit, _photo.identify_submit, body=True
    )
    static["POST", "/photo/v1/videos"] = Endpoint(
        "video_submit", "photo", _photo.submit, _photo.identify_submit, body=True
    )
    static["POST", "/v3/pay/transactions/jsapi"] = Endpoint(
        "pay", "pay", _pay.jsapi, _pay.identify, body=True
    )
    prefixed = (
        (
            "GET",
            "/api/v1/tasks/",
            Endpoint("dashscope_task", "dashscope", _dashscope.poll, _identify_poll),
        ),
        ("GET", "/photo/v1/tasks/", Endpoint("photo_task", "photo", _photo.poll, _identify_poll)),
        ("GET", "/photo/v1/videos/", Endpoint("video_task", "photo", _photo.poll, _identify_poll)),
        (
            "GET",
            "/v3/pay/transactions/out-trade-no/",
            Endpoint("pay_query", "pay", _pay_query, _identify_pay_query),
        ),
        ("GET", "/files/", Endpoint("file", "file", _download, _identify_file, auth=False)),
    )
    return static, prefixed


_STATIC, _PREFIXED = _routes()
_KNOWN_PATHS = {path for _, path in _STATIC}


class SimApp:
    """The simulator as an ASGI 3 application; ``state`` holds its stats and tasks."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.state = SimState(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.closing.set()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        endpoint = _STATIC.get((method, path))
        param = ""
        if endpoint is None:
            for want, prefix, candidate in _PREFIXED:
                if path.startswith(prefix) and method == want and len(path) > len(prefix):
                    endpoint, param = candidate, path[len(prefix) :]
                    break
        if endpoint is None:
            ctx = Ctx(self.state, scope, receive, send, "", "openai", path.removeprefix("/_sim/"))
            if path.startswith("/_sim/"):
                await _control.handle(ctx, self.state)
            else:
                await self._unknown_path(ctx, method, path)
            return
        ctx = Ctx(self.state, scope, receive, send, endpoint.route, endpoint.family, param)
        try:
            await self._serve(ctx, endpoint)
        except ClientGone:
            return
        except BodyTooLarge:
            await ctx.reply(
                bad_request(endpoint.family, "Request body too large.", request_id=ctx.request_id)
            )

    async def _unknown_path(self, ctx: Ctx, method: str, path: str) -> None:
        status = 405 if path in _KNOWN_PATHS else 404
        reply = openai_error(status, f"Invalid URL ({method} {path})", code="unknown_url")
        await ctx.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", reply.content_type),
                    (b"content-length", str(len(reply.body)).encode()),
                ],
            }
        )
        await ctx.send({"type": "http.response.body", "body": reply.body})

    async def _serve(self, ctx: Ctx, endpoint: Endpoint) -> None:
        state = self.state
        stats = state.stats
        refused = self._check_key(ctx, endpoint) if endpoint.auth else None
        if refused is not None:
            stats.begin(ctx.route, None)
            await ctx.pause(state.latency())  # a refused key takes a round trip too
            await ctx.reply(refused)
            return
        if endpoint.body:
            await ctx.read_body()
        parse_error = endpoint.identify(ctx)
        stats.begin(ctx.route, ctx.prompt)
        allowed, left = True, 0.0
        if endpoint.auth:
            if await self._outage_or_limit(ctx, endpoint):
                return
            allowed, ctx.extra_headers, left = state.rate.hit()
        requested = ctx.header(b"x-regen-fault")
        if requested is None and ctx.scope.get("query_string"):
            requested = ctx.query("regen_fault")
        try:
            ctx.plan = state.injector.plan(ctx.route, requested, ctx.ident)
        except ValueError as exc:
            await ctx.reply(
                bad_request(
                    endpoint.family,
                    f"X-Regen-Fault: {exc}",
                    request_id=ctx.request_id,
                    code="invalid_fault",
                )
            )
            return
        for name in ctx.plan.ignored:
            stats.ignored_fault(name)
        delay = state.latency()
        if delay:
            await asyncio.sleep(delay)
        if not allowed:
            spec = FaultSpec("rate_limit", f"{left:.3f}")
            await ctx.reply(
                fault_reply(
                    endpoint.family,
                    spec,
                    request_id=ctx.request_id,
                    model=ctx.ident.model,
                    limit=state.rate.limit,
                ),
                outcome="rate_limited",
            )
            return
        if ctx.plan.faults and await self._whole_answer_faults(ctx):
            return
        await endpoint.handler(ctx, parse_error)

    async def _outage_or_limit(self, ctx: Ctx, endpoint: Endpoint) -> bool:
        """Answer for a provider that is down (503) or over its per-second limit (429 with
        ``Retry-After``); ``True`` when one of them did."""
        state = self.state
        if state.outage.hit() is not None:
            reply = fault_reply(
                endpoint.family,
                FaultSpec("overloaded"),
                request_id=ctx.request_id,
                model=ctx.ident.model,
                route=ctx.route,
            )
            await ctx.reply(reply, outcome="outage")
            return True
        wait = state.per_second.take()
        if wait is not None:
            reply = fault_reply(
                endpoint.family,
                FaultSpec("rate_limit", f"{wait:.3f}"),
                request_id=ctx.request_id,
                model=ctx.ident.model,
                route=ctx.route,
                limit=math.ceil(state.per_second.rps or 1),
            )
            await ctx.reply(reply, outcome="rps_limited")
            return True
        return False

    def _check_key(self, ctx: Ctx, endpoint: Endpoint) -> Reply | None:
        header = ctx.header(b"authorization") or ""
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if endpoint.family == "pay" and scheme.upper().startswith("WECHATPAY2-") and key:
            return None  # a merchant signature: accepted, not verified
        if scheme.lower() != "bearer" or not key:
            return refusal(endpoint.family, "missing_key", request_id=ctx.request_id)
        if self.config.keys and key not in self.config.keys:
            return fault_reply(
                endpoint.family, FaultSpec("auth"), request_id=ctx.request_id, key=key
            )
        return None

    async def _whole_answer_faults(self, ctx: Ctx) -> bool:
        """Apply a fault that replaces the whole answer; ``True`` if one did."""
        paying = ctx.route == "pay"
        if not paying:
            slow = ctx.fault("slow")
            if slow is not None:
                await ctx.pause(slow.number(self.config.slow_seconds))
        for name in _WHOLE:
            if paying and name in _pay.LOSING:
                continue  # the payment handler loses these answers after charging
            spec = ctx.fault(name)
            if spec is None:
                continue
            if name == "hang":
                await ctx.hang()
            elif name == "reset":
                await ctx.reset()
            else:
                header = ctx.header(b"authorization") or ""
                await ctx.reply(
                    fault_reply(
                        ctx.family,
                        spec,
                        request_id=ctx.request_id,
                        model=ctx.ident.model,
                        key=header.partition(" ")[2],
                        route=ctx.route,
                        limit=self.state.rate.limit,
                    )
                )
            return True
        return False


def create_app(config: SimConfig | None = None) -> SimApp:
    """The simulator as an ASGI application (serve it with any ASGI server)."""
    return SimApp(config or SimConfig())
