"""A flow's resources: what its steps share, opened by whichever process executes the run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from regen.engine import Engine, Flow, FlowError, RunStatus, Settings, StepStatus


class Client:
    """Stands for a provider client: it must be open while the steps use it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = True
        self.calls = 0

    def ask(self) -> str:
        assert self.open, "a step used a closed client"
        self.calls += 1
        return f"{self.name}-{self.calls}"


def client_flow(log: list[str], *, fail_step: dict[str, int] | None = None) -> Flow:
    """Two steps sharing one client, opened from the run's params (an async context)."""
    fail_step = fail_step if fail_step is not None else {}

    @contextlib.asynccontextmanager
    async def clients(params: Mapping[str, Any]) -> AsyncIterator[Client]:
        client = Client(params["provider"])
        log.append(f"open {client.name}")
        try:
            yield client
        finally:
            client.open = False
            log.append(f"close {client.name}")

    flow = Flow("with-client", params={"provider": str}, resources=clients)

    @flow.step()
    async def first(ctx: Any) -> str:
        return str(ctx.resources.ask())

    @flow.step()
    def second(ctx: Any) -> str:  # a sync step, in a worker thread: the same client
        if fail_step.get("second", 0) > 0:
            fail_step["second"] -= 1
            raise RuntimeError("second broke")
        return str(ctx.resources.ask())

    return flow


async def test_steps_share_resources_opened_for_the_execution_and_closed_after(
    engine: Engine,
) -> None:
    log: list[str] = []
    run = await engine.run(client_flow(log), {"provider": "sim"})
    assert run.status is RunStatus.SUCCEEDED
    assert [s.output for s in (await engine.detail(run.id)).steps] == ["sim-1", "sim-2"]
    assert log == ["open sim", "close sim"]


async def test_resources_are_closed_when_a_step_fails_and_opened_again_on_retry(
    engine: Engine,
) -> None:
    log: list[str] = []
    flow = client_flow(log, fail_step={"second": 1})
    run = await engine.run(flow, {"provider": "sim"})
    assert run.status is RunStatus.FAILED
    assert log == ["open sim", "close sim"]
    await engine.retry(run.id)
    run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert log == ["open sim", "close sim", "open sim", "close sim"]
    # The first step's checkpoint was kept: the new client answered only the second step.
    assert [s.output for s in (await engine.detail(run.id)).steps] == ["sim-1", "sim-1"]


async def test_another_engine_executes_a_queued_run_with_the_flows_own_resources(
    tmp_path: Path, database: str, engine: Engine
) -> None:
    """What ``regen worker`` and a take-over do: nothing but the run and the flow needed."""
    log: list[str] = []
    flow = client_flow(log)
    started = await engine.start(flow, {"provider": "queued"})
    other = Engine(database, home=tmp_path, settings=Settings(lease_ttl=30.0))
    try:
        other.registry.add(flow)
        run = await other.execute(started.run.id)
    finally:
        other.close()
    assert run.status is RunStatus.SUCCEEDED
    assert log == ["open queued", "close queued"]


async def test_a_caller_can_pass_its_own_resources_instead(engine: Engine) -> None:
    log: list[str] = []
    mine = Client("mine")
    run = await engine.run(client_flow(log), {"provider": "sim"}, resources=mine)
    assert run.status is RunStatus.SUCCEEDED
    assert log == []  # the flow's own were never opened
    assert mine.calls == 2
    assert mine.open  # and the caller's are the caller's to close


def test_sync_context_managers_and_plain_values_work_as_resources(engine: Engine) -> None:
    closed: list[str] = []

    @contextlib.contextmanager
    def folder(params: Mapping[str, Any]) -> Iterator[str]:
        yield f"/data/{params['day']}"
        closed.append("folder")

    with_cm = Flow("sync-cm", params={"day": str}, resources=folder)
    with_value = Flow("plain-value", params={"day": str}, resources=lambda p: {"day": p["day"]})

    @with_cm.step()
    def where(ctx: Any) -> str:
        return str(ctx.resources)

    @with_value.step()
    def which(ctx: Any) -> str:
        return str(ctx.resources["day"])

    assert (
        engine.sync.detail(engine.sync.run(with_cm, {"day": "d1"}).id).steps[0].output == "/data/d1"
    )
    assert closed == ["folder"]
    assert engine.sync.detail(engine.sync.run(with_value, {"day": "d2"}).id).steps[0].output == "d2"


async def test_resources_that_cannot_open_fail_the_run_resumably_with_the_reason(
    engine: Engine,
) -> None:
    missing = {"key": True}
    ran: list[str] = []

    def clients(params: Mapping[str, Any]) -> str:
        if missing["key"]:
            raise LookupError("DASHSCOPE_API_KEY is not set")
        return "client"

    flow = Flow("needs-key", resources=clients)

    @flow.step()
    def only(ctx: Any) -> str:
        ran.append(ctx.resources)
        return "done"

    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    assert ran == []
    detail = await engine.detail(run.id)
    assert detail.resumable
    error = detail.run.error
    assert error is not None
    assert "needs-key" in error["message"]
    assert "DASHSCOPE_API_KEY is not set" in error["message"]
    assert error["where"] == "resources"
    assert [s.status for s in (await engine.detail(run.id)).steps] == [StepStatus.PENDING]

    missing["key"] = False
    await engine.retry(run.id)
    run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert ran == ["client"]


async def test_a_failure_to_close_resources_is_logged_and_keeps_the_runs_outcome(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    @contextlib.asynccontextmanager
    async def leaky(params: Mapping[str, Any]) -> AsyncIterator[int]:
        yield 1
        raise OSError("socket already gone")

    flow = Flow("leaky", resources=leaky)

    @flow.step()
    async def only(ctx: Any) -> int:
        return int(ctx.resources)

    with caplog.at_level(logging.WARNING, logger="regen.engine"):
        run = await engine.run(flow)
    assert run.status is RunStatus.SUCCEEDED
    assert any("closing the resources" in r.getMessage() for r in caplog.records)


async def test_a_step_asking_for_undeclared_resources_fails_with_what_to_do(
    engine: Engine,
) -> None:
    flow = Flow("no-resources")

    @flow.step()
    async def only(ctx: Any) -> Any:
        return ctx.resources

    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    error = (await engine.detail(run.id)).run.error
    assert error is not None
    assert "declares no resources" in error["message"]
    assert "resources=" in error["message"]


@pytest.mark.parametrize(
    ("resources", "message"),
    [("clients", "must be a function"), (lambda: 1, r"1 positional argument \(params\)")],
)
def test_resources_that_are_not_a_function_of_the_params_are_refused(
    resources: Any, message: str
) -> None:
    with pytest.raises(FlowError, match=message):
        Flow("bad", resources=resources)
