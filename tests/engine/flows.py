"""Flows the engine tests (and the crash test's child process) import by name."""

from __future__ import annotations

import os
from pathlib import Path

from regen.engine import Flow, Param
from regen.retry import Policy, Retryable

linear = Flow("linear", params={"topic": Param(str, default="llm")})


@linear.step()
async def fetch(ctx):
    return {"papers": [f"{ctx.params['topic']}-{i}" for i in range(3)]}


@linear.step()
def analyze(ctx):
    return [p.upper() for p in ctx.results["fetch"]["papers"]]


@linear.step()
async def publish(ctx):
    return {"published": len(ctx.results["analyze"]), "key": ctx.idempotency_key}


# --- the crash test's flow: a map step whose side effects are counted in a file -------------

crashy = Flow("crashy", params={"n": Param(int, default=200), "log": str})


@crashy.map(
    items=lambda ctx: range(ctx.params["n"]),
    concurrency=1,
    policy=Policy(attempts=3, wait=0.0, timeout=None),
)
def side_effect(ctx, item):
    # The side effect: one line per execution of the item's work.
    with Path(ctx.params["log"]).open("a") as log:
        log.write(f"{item}\n")
        log.flush()
        os.fsync(log.fileno())
    if item % 37 == 5 and ctx.attempt == 1 and os.environ.get("CRASHY_FLAKY"):
        raise Retryable("flaky")
    return item * 2


@crashy.step()
def total(ctx):
    return ctx.results["side_effect"]
