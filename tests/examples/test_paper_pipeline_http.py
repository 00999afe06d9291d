"""Seed 003's REST routes on the paper pipeline, over real HTTP on loopback, with the
simulator as the provider: retry from the failed step, retry from a named step (which
says it publishes again), the checkpoint, and the errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.paper_pipeline import Config, PaperPipeline
from examples.paper_pipeline.fastapi_app import create_app
from tests.service.server import Served

import regen
from regen.engine import RunStatus
from regen.providers import OpenAIProvider
from regen.sim import SimServer, run_simulator

DAY = "2025-12-29"
TASK = "task_publish_20251229"
CHAT = regen.Policy(attempts=2, timeout=10.0, wait=0.01)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with run_simulator() as server:
        yield server


def wait_status(client: httpx.Client, wanted: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        record = client.get(f"/api/tasks/{TASK}/checkpoint").json()
        if record["status"] == wanted:
            return record
        assert time.monotonic() < deadline, record["status"]
        time.sleep(0.02)


async def fail_at_render_images(home: Path, sim: SimServer) -> None:
    async with OpenAIProvider(sim.openai_base_url, "sk-test-paper", policy=CHAT) as provider:
        failing = Config(home=home, auto_retry_enabled=False, fail_step=("render_images", "before"))
        with PaperPipeline(failing, provider=provider) as first:
            assert (await first.run(DAY)).status is RunStatus.FAILED


def test_the_seed_routes_retry_and_show_the_checkpoint(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(fail_at_render_images(tmp_path, sim))
    config = Config(home=tmp_path, auto_retry_enabled=False)
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-paper-http")
    with Served(create_app(config=config)) as served, httpx.Client(base_url=served.url) as c:
        record = c.get(f"/api/tasks/{TASK}/checkpoint").json()
        assert record["status"] == "failed"
        assert record["resumable"] is True
        assert record["last_successful_step"] == "openai_analyze"
        assert record["failed_step"] == "render_images"
        assert len(record["checkpoint"]["papers_data"]) == 3
        analyzed = record["checkpoint"]["analyzed_results"]

        answer = c.post(f"/api/tasks/{TASK}/retry")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["task"]["status"] == "queued"
        assert body["reruns"] == ["render_images", "build_payload", "publish_mcp"]
        assert body["side_effects"] == []
        done = wait_status(c, "succeeded")
        assert done["checkpoint"]["analyzed_results"] == analyzed  # kept, not redone
        assert done["manual_retry_count"] == 1

        again = c.post(f"/api/tasks/{TASK}/retry/build_payload").json()
        assert again["reruns"] == ["build_payload", "publish_mcp"]
        assert again["side_effects"] == ["publish_mcp"]
        assert "publish_mcp" in again["warning"]
        wait_status(c, "succeeded")

        assert c.post(f"/api/tasks/{TASK}/retry/paint").status_code == 422
        assert c.post("/api/tasks/task_publish_20200101/retry").status_code == 404
        assert c.get("/api/tasks/task_publish_20200101/checkpoint").status_code == 404
        refused = c.post(f"/api/tasks/{TASK}/retry")
        assert refused.status_code == 409  # it succeeded: nothing failed to retry from


def test_a_retry_executing_when_the_server_stops_is_left_failed_and_resumable(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(fail_at_render_images(tmp_path, sim))
    # The retried step's first image hangs (20 s): the server stops meanwhile.
    sim.script({"route": "images", "steps": ["slow"]}, replace=True)
    config = Config(home=tmp_path, auto_retry_enabled=False)
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-paper-http")

    def images() -> int:
        return int(sim.stats()["routes"].get("images", {}).get("requests", 0))

    before = images()
    with Served(create_app(config=config)) as served, httpx.Client(base_url=served.url) as c:
        assert c.post(f"/api/tasks/{TASK}/retry").status_code == 200
        deadline = time.monotonic() + 30
        while images() == before:
            assert time.monotonic() < deadline, "render_images never called the provider"
            time.sleep(0.02)

    with PaperPipeline(config) as after:
        record = asyncio.run(after.record(TASK))
    sim.script(replace=True)
    assert record["status"] == "failed"
    assert record["failed_step"] == "render_images"
    assert record["resumable"] is True
    steps = {s["name"]: s["status"] for s in record["steps"]}
    assert steps["render_images"] == "failed"
