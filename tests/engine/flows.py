"""Flows the engine tests (and the crash test's child process) import by name."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from regen.engine import Flow, Param
from regen.providers import OpenAIProvider
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


# --- the worker-fleet crash test's flow: every item a chat request to the simulator -------

#: Items whose request the simulator refuses as invalid (``X-Regen-Fault``): given up at once.
REFUSED_EVERY, REFUSED_AT = 50, 7


def chat_prompt(run_id, item):
    """The prompt of one item: unique, so the simulator's stats count each item's generations."""
    return f"crash {run_id} #{item}"


def simulator(params):
    # The worker's environment names the simulator, as a real deployment names its provider.
    return OpenAIProvider(
        os.environ["CRASH_SIM_URL"],
        "sk-crash-suite-0123456789",
        name="sim",
        model="sim",
        policy=Policy(attempts=1, timeout=10.0),
    )


chatty = Flow("chatty", params={"n": Param(int, default=500)}, resources=simulator)


@chatty.map(
    items=lambda ctx: range(ctx.params["n"]),
    concurrency=4,
    policy=Policy(attempts=8, timeout=10.0, wait=0.05, max_wait=0.2),
)
async def ask(ctx, item):
    refused = item % REFUSED_EVERY == REFUSED_AT
    headers = {"X-Regen-Fault": "invalid_param"} if refused else None
    reply = await ctx.resources.chat_once(chat_prompt(ctx.run_id, item), headers=headers)
    return len(reply.text)


# --- side effects across a crash: an outside system that de-duplicates by key ---------------


class Outbox:
    """An outside system honouring idempotency keys (a publishing API, seed 003's MCP): a
    publication per key, kept in ``published.json``; every call is logged in
    ``calls.log``, the same key or not."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.published = self.folder / "published.json"
        self.calls = self.folder / "calls.log"

    def publish(self, key: str, payload: dict) -> str:
        with self.calls.open("a") as log:
            log.write(key + "\n")
        done = json.loads(self.published.read_text()) if self.published.exists() else {}
        if key not in done:
            done[key] = {"id": f"pub-{len(done) + 1}", "payload": payload}
            self.published.write_text(json.dumps(done))
        return done[key]["id"]

    def keys_called(self) -> list[str]:
        return self.calls.read_text().split() if self.calls.exists() else []

    def publications(self) -> dict:
        return json.loads(self.published.read_text()) if self.published.exists() else {}


publisher = Flow("publisher", params={"outbox": str})


@publisher.step()
def publish_mcp(ctx):
    return Outbox(ctx.params["outbox"]).publish(ctx.idempotency_key, {"title": "digest"})


@publisher.step()
def report(ctx):
    return {"publication": ctx.results["publish_mcp"]}


keyed = Flow("keyed", params={"log": str})


@keyed.map(
    items=lambda ctx: ["a", "b", "c"],
    key=lambda name: f"post-{name}",
    concurrency=1,
    policy=Policy(attempts=1, timeout=None),
)
def render(ctx, item):
    with Path(ctx.params["log"]).open("a") as log:
        log.write(f"{item} {ctx.idempotency_key}\n")
    return item


# --- bugs: exceptions regen does not classify, raised in the user's own code -----------------

bug_in_step = Flow("bug-in-step")


def ratio(done, total):
    return done / total  # the bug: total is 0


@bug_in_step.step()
async def count(ctx):
    return 0


@bug_in_step.step()
async def share(ctx):
    return ratio(1, ctx.results["count"])


bug_in_sync_step = Flow("bug-in-sync-step")


@bug_in_sync_step.step()
def sync_share(ctx):
    return ratio(1, 0)


bug_in_item = Flow("bug-in-item")


@bug_in_item.map(items=lambda ctx: [0], policy=Policy(attempts=3, wait=0.0))
async def invert(ctx, item):
    return ratio(1, item)


def leak(key):
    raise ValueError(f"the service refused key {key}")


bug_with_secret = Flow("bug-with-secret", params={"key": str})


@bug_with_secret.step()
def connect(ctx):
    leak(ctx.params["key"])


# --- items shared by workers: each item leaves a marker file naming the process that ran it --

shared = Flow("shared", params={"folder": str, "n": Param(int, default=12)})


@shared.map(items=lambda ctx: range(ctx.params["n"]), concurrency=2)
async def mark(ctx, item):
    """Mark the item started; then hang (``SHARED_HANG``: a worker about to be killed), or
    wait for the ``go`` file before ending."""
    folder = Path(ctx.params["folder"])
    (folder / f"started-{item}-{os.getpid()}").touch()
    if os.environ.get("SHARED_HANG"):
        await asyncio.sleep(3600)
    while not (folder / "go").exists():  # noqa: ASYNC110 - another process writes it
        await asyncio.sleep(0.01)
    return {"item": item, "pid": os.getpid()}
