"""A bug in a step (an exception regen does not classify) records where it is: its type,
message and the frames of the user's own code, on the events and the run's error."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

from engine import flows
from regen.engine import Engine, Flow, RunStatus, format_error
from regen.engine._outcome import error_of
from regen.retry import GiveUp, Policy

FLOWS = str(Path(flows.__file__))
SOURCE = Path(FLOWS).read_text().splitlines()
#: The line of ``done / total`` in tests/engine/flows.py.
BUG = next(n for n, line in enumerate(SOURCE, 1) if "# the bug" in line)


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(SOURCE, 1) if text in line)


async def events_of(engine: Engine, flow: Flow, params: Any = None) -> dict[str, Any]:
    """The failed run's events by type, and its error as ``"run.error"``."""
    run = await engine.run(flow, params)
    assert run.status is RunStatus.FAILED
    events = {e.type: e.data for e in await engine.read_events(run.id)}
    return {**events, "run.error": (await engine.get_run(run.id)).error}


def where(error: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(f["file"], f["line"], f["function"]) for f in error["frames"]]


async def test_a_bug_in_an_async_step_records_its_type_message_and_lines(engine: Engine) -> None:
    events = await events_of(engine, flows.bug_in_step)
    error = events["step.failed"]["error"]
    assert error["type"] == "ZeroDivisionError"
    assert error["kind"] == "unknown"
    assert error["message"] == "division by zero"
    assert error["exception"] == "ZeroDivisionError: division by zero"
    # Only the user's frames: none of regen's, asyncio's or the thread pool's.
    assert where(error) == [
        (FLOWS, line_of('return ratio(1, ctx.results["count"])'), "share"),
        (FLOWS, BUG, "ratio"),
    ]
    assert error["frames"][-1]["code"] == "return done / total  # the bug: total is 0"
    run_error = events["run.error"]
    assert run_error["step"] == "share"
    assert run_error["frames"] == error["frames"]
    assert events["run.failed"]["error"]["frames"] == error["frames"]


async def test_a_bug_in_a_sync_step_leaves_the_engine_frames_out(engine: Engine) -> None:
    error = (await events_of(engine, flows.bug_in_sync_step))["step.failed"]["error"]
    step = (FLOWS, line_of("return ratio(1, 0)"), "sync_share")
    assert where(error) == [step, (FLOWS, BUG, "ratio")]


async def test_a_bug_in_a_map_item_records_its_lines_on_item_given_up(engine: Engine) -> None:
    events = await events_of(engine, flows.bug_in_item)
    given_up = events["item.given_up"]
    assert given_up["kind"] == "unknown"
    assert given_up["attempts"] == 1  # a bug is not retried
    if "error" not in given_up:
        pytest.xfail("regen.engine._map writes no error record on item.given_up yet")
    error = given_up["error"]
    assert error["type"] == "ZeroDivisionError"
    item = (FLOWS, line_of("return ratio(1, item)"), "invert")
    assert where(error) == [item, (FLOWS, BUG, "ratio")]


def test_a_given_up_call_keeps_the_frames_of_its_last_attempt() -> None:
    """What a map item's give-up holds: the retry core's GiveUp, its bug chained as cause."""
    with pytest.raises(GiveUp) as caught:
        Policy(attempts=3, wait=0).call(flows.ratio, 1, 0)
    error = error_of(caught.value)
    assert error["type"] == "ZeroDivisionError"
    assert error["kind"] == "unknown"
    assert error["exception"] == "ZeroDivisionError: division by zero"
    assert where(error) == [(FLOWS, BUG, "ratio")]
    assert len(error["attempts"]) == 1


async def test_a_secret_in_a_bug_message_is_masked(engine: Engine) -> None:
    key = "sk-" + "abcdefghijklmnopqrstuvwxyz123456"  # a made-up key of a real key's shape
    events = await events_of(engine, flows.bug_with_secret, {"key": key})
    error = events["step.failed"]["error"]
    assert where(error)[-1] == (FLOWS, line_of('raise ValueError(f"the service refused'), "leak")
    assert key not in str(events)
    assert "sk-…3456" in error["exception"]


async def test_a_classified_failure_records_no_frames(engine: Engine) -> None:
    flow = Flow("slow")

    @flow.step()
    async def wait(ctx: Any) -> None:
        raise TimeoutError("the image did not come")

    error = (await events_of(engine, flow))["step.failed"]["error"]
    assert error["kind"] == "timeout"
    assert "frames" not in error


def test_format_error_prints_a_bug_as_python_would() -> None:
    try:
        flows.ratio(1, 0)
    except ZeroDivisionError as exc:
        python = traceback.format_exception(exc)
        error = error_of(exc)
    ours = format_error(error)
    # Python's own rendering (this test's frame is the user's code too), less the lines of
    # carets under the failing expression.
    lines = "".join(python).rstrip("\n").splitlines()
    assert ours.splitlines() == [line for line in lines if line.strip(" ~^")]
    assert ours.splitlines()[0] == "Traceback (most recent call last):"
    assert ours.splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert f'  File "{FLOWS}", line {BUG}, in ratio' in ours


def test_format_error_of_a_failure_without_frames_is_its_type_and_message() -> None:
    error = {"type": "GiveUp", "kind": "timeout", "message": "gave up after 3 attempts"}
    assert format_error(error) == "GiveUp: gave up after 3 attempts"
