"""A WeChat Pay JSAPI-like payment endpoint, idempotent by ``out_trade_no``.

``POST /v3/pay/transactions/jsapi`` places an order (a *charge*). The same
``out_trade_no`` with the same amount returns the first result without charging again;
with a different amount it is refused. ``GET /v3/pay/transactions/out-trade-no/{no}``
tells whether an order exists, so a client can check before retrying.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regen.sim._errors import bad_request, dumps, fault_reply, not_found

if TYPE_CHECKING:
    from regen.sim._http import Ctx

_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_REQUIRED = ("appid", "mchid", "description", "out_trade_no", "notify_url")
# Faults that lose or spoil the answer after the order was placed: the client cannot tell
# whether it was charged, which is what idempotency keys are for.
LOSING = ("hang", "reset", "slow", "bad_gateway_html", "html_200")


@dataclass(slots=True)
class Order:
    out_trade_no: str
    appid: str
    mchid: str
    description: str
    total: int
    currency: str
    prepay_id: str
    transaction_id: str
    created: float = field(default_factory=time.time)


class Ledger:
    """Orders by ``out_trade_no`` and how many requests asked for each."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.requests: dict[str, int] = {}

    def reset(self) -> None:
        self.orders.clear()
        self.requests.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "charges": len(self.orders),
            "requests": sum(self.requests.values()),
            "amount_total": sum(order.total for order in self.orders.values()),
            "by_out_trade_no": {
                number: {
                    "requests": count,
                    "charges": 1 if number in self.orders else 0,
                    "amount": self.orders[number].total if number in self.orders else 0,
                }
                for number, count in self.requests.items()
            },
        }


def identify(ctx: Ctx) -> str | None:
    error = ctx.parse_json()
    if error is None:
        number = ctx.data.get("out_trade_no")
        if isinstance(number, str):
            ctx.ident.out_trade_no = number
            requests = ctx.state.ledger.requests
            requests[number] = requests.get(number, 0) + 1
    return error


def _validate(data: dict[str, Any]) -> str | None:
    for name in _REQUIRED:
        if not isinstance(data.get(name), str) or not data[name]:
            return f"Missing or invalid parameter: {name}"
    if not _TRADE_NO.match(data["out_trade_no"]):
        return "out_trade_no must be 6-32 characters of letters, digits, _-|*"
    amount = data.get("amount")
    if (
        not isinstance(amount, dict)
        or not isinstance(amount.get("total"), int)
        or amount["total"] <= 0
    ):
        return "Missing or invalid parameter: amount.total (a positive integer, in fen)"
    payer = data.get("payer")
    if not isinstance(payer, dict) or not isinstance(payer.get("openid"), str):
        return "Missing or invalid parameter: payer.openid"
    return None


async def jsapi(ctx: Ctx, parse_error: str | None) -> None:
    """Place an order, or replay the first answer for a known ``out_trade_no``."""
    if parse_error is not None:
        await ctx.reply(bad_request("pay", parse_error, request_id=ctx.request_id))
        return
    data = ctx.data
    number = data.get("out_trade_no")
    ledger = ctx.state.ledger
    if ctx.fault("invalid_param"):
        await ctx.reply(
            fault_reply("pay", ctx.plan.faults["invalid_param"], request_id=ctx.request_id)
        )
        return
    problem = _validate(data)
    if problem is not None:
        await ctx.reply(bad_request("pay", problem, request_id=ctx.request_id))
        return
    total = data["amount"]["total"]
    order = ledger.orders.get(number)
    if order is None:
        digest = hashlib.sha256(f"{data['mchid']}|{number}".encode()).hexdigest()
        order = ledger.orders[number] = Order(
            out_trade_no=number,
            appid=data["appid"],
            mchid=data["mchid"],
            description=data["description"],
            total=total,
            currency=str(data["amount"].get("currency", "CNY")),
            prepay_id=f"wx{time.strftime('%d%H%M%S')}{digest[:24]}",
            transaction_id=f"4200{int(digest[:16], 16) % 10**24:024d}",
        )
    elif order.total != total or order.description != data["description"]:
        await ctx.reply(
            bad_request(
                "pay",
                "out_trade_no already used with different parameters "
                "(duplicate merchant order number)",
                request_id=ctx.request_id,
                code="INVALID_REQUEST",
            )
        )
        return
    if ctx.fault("missing_fields"):
        await ctx.respond(200, b"{}")
        return
    if await lose_answer(ctx):
        return
    await ctx.respond(200, dumps({"prepay_id": order.prepay_id}))


async def lose_answer(ctx: Ctx) -> bool:
    """Apply a fault that loses the answer after the charge; ``True`` if one did."""
    for name in LOSING:
        spec = ctx.fault(name)
        if spec is None:
            continue
        if name == "hang":
            await ctx.hang()
        elif name == "reset":
            await ctx.reset()
        elif name == "slow":
            await ctx.pause(spec.number(ctx.state.config.slow_seconds))
            return False
        else:
            await ctx.reply(fault_reply("pay", spec, request_id=ctx.request_id))
        return True
    return False


async def query(ctx: Ctx) -> None:
    """``GET /v3/pay/transactions/out-trade-no/{out_trade_no}``."""
    order = ctx.state.ledger.orders.get(ctx.param)
    if order is None:
        await ctx.reply(not_found("pay", "Order does not exist.", request_id=ctx.request_id))
        return
    await ctx.respond(
        200,
        dumps(
            {
                "appid": order.appid,
                "mchid": order.mchid,
                "out_trade_no": order.out_trade_no,
                "transaction_id": order.transaction_id,
                "trade_type": "JSAPI",
                "trade_state": "SUCCESS",
                "trade_state_desc": "Payment succeeded (simulated payer).",
                "success_time": time.strftime(
                    "%Y-%m-%dT%H:%M:%S+08:00", time.localtime(order.created)
                ),
                "amount": {
                    "total": order.total,
                    "payer_total": order.total,
                    "currency": order.currency,
                },
            }
        ),
    )
