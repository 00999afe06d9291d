"""Streaming steps: chunks in the log with their attempt, resets, never a partial result."""

from __future__ import annotations

import pytest

from regen.engine import Engine, Flow, RunStatus, StepStatus
from regen.retry import FakeClock, Policy, Retryable
from regen.store import AddEvent, CountAttempt, SQLiteStore, StartStep

POLICY = Policy(attempts=3, wait=0.5, timeout=None)


def chapter(cuts: dict[str, int]) -> Flow:
    flow = Flow("chapter")

    @flow.stream(policy=POLICY)
    async def write(ctx):
        ctx.emit("summary", {"title": "Chapter 3"})
        for i, word in enumerate(["Once ", "upon ", "a ", "time."]):
            if i == 2 and cuts["left"] > 0:
                cuts["left"] -= 1
                raise Retryable("stream cut", kind="connection")
            yield word
        ctx.emit("complete", {"options": ["left", "right"]})
        ctx.set_output(
            {"title": "Chapter 3", "text": "Once upon a time.", "options": ["left", "right"]}
        )

    return flow


async def test_chunks_carry_their_attempt_and_a_cut_attempt_is_reset(engine: Engine) -> None:
    run = await engine.run(chapter({"left": 1}))
    assert run.status is RunStatus.SUCCEEDED
    events = [(e.type, e.data) for e in await engine.read_events(run.id)]
    types = [t for t, _ in events]
    reset = types.index("stream.reset")
    assert [d["attempt"] for t, d in events[:reset] if t == "chunk"] == [1, 1]
    assert [d["text"] for t, d in events[reset:] if t == "chunk"] == [
        "Once ",
        "upon ",
        "a ",
        "time.",
    ]
    assert all(d["attempt"] == 2 for t, d in events[reset:] if t == "chunk")
    assert types.index("summary") < types.index("chunk")
    assert types.index("complete") > len(types) - 6
    assert (await engine.detail(run.id)).steps[0].output["options"] == ["left", "right"]


async def test_a_stream_that_never_completes_returns_no_partial_output(engine: Engine) -> None:
    run = await engine.run(chapter({"left": 9}))
    assert run.status is RunStatus.FAILED
    step = (await engine.detail(run.id)).steps[0]
    assert step.status is StepStatus.FAILED
    assert step.output is None
    types = [e.type for e in await engine.read_events(run.id)]
    assert types.count("stream.reset") == 3  # every cut attempt, the last one included


async def test_a_stream_taken_over_after_a_crash_is_reset_first(
    engine: Engine, clock: FakeClock, other_store: SQLiteStore
) -> None:

    flow = chapter({"left": 0})
    started = await engine.start(flow)
    dead = await other_store.claim("dead", 30.0, clock.wall(), run_id=started.run.id)
    assert dead is not None
    await other_store.commit(
        dead.lease,
        [
            StartStep(0, clock.wall()),
            CountAttempt(0, 1),
            AddEvent("chunk", '{"text":"Once ","attempt":1}', clock.wall()),
        ],
    )
    clock.advance(60)
    run = await engine.execute(started.run.id)
    assert run.status is RunStatus.SUCCEEDED
    events = [(e.type, e.data) for e in await engine.read_events(run.id)]
    types = [t for t, _ in events]
    reset = types.index("stream.reset")
    assert events[reset][1]["attempt"] == 1
    assert {d["attempt"] for t, d in events[reset:] if t == "chunk"} == {2}


async def test_streams_must_yield_text(engine: Engine) -> None:
    flow = Flow("badstream")

    @flow.stream(policy=Policy(attempts=1, timeout=None))
    async def s(ctx):
        yield {"not": "text"}

    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    assert "yield text" in run.error["message"]


@pytest.mark.parametrize("attempts", [1, 2])
async def test_stream_attempts_are_counted_on_the_step(engine: Engine, attempts: int) -> None:
    run = await engine.run(chapter({"left": attempts - 1}))
    assert (await engine.detail(run.id)).steps[0].attempts == attempts
