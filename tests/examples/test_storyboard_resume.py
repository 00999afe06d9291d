"""The storyboard stage's SSE streams resume: a client that drops after some events and
reconnects with ``Last-Event-ID`` gets the rest of the same run, nothing repeated or lost,
over FastAPI and Django alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.storyboard import StoryboardApp, Text2ImageStageProcessor, default_app
from examples.storyboard.fastapi_app import create_app
from examples.storyboard.testing import DEMO_SCRIPT, SIM_KEY_ENV, create_demo_project, use_simulator
from tests.examples.test_storyboard_sse import _django_asgi, close_default_apps
from tests.service.server import Served

import regen
from regen.sim import SimServer, run_simulator


@pytest.fixture(autouse=True)
def _no_sleeping() -> Iterator[None]:
    with regen.test_mode():
        yield


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-test-0001")
    with run_simulator(rules=list(DEMO_SCRIPT)) as server:
        yield server


def blocks(client: httpx.Client, url: str, *, count: int | None = None, **headers: str) -> list:
    """``(id, data)`` of each event of one connection (``count``: hang up after that many)."""
    got = []
    with client.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        ident = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                got.append((ident, line[6:]))
                ident = None
                if count is not None and len(got) == count:
                    break
    return got


def check_resumes(client: httpx.Client, app: StoryboardApp, project_id: str) -> None:
    url = f"/projects/{project_id}/images/stream"
    first = blocks(client, url, count=3)
    assert all(ident is not None for ident, _ in first)
    rest = blocks(client, url, **{"Last-Event-ID": first[-1][0]})
    assert app.join()
    (run,) = app.engine.sync.list_runs()  # the reconnect started nothing new
    whole = blocks(client, f"/runs/{run.id}/events")
    assert first + rest == whole
    seqs = [int(ident.rsplit(":", 1)[1]) for ident, _ in whole]
    assert seqs == sorted(set(seqs))
    assert all(ident.startswith(f"{run.id}:") for ident, _ in whole)
    tail = blocks(client, f"/runs/{run.id}/events", **{"Last-Event-ID": whole[4][0]})
    assert tail == whole[5:]
    assert blocks(client, f"/runs/{run.id}/events?after={seqs[4]}") == whole[5:]
    bad = client.get(f"/runs/{run.id}/events", headers={"Last-Event-ID": "nonsense"})
    assert bad.status_code == 400


def test_fastapi_streams_resume_after_the_last_event_id(sim: SimServer, tmp_path: Path) -> None:
    app = StoryboardApp(tmp_path)
    try:
        use_simulator(sim.openai_base_url, app=app)
        project, _ = create_demo_project(app)
        with (
            Served(create_app(Text2ImageStageProcessor(app)), lifespan="off") as served,
            httpx.Client(base_url=served.url) as client,
        ):
            check_resumes(client, app, project.id)
    finally:
        app.close()


def test_django_streams_resume_after_the_last_event_id(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYBOARD_HOME", str(tmp_path))
    try:
        app = default_app()
        use_simulator(sim.openai_base_url)
        project, _ = create_demo_project()
        with (
            Served(_django_asgi(), lifespan="off") as served,
            httpx.Client(base_url=served.url) as client,
        ):
            check_resumes(client, app, project.id)
    finally:
        close_default_apps()
