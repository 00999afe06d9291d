"""A provider outage as the command line tells it: which provider served each item (in its
``item.succeeded`` event and ``regen show``) when a fallback serves, and what to do when
items gave up because the provider's breaker was open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from regen.cli import cli
from regen.cli._app import _load_commands
from regen.engine import Engine, Event, Flow, Run, RunStatus
from regen.providers import BreakerSettings, ProviderConfig, Registry, Secret
from regen.retry import Policy
from regen.sim import SimServer, run_simulator

KEY = "sk-test-regen-0123456789abcdef"
POLICY = Policy(attempts=3, timeout=5.0, wait=0.01, max_wait=0.05, deadline=3.0)

_load_commands()


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimServer, SimServer]]:
    with run_simulator() as primary, run_simulator() as backup:
        yield primary, backup


def _registry(primary: SimServer, backup: SimServer) -> Registry:
    return Registry(
        [
            ProviderConfig(
                name="primary",
                kind="openai",
                base_url=primary.openai_base_url,
                api_key=Secret(KEY),
                policy=POLICY,
                breaker=BreakerSettings(failures=2, open_s=60.0),
                fallback=("backup",),
            ),
            ProviderConfig(
                name="backup",
                kind="openai",
                base_url=backup.openai_base_url,
                api_key=Secret(KEY),
                policy=POLICY,
            ),
        ]
    )


def test_items_record_and_show_the_provider_that_served_them(
    sims: tuple[SimServer, SimServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, backup = sims
    primary.reset()
    backup.reset()
    primary.outage(60)
    flow = Flow("captions")
    registry = _registry(primary, backup)

    @flow.map(items=lambda ctx: [f"photo {i}" for i in range(6)], policy=Policy(attempts=1))
    async def caption(ctx, prompt):
        result = await registry.openai("primary").chat(prompt)
        return {"text": result.text}

    home = tmp_path / "home"
    engine = Engine(f"sqlite:///{home / 'regen.db'}", home=home)

    async def main() -> tuple[Run, list[Event]]:
        async with registry:
            run = await engine.run(flow)
        return run, await engine.read_events(run.id, 0, 1000)

    try:
        run, events = asyncio.run(main())
    finally:
        engine.close()
    primary.recover()
    assert run.status is RunStatus.SUCCEEDED
    served = [e.data.get("provider") for e in events if e.type == "item.succeeded"]
    assert served == ["backup"] * 6

    monkeypatch.setenv("REGEN_HOME", str(home))
    monkeypatch.delenv("REGEN_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(cli, ["show", run.id], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "provider" in shown.output
    assert shown.output.count("backup") == 6
    as_json = CliRunner().invoke(cli, ["show", run.id, "--json"], catch_exceptions=False)
    items = json.loads(as_json.stdout)["items"]["caption"]
    assert [i["provider"] for i in items] == ["backup"] * 6


def test_items_refused_by_an_open_breaker_say_the_provider_was_down(
    sims: tuple[SimServer, SimServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, _ = sims
    primary.reset()
    primary.outage(60)
    registry = Registry(
        [
            ProviderConfig(
                name="primary",
                kind="openai",
                base_url=primary.openai_base_url,
                api_key=Secret(KEY),
                policy=POLICY.replace(attempts=1),
                breaker=BreakerSettings(failures=1, open_s=60.0),
            )
        ]
    )
    flow = Flow("captions")

    @flow.map(items=lambda ctx: [f"photo {i}" for i in range(5)], concurrency=1)
    async def caption(ctx, prompt):
        result = await registry.openai("primary").chat(prompt)
        return {"text": result.text}

    home = tmp_path / "home"
    engine = Engine(f"sqlite:///{home / 'regen.db'}", home=home)

    async def main() -> Run:
        async with registry:
            return await engine.run(flow)

    try:
        run = asyncio.run(main())
    finally:
        engine.close()
    primary.recover()
    assert run.status is RunStatus.FAILED
    assert primary.stats()["routes"]["chat"]["requests"] == 1  # then the breaker refused

    monkeypatch.setenv("REGEN_HOME", str(home))
    monkeypatch.delenv("REGEN_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(cli, ["show", run.id], catch_exceptions=False)
    assert "circuit breaker open" in shown.output
    assert "the provider was down" in shown.output
