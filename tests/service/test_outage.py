"""A service cut off from PostgreSQL for longer than a call waits: an event stream that
was following a run keeps its connection and, once the database is back, carries on to the
run's end (the run goes on in another process meanwhile)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from tests.engine.test_outage import RECONNECT_S, _through
from tests.service.server import PYTHONPATH, ROOT, Served, sse_events
from tests.store.conftest import postgres_database
from tests.store.cutting_proxy import CuttingProxy

from regen.engine import Engine
from regen.service import create_app

pytest.importorskip("psycopg")


def test_an_event_stream_outlives_a_database_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGEN_POSTGRES_RECONNECT_S", str(RECONNECT_S))
    gate = tmp_path / "gate"
    params = {"words": 4, "gate_at": 2, "gate": str(gate)}
    with postgres_database() as url, CuttingProxy("127.0.0.1", 5432) as proxy:
        with Engine(url, home=tmp_path) as runner:
            run_id = runner.sync.start("tests.service.flows:story", params).run.id
        # The run goes on in a worker of its own, which the outage does not reach.
        cli = [sys.executable, "-m", "regen.cli", "--database-url", url, "--home", str(tmp_path)]
        worker = subprocess.Popen(
            [*cli, "worker", "--max-runs", "1", "--poll", "0.05"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )
        try:
            serving = Engine(_through(url, proxy.port), home=tmp_path)
            app = create_app(serving, keepalive=0.5, poll=0.05)
            try:
                with Served(app) as server, httpx.Client(base_url=server.url) as client:
                    seen: list[dict[str, str]] = []
                    path = f"/api/runs/{run_id}/events"
                    with client.stream("GET", path, timeout=30) as response:
                        for event in sse_events(response):
                            seen.append(event)
                            if (
                                event.get("event") == "chunk"
                                and not proxy.down
                                and not gate.exists()
                            ):
                                proxy.go_down()
                                threading.Timer(RECONNECT_S * 2.5, proxy.come_back).start()
                                threading.Timer(RECONNECT_S * 1.5, gate.touch).start()
                            if event.get("event") == "end":
                                break
            finally:
                serving.close()
            assert worker.wait(30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    types = [e["event"] for e in seen if "event" in e]
    assert types[-2:] == ["run.succeeded", "end"]
    assert types.count("chunk") == 4
    ids = [int(e["id"]) for e in seen if "id" in e]
    assert ids == sorted(set(ids))  # nothing repeated
