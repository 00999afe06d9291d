"""A key set in the environment never reaches the event log, a run's error or the database
file, whatever a step logs, emits or raises."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from regen.engine import Engine, Flow, RunStatus, StepStatus
from regen.retry import FakeClock


def _database_bytes(db: Path) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


async def test_a_key_from_the_environment_is_masked_in_events_errors_and_the_file(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = str(uuid.uuid4())  # a gateway key of no known shape, made up at run time
    monkeypatch.setenv("MY_GATEWAY_API_KEY", key)
    flow = Flow("gateway")

    @flow.step()
    async def call_gateway(ctx):
        ctx.log(f"calling the gateway with key {key}")
        ctx.emit("debug", {"k": key, key: "as a name too"})
        ctx.progress(1, 2, message=f"retrying with {key}")
        raise RuntimeError(f"gateway refused {key}: https://user:{key}@proxy.example/?key={key}")

    db = tmp_path / "regen.db"
    with Engine(f"sqlite:///{db}", home=tmp_path) as engine:
        run = await engine.run(flow)
        events = await engine.read_events(run.id)
        detail = await engine.detail(run.id)
        on_disk_while_open = _database_bytes(db)
    on_disk = _database_bytes(db)

    assert run.status is RunStatus.FAILED
    assert detail.steps[0].status is StepStatus.FAILED
    shown = json.dumps([e.to_dict() for e in events]) + json.dumps(run.error)
    shown += json.dumps(detail.steps[0].error)
    assert key not in shown
    assert key.encode() not in on_disk_while_open
    assert key.encode() not in on_disk
    # What was masked is still there to read, with the key's last four characters.
    masked = f"…{key[-4:]}"
    by_type = {e.type: e.data for e in events}
    assert by_type["log"]["message"] == f"calling the gateway with key {masked}"
    assert by_type["debug"] == {"step": "call_gateway", "k": masked, masked: "as a name too"}
    assert run.error is not None
    assert run.error["message"].startswith(f"gateway refused {masked}: https://user:{masked}@")
