"""The command line never prints a key regen knows, even one kept in a run's params."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from regen.cli import cli
from regen.cli._app import _load_commands
from regen.cli._common import console
from regen.engine import Engine, Flow, Param

_load_commands()

flow = Flow("gateway-cli", params={"note": Param(str)})


@flow.step()
async def call_gateway(ctx):
    raise RuntimeError(f"refused: {ctx.params['note']}")


def test_show_events_and_runs_mask_a_key_kept_in_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = str(uuid.uuid4())  # made up at run time; no known shape
    monkeypatch.setenv("MY_GATEWAY_API_KEY", key)
    monkeypatch.setenv("REGEN_HOME", str(tmp_path))
    monkeypatch.delenv("REGEN_DATABASE_URL", raising=False)
    with Engine(home=tmp_path) as engine:
        run = asyncio.run(engine.run(flow, {"note": f"the key is {key}"}))
    for args in (["show", run.id, "--json"], ["events", run.id, "--json"], ["runs", "--json"]):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert key not in result.output
        assert f"…{key[-4:]}" in result.output
        json.loads(result.stdout)  # still one JSON document


def test_the_console_masks_what_it_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    key = str(uuid.uuid4())
    monkeypatch.setenv("MY_GATEWAY_API_KEY", key)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    console().print(f"[red]error[/red]: refused {key}")
    assert out.getvalue() == f"error: refused …{key[-4:]}\n"
