"""Map steps: bounded concurrency, per-item retries, give-ups, quotas, resumes, memory."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
from pathlib import Path

import pytest

from regen.engine import Cache, Engine, Flow, ItemStatus, RunStatus, StepStatus
from regen.foundation import media_info
from regen.retry import FakeClock, Permanent, Policy, Retryable, _state
from regen.retry._clock import Clock
from regen.store import SQLiteStore

FAST = Policy(attempts=3, wait=0.1, multiplier=1.0, timeout=None)


async def test_an_item_that_runs_out_of_attempts_is_given_up_and_the_run_goes_on(
    engine: Engine,
) -> None:
    flow = Flow("posts", params={"posts": list})

    @flow.map(items="params.posts", policy=FAST, key=lambda p: p["id"])
    async def illustrate(ctx, post):
        if post["id"] == "b":
            raise TimeoutError("image generation timed out")
        return {"image": f"{post['id']}.png"}

    @flow.step()
    async def publish(ctx):
        return [i.output["image"] async for i in ctx.items("illustrate")]

    posts = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    run = await engine.run(flow, {"posts": posts})
    assert run.status is RunStatus.PARTIAL
    detail = await engine.detail(run.id)
    assert detail.steps[1].output == ["a.png", "c.png"]
    given_up = await engine.items(run.id, "illustrate", status="given_up")
    assert len(given_up) == 1
    assert given_up[0].key == "b"
    assert len(given_up[0].attempts) == 3
    assert given_up[0].attempts[0]["kind"] == "timeout"
    assert len(given_up[0].errors) == 3
    assert detail.items["illustrate"]["succeeded"] == 2


async def test_a_map_step_whose_items_all_give_up_fails_the_run(engine: Engine) -> None:
    flow = Flow("allfail")

    @flow.map(items=lambda ctx: range(3), policy=FAST)
    async def bad(ctx, item):
        raise Permanent("401 unauthorized", kind="auth")

    @flow.step()
    async def after(ctx): ...

    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    detail = await engine.detail(run.id)
    assert detail.failed_step == "bad"
    assert detail.steps[1].status is StepStatus.PENDING
    items = await engine.items(run.id, "bad")
    assert all(len(i.attempts) == 1 for i in items)  # auth: no retry


async def test_retry_reruns_only_given_up_items(engine: Engine) -> None:
    flaky = {"x": True}
    calls: list[int] = []
    flow = Flow("rerun")

    @flow.map(items=lambda ctx: range(6), policy=Policy(attempts=1, timeout=None))
    async def gen(ctx, item):
        calls.append(item)
        if item in (2, 4) and flaky["x"]:
            raise Retryable("503")
        return item

    run = await engine.run(flow)
    assert run.status is RunStatus.PARTIAL
    flaky["x"] = False
    calls.clear()
    await engine.retry(run.id)
    run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert sorted(calls) == [2, 4]
    assert (await engine.detail(run.id)).steps[0].output["succeeded"] == 6


async def test_quota_stops_at_k_successes_and_skips_the_rest(engine: Engine) -> None:
    in_flight = {"now": 0, "max": 0, "succeeded": 0}
    flow = Flow("backfill", params={"count": int})

    @flow.map(
        items=lambda ctx: range(ctx.params["count"] * 5),
        concurrency=8,
        quota="params.count",
        policy=Policy(attempts=2, wait=0.0, timeout=None),
    )
    async def candidate(ctx, item):
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"] + in_flight["succeeded"])
        await asyncio.sleep(0.001)
        in_flight["now"] -= 1
        if item % 3 == 0:
            raise Retryable("html instead of an image", kind="bad_content")
        in_flight["succeeded"] += 1
        return item

    run = await engine.run(flow, {"count": 3})
    assert run.status is RunStatus.SUCCEEDED
    out = (await engine.detail(run.id)).steps[0].output
    assert out["succeeded"] == 3
    assert out["total"] == 15
    assert in_flight["max"] <= 3  # never more than K - succeeded in flight
    assert out["skipped"] == 15 - out["succeeded"] - out["given_up"]
    statuses = [i.status for i in await engine.items(run.id, "candidate")]
    assert statuses.count(ItemStatus.SUCCEEDED) == 3
    assert statuses[-1] is ItemStatus.SKIPPED


async def test_quota_not_met_is_partial_or_failed(engine: Engine) -> None:
    flow = Flow("short", params={"good": int})

    @flow.map(items=lambda ctx: range(4), quota=3, policy=Policy(attempts=1, timeout=None))
    async def c(ctx, item):
        if item >= ctx.params["good"]:
            raise Retryable("timeout")
        return item

    assert (await engine.run(flow, {"good": 1})).status is RunStatus.PARTIAL
    assert (await engine.run(flow, {"good": 0})).status is RunStatus.FAILED
    assert (await engine.run(flow, {"good": 3})).status is RunStatus.SUCCEEDED


class _PauseUntil(Clock):
    """Real time, except a pause of ``seconds``: it lasts until ``done`` is set (10 s at
    most), however fast or slow the machine runs what happens meanwhile."""

    def __init__(self, seconds: float, done: asyncio.Event) -> None:
        self.seconds = seconds
        self.done = done

    async def asleep(self, seconds: float) -> None:
        if seconds != self.seconds:
            await super().asleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), 10)


async def test_waits_between_attempts_do_not_hold_a_slot(engine: Engine) -> None:
    # One slot; the flaky first item pauses before its retry until the other items have
    # run: they can only run if the pause does not hold the slot (else it ends after 10 s,
    # and the retry comes first).
    others_ran = asyncio.Event()
    saved = _state.clock
    _state.clock = _PauseUntil(0.3, others_ran)
    order: list[str] = []
    try:
        flow = Flow("slots")

        @flow.map(
            items=lambda ctx: range(4),
            concurrency=1,
            policy=Policy(attempts=2, wait=0.3, multiplier=1.0, jitter=0.0, timeout=None),
        )
        async def c(ctx, item):
            order.append(f"{item}")
            if item == 0 and order.count("0") == 1:
                raise Retryable("busy")
            if item == 3:
                others_ran.set()
            return item

        run = await engine.run(flow)
    finally:
        _state.clock = saved
    assert run.status is RunStatus.SUCCEEDED
    assert order[:4] == ["0", "1", "2", "3"]
    assert order[4] == "0"


async def test_a_large_maps_items_are_all_recorded_before_the_first_runs(engine: Engine) -> None:
    # Recorded in the store (inputs and all), any worker can run any of them; the generator
    # is consumed page by page, never turned into a list.
    produced = {"n": 0, "at_first_item": -1}
    flow = Flow("big")

    def items(ctx):
        for i in range(20_000):
            produced["n"] += 1
            yield {"n": i}

    @flow.map(items=items, concurrency=16, policy=Policy(attempts=1, timeout=None))
    async def tiny(ctx, item):
        if produced["at_first_item"] < 0:
            produced["at_first_item"] = produced["n"]
        return item["n"]

    run = await engine.run(flow)
    assert run.status is RunStatus.SUCCEEDED
    assert (await engine.detail(run.id)).steps[0].output["succeeded"] == 20_000
    assert produced["at_first_item"] == 20_000
    last = (await engine.items(run.id, "tiny", after=19_998))[0]
    assert (last.idx, last.input, last.output) == (19_999, {"n": 19_999}, 19_999)


async def test_sync_items_run_in_threads_concurrently(engine: Engine) -> None:
    # Four items wait for each other at the barrier: it only opens if four run at once.
    barrier = threading.Barrier(4, timeout=20)
    names: set[str] = set()
    flow = Flow("sync_items")

    @flow.map(items=lambda ctx: range(8), concurrency=4, policy=Policy(attempts=1, timeout=None))
    def blocking(ctx, item):
        names.add(threading.current_thread().name)
        barrier.wait()
        return item

    run = await engine.run(flow)
    assert run.status is RunStatus.SUCCEEDED
    assert not barrier.broken
    assert (await engine.detail(run.id)).steps[0].output["succeeded"] == 8
    assert len(names) >= 4
    assert all(name.startswith("regen-step") for name in names)


async def test_item_results_can_be_reused_from_the_cache(engine: Engine) -> None:
    calls: list[str] = []
    flow = Flow("prompts", params={"prompts": list})

    @flow.map(items="params.prompts", cache=True, policy=Policy(attempts=1, timeout=None))
    async def image(ctx, prompt):
        calls.append(prompt)
        return f"img:{prompt}"

    await engine.run(flow, {"prompts": ["cat", "dog"]})
    run = await engine.run(flow, {"prompts": ["cat", "bird"]})
    # Once each, "cat" not again (items start side by side: in any order).
    assert sorted(calls) == ["bird", "cat", "dog"]
    items = await engine.items(run.id, "image")
    assert [i.cached for i in items] == [True, False]
    assert items[0].output == "img:cat"


async def test_a_cached_item_result_expires_after_its_ttl(engine: Engine, clock: FakeClock) -> None:
    calls: list[str] = []
    flow = Flow("prompts_ttl", params={"prompts": list})

    @flow.map(items="params.prompts", cache=Cache(ttl=10), policy=Policy(attempts=1, timeout=None))
    async def image(ctx, prompt):
        calls.append(prompt)
        return f"img:{prompt}:{len(calls)}"

    await engine.run(flow, {"prompts": ["cat"]})
    clock.advance(9)
    reused = await engine.run(flow, {"prompts": ["cat"]})
    assert [(i.output, i.cached) for i in await engine.items(reused.id, "image")] == [
        ("img:cat:1", True)
    ]
    clock.advance(2)
    fresh = await engine.run(flow, {"prompts": ["cat"]})
    assert calls == ["cat", "cat"]
    assert [(i.output, i.cached) for i in await engine.items(fresh.id, "image")] == [
        ("img:cat:2", False)
    ]


async def test_artifacts_are_content_addressed_with_image_sizes(
    engine: Engine, tmp_path: Path, other_store: SQLiteStore
) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + (640).to_bytes(4, "big")
        + (360).to_bytes(4, "big")
        + b"\x08\x02\x00\x00\x00"
        + b"\x00" * 32
    )
    flow = Flow("art")

    seen: list[tuple[bytes, str]] = []

    @flow.map(items=lambda ctx: range(2), policy=Policy(attempts=1, timeout=None))
    async def draw(ctx, item):
        ref = ctx.artifacts.put(png)
        seen.append((ctx.artifacts.read(ref), str(ctx.artifacts.path(ref))))
        return ref

    run = await engine.run(flow)
    outputs = [i.output for i in await engine.items(run.id, "draw")]
    assert outputs[0] == outputs[1]
    ref = outputs[0]
    assert (ref["width"], ref["height"], ref["content_type"]) == (640, 360, "image/png")
    path = engine.artifacts.path(ref)
    assert seen == [(png, str(path))] * 2  # what a step reads back, and where the file is
    assert path.parent.parent == tmp_path / "artifacts"
    assert path.parent.name == ref["artifact"][:2]
    assert path.read_bytes() == png
    # Unreferenced artifacts go when their runs are gone.
    await other_store.collect(
        checkpoints_before=0,
        runs_before=10**12,
        artifacts_before=10**12,
        now=0,
        remove_file=engine.artifacts.blobs.remove,
    )
    assert not path.exists()


def test_jpeg_and_gif_sizes_are_read_from_headers() -> None:

    jpeg = (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        b"\xff\xc0\x00\x11\x08"
        + (480).to_bytes(2, "big")
        + (800).to_bytes(2, "big")
        + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    assert media_info(jpeg) == ("image/jpeg", 800, 480)
    assert media_info(b"GIF89a\x10\x00\x20\x00") == ("image/gif", 16, 32)
    assert media_info(b"<html>oops</html>")[0] == "application/octet-stream"


async def test_attempt_failures_and_progress_are_in_the_event_log(engine: Engine) -> None:
    tries: collections.Counter[int] = collections.Counter()
    flow = Flow("events")

    @flow.map(items=lambda ctx: range(3), policy=FAST)
    async def m(ctx, item):
        tries[item] += 1
        if item == 1 and tries[item] == 1:  # flaky: its first attempt fails, the next works
            raise Retryable("flaky", kind="server_error", status=503)
        return item

    run = await engine.run(flow)
    assert run.status is RunStatus.SUCCEEDED
    assert tries == {0: 1, 1: 2, 2: 1}
    events = await engine.read_events(run.id)
    failed = [e.data for e in events if e.type == "attempt.failed"]
    assert len(failed) == 1
    assert failed[0]["item"] == 1
    assert failed[0]["attempt"] == 1
    assert failed[0]["kind"] == "server_error"
    assert failed[0]["status"] == 503
    assert failed[0]["wait"] == pytest.approx(0.1)
    succeeded = {e.data["item"]: e.data for e in events if e.type == "item.succeeded"}
    assert {i: d["attempts"] for i, d in succeeded.items()} == {0: 1, 1: 2, 2: 1}
    assert succeeded[1]["output"] == 1
    flaky = (await engine.items(run.id, "m"))[1]
    assert flaky.status is ItemStatus.SUCCEEDED
    assert [a["kind"] for a in flaky.attempts] == ["server_error"]  # the failed attempt
    progress = [e.data for e in events if e.type == "progress"]
    assert progress[-1]["current"] == 3
    assert progress[-1]["total"] == 3
    assert progress[-1]["succeeded"] == 3
    assert json.dumps([e.to_dict() for e in events])


async def test_an_items_idempotency_key_is_stable_across_retries(engine: Engine) -> None:
    seen: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
    broken = {"b": True}
    flow = Flow("keys")

    @flow.map(
        items=lambda ctx: ["a", "b", "c"],
        key=lambda name: f"post-{name}",
        policy=Policy(attempts=2, wait=0.0, timeout=None),
    )
    async def send(ctx, item):
        seen[item].append(ctx.idempotency_key)
        if item == "b" and broken["b"]:
            raise Retryable("503 from the outside system")
        return item

    run = await engine.run(flow)
    assert run.status is RunStatus.PARTIAL  # "b" gave up
    broken["b"] = False
    await engine.retry(run.id)
    assert (await engine.execute(run.id)).status is RunStatus.SUCCEEDED
    # Its two attempts and the retry's: one key, the item's own.
    assert seen["b"] == [f"{run.id}/send/post-b"] * 3
    assert seen["a"] == [f"{run.id}/send/post-a"]  # kept: not run again

    # A retry from the step itself means "do it again": a new generation of keys.
    await engine.retry(run.id, from_step="send")
    assert (await engine.execute(run.id)).status is RunStatus.SUCCEEDED
    assert seen["a"] == [f"{run.id}/send/post-a", f"{run.id}/send#1/post-a"]


async def test_an_item_without_a_key_is_keyed_by_its_index(engine: Engine) -> None:
    keys: list[str] = []
    flow = Flow("indexed")

    @flow.map(items=lambda ctx: ["x", "y"], concurrency=1, policy=Policy(attempts=1, timeout=None))
    async def send(ctx, item):
        keys.append(ctx.idempotency_key)

    run = await engine.run(flow)
    assert keys == [f"{run.id}/send/0", f"{run.id}/send/1"]
