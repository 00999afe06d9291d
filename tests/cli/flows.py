"""Flows the CLI tests run: small, offline, deterministic."""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

from regen import Policy
from regen.engine import Flow, Param, StepContext

demo = Flow("cli-demo", params={"count": int, "fail_item": int})


@demo.step()
async def candidates(ctx: StepContext) -> list[int]:
    return list(range(ctx.params["count"] * 3))


@demo.map(
    items="candidates",
    concurrency=2,
    quota="params.count",
    policy=Policy(attempts=2, wait=0, timeout=30),  # longer than the slowest CLI_TEST_ITEM_DELAY
)
async def illustrate(ctx: StepContext, item: int) -> dict[str, Any]:
    if item == ctx.params["fail_item"]:
        raise TimeoutError(f"image {item} timed out")
    await asyncio.sleep(float(os.environ.get("CLI_TEST_ITEM_DELAY", "0")))
    hold_from = os.environ.get("CLI_TEST_HOLD_FROM")
    if hold_from is not None and item >= int(hold_from):
        await asyncio.Event().wait()  # until the run is interrupted
    return {"image": f"img-{item}.png"}


@demo.step()
async def publish(ctx: StepContext) -> int:
    if os.environ.get("CLI_TEST_FAIL_PUBLISH"):
        raise RuntimeError("publish failed")
    return len(ctx.results["illustrate"])


# A flow whose run keeps an artifact (a PNG header is enough for its size to be read).
art = Flow("cli-art", params={"name": str})
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    + (4).to_bytes(4, "big")
    + (3).to_bytes(4, "big")
    + b"\x08\x02\x00\x00\x00"
)


@art.step()
async def draw(ctx: StepContext) -> Any:
    return ctx.artifacts.put(PNG + ctx.params["name"].encode())


# A flow whose params are refused before a run exists when they do not fit.
dated = Flow(
    "cli-dated",
    params={
        "date": Param(datetime.date, help="the batch's day"),
        "count": Param(int, default=3, ge=1, help="posts wanted"),
        "ratio": Param(float, default=1.0),
        "topic": Param(str, default="news"),
    },
)


@dated.step()
def headline(ctx: StepContext) -> str:
    # A date param reaches the step as a datetime.date.
    day: datetime.date = ctx.params["date"]
    return f"{ctx.params['count']} {ctx.params['topic']} posts for {day:%d %B %Y}"


# A flow whose step kills its own process (a native crash, the OOM killer) unless told not
# to: its run must not be taken over forever.
crashing = Flow("cli-crashing")


@crashing.step()
def prepare(ctx: StepContext) -> str:
    return "ready"


@crashing.step()
def explode(ctx: StepContext) -> str:
    if not os.environ.get("CLI_TEST_NO_CRASH"):
        os.kill(os.getpid(), 9)
    return "survived"


# A flow of one step that takes as long as CLI_TEST_STEP_DELAY says.
slow = Flow("cli-slow")


@slow.step()
async def wait_a_while(ctx: StepContext) -> str:
    await asyncio.sleep(float(os.environ.get("CLI_TEST_STEP_DELAY", "0")))
    return "done"


# A flow with a bug in its own code: the CLI must show where it is.
buggy = Flow("cli-buggy")


@buggy.step()
def divide(ctx: StepContext) -> float:
    return 1 / 0


# A flow whose resources read a policy from the environment: a bad variable is a config
# error that names it.
def _policy_resources(params: dict[str, Any]) -> Policy:
    return Policy.from_env("CLI_TEST_IMAGE")


configured = Flow("cli-configured", resources=_policy_resources)


@configured.step()
def use_policy(ctx: StepContext) -> int:
    return int(ctx.resources.attempts)


# A flow that times out and retries itself once, a moment later.
flaky = Flow(
    "cli-flaky", max_retries=1, retry_delay=float(os.environ.get("CLI_TEST_RETRY_DELAY", "0.5"))
)


@flaky.step()
def fetch(ctx: StepContext) -> str:
    raise TimeoutError("the provider did not answer in 5 s")


@flaky.step()
def render(ctx: StepContext) -> str:
    return "never reached"


# A flow whose checkpoint holds floats strict JSON has no word for.
odd = Flow("cli-odd")


@odd.step()
def measure(ctx: StepContext) -> dict[str, float]:
    return {"ratio": float("nan"), "ceiling": float("inf")}


# A flow whose failure message carries what it was given (a key, by mistake).
leaky = Flow("cli-leaky", params={"note": str})


@leaky.step()
def call_gateway(ctx: StepContext) -> str:
    raise RuntimeError(f"refused: {ctx.params['note']}")


# A flow whose map step ends partial (no quota: a given-up item does not stop the run) and
# whose next step then fails: the run fails at one step and resumes from an earlier one.
lossy = Flow("cli-lossy")


@lossy.step()
def numbers(ctx: StepContext) -> list[int]:
    return [1, 2, 3]


@lossy.map(items="numbers", policy=Policy(attempts=1))
def square(ctx: StepContext, n: int) -> int:
    if n == 2:
        raise TimeoutError("image 2 timed out")
    return n * n


@lossy.step()
def total(ctx: StepContext) -> int:
    raise RuntimeError("total failed")
