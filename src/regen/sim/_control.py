"""``/_sim/*``: stats, reset, scripts and the fault catalogue, for tests and people.

These routes are never faulted, never counted, and need no key.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from regen.sim._errors import JSON, dumps
from regen.sim._faults import APPLIES, CARRIED, FAULTS, ROUTES
from regen.sim._script import parse_rules

if TYPE_CHECKING:
    from regen.sim._http import Ctx
    from regen.sim._state import SimState

_HEADERS = ((b"cache-control", b"no-store"),)


async def _send(ctx: Ctx, status: int, body: bytes) -> None:
    await ctx.send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON),
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
            ],
        }
    )
    await ctx.send({"type": "http.response.body", "body": body})


def catalogue() -> dict[str, object]:
    return {
        "faults": [
            {
                "name": name,
                "routes": sorted(APPLIES[name]),
                "carried_from": sorted(CARRIED.get(name, ())),
            }
            for name in FAULTS
        ],
        "routes": list(ROUTES),
    }


async def handle(ctx: Ctx, state: SimState) -> None:
    method, name = ctx.scope["method"], ctx.param
    if name == "stats" and method == "GET":
        await _send(ctx, 200, dumps(state.snapshot()))
    elif name == "reset" and method == "POST":
        await ctx.read_body()
        state.reset()
        await _send(ctx, 200, b'{"ok":true}')
    elif name == "script" and method == "GET":
        await _send(ctx, 200, dumps({"rules": state.script.describe()}))
    elif name == "script" and method in ("POST", "PUT"):
        await ctx.read_body()
        try:
            data = json.loads(ctx.body or b"{}")
            rules = parse_rules(data)
            replace = (
                bool(data.get("replace", method == "PUT"))
                if isinstance(data, dict)
                else method == "PUT"
            )
        except ValueError as exc:
            await _send(ctx, 400, dumps({"error": str(exc)}))
            return
        state.script.add(rules, replace=replace)
        await _send(ctx, 200, dumps({"ok": True, "rules": len(state.script.rules)}))
    elif name == "outage":
        await _outage(ctx, state, method)
    elif name == "limit":
        await _limit(ctx, state, method)
    elif name == "faults" and method == "GET":
        await _send(ctx, 200, dumps(catalogue()))
    elif name == "health" and method == "GET":
        await _send(ctx, 200, b'{"ok":true}')
    else:
        await _send(
            ctx,
            404,
            dumps(
                {
                    "error": f"unknown control route {method} /_sim/{name}; try GET "
                    "/_sim/stats, POST /_sim/reset, GET|POST|PUT /_sim/script, GET /_sim/faults, "
                    "GET|POST|DELETE /_sim/outage, GET|POST /_sim/limit"
                }
            ),
        )


async def _body(ctx: Ctx) -> dict[str, object]:
    await ctx.read_body()
    data = json.loads(ctx.body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _number(data: dict[str, object], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key!r} must be a number, got {value!r}")
    return float(value)


async def _outage(ctx: Ctx, state: SimState, method: str) -> None:
    """``POST {"for": 10}`` goes down now; ``{"after": 50, "for": 10}`` from the 50th request
    (counted from now); ``DELETE`` comes back; ``GET`` tells."""
    outage = state.outage
    try:
        if method == "POST":
            data = await _body(ctx)
            seconds = _number(data, "for")
            if seconds is None:
                raise ValueError('say how long the outage lasts: {"for": SECONDS}')
            after = _number(data, "after")
            if after is None:
                outage.start(seconds)
            else:
                outage.configure(int(after), seconds)
        elif method == "DELETE":
            await ctx.read_body()
            outage.stop()
        elif method != "GET":
            raise ValueError(f"{method} /_sim/outage: use GET, POST or DELETE")
    except ValueError as exc:
        await _send(ctx, 400, dumps({"error": str(exc)}))
        return
    await _send(ctx, 200, dumps(outage.describe()))


async def _limit(ctx: Ctx, state: SimState, method: str) -> None:
    """``POST {"rps": 20, "burst": 20}`` sets the per-second limit (``{"rps": null}``: none)."""
    bucket = state.per_second
    try:
        if method == "POST":
            data = await _body(ctx)
            burst = _number(data, "burst")
            bucket.configure(_number(data, "rps"), None if burst is None else int(burst))
        elif method != "GET":
            raise ValueError(f"{method} /_sim/limit: use GET or POST")
    except ValueError as exc:
        await _send(ctx, 400, dumps({"error": str(exc)}))
        return
    await _send(ctx, 200, dumps(bucket.describe()))
