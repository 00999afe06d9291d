"""The stage flow executed from the environment alone: ``regen run`` and ``regen worker``
from the repository root (no PYTHONPATH), and another engine, with the flow's own
resources — the records of the data directory, the provider it configures, a simulator
started in-process when that provider is the simulator's default address and none runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.storyboard import GeneratedImage, Storyboard, StoryboardApp
from examples.storyboard.resources import SIM_PORT
from examples.storyboard.testing import SIM_KEY_ENV, use_simulator

import regen
from regen.engine import Engine, RunStatus
from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]
REGEN = Path(sys.executable).with_name("regen")
FLOW = "examples.storyboard.flow:flow"
PROMPTS = ("晨雾中的石桥，水彩", "夜色里的灯笼街，胶片感", "晨雾中的石桥，水彩")
SEED_TYPES = {"stage_update", "info", "progress", "image_generated", "warning", "error", "done"}


@pytest.fixture(autouse=True)
def _no_sleeping() -> Iterator[None]:
    with regen.test_mode():
        yield


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with run_simulator() as server:
        yield server


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH, regen's or the app's settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH"
        and not name.startswith(("REGEN_", "STORYBOARD_"))
        and name != SIM_KEY_ENV
    }
    return {**env, **extra}


def regen_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REGEN), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def project_on(app: StoryboardApp, *prompts: str) -> str:
    """A project whose storyboard stage is completed, through the app's own records API."""
    project = app.records.create_project("石桥短片")
    for prompt in prompts:
        app.records.add_storyboard(project.id, prompt)
    return project.id


def by_storyboard(
    app: StoryboardApp, project_id: str, run_id: str
) -> list[tuple[Storyboard, GeneratedImage]]:
    images = {image.storyboard_id: image for image in app.records.run_images(run_id)}
    return [(sb, images[sb.id]) for sb in app.records.storyboards(project_id)]


def seed_events(app: StoryboardApp, run_id: str) -> list[dict[str, Any]]:
    """The run's events in the seed's vocabulary, as the SSE views send them."""

    async def read() -> list[dict[str, Any]]:
        return [event async for event in app.events(run_id, follow=False)]

    return asyncio.run(read())


def port_taken(port: int) -> bool:
    with contextlib.closing(socket.socket()) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_regen_run_executes_the_stage_from_the_environment(tmp_path: Path, sim: SimServer) -> None:
    home = tmp_path / "home"
    app = StoryboardApp(home)
    try:
        use_simulator(sim.openai_base_url, app=app)
        project_id = project_on(app, *PROMPTS)
        done = regen_cli(
            "--home",
            str(home),
            "run",
            FLOW,
            "-p",
            f"project_id={project_id}",
            env=environment(STORYBOARD_HOME=str(home), **{SIM_KEY_ENV: "sk-sim-cli-0001"}),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "✓ succeeded" in done.stdout
        (run,) = app.engine.sync.list_runs()
        images = app.records.run_images(run.id)
        assert [image.status for image in images] == ["completed"] * 3
        for image in images:
            assert image.model_provider == "sim"
            assert image.file_path is not None
            assert Path(image.file_path).stat().st_size == image.file_size
        # One generation per distinct prompt: the two identical storyboards share one.
        assert sim.stats()["routes"]["images"]["requests"] == 2
        events = seed_events(app, run.id)
        assert events[0]["type"] == "stage_update"
        assert events[0]["stage"]["status"] == "processing"
        assert [e["type"] for e in events].count("image_generated") == 3
        last = events[-1]
        assert last["type"] == "done"
        assert last["data"]["success_count"] == 3
        assert last["stage"]["status"] == "completed"
        assert asyncio.run(app.result(run.id)).success
    finally:
        app.close()


def test_regen_run_starts_a_simulator_when_the_provider_is_its_idle_default_address(
    tmp_path: Path,
) -> None:
    if port_taken(SIM_PORT):
        pytest.skip(f"something listens on 127.0.0.1:{SIM_PORT}")
    home = tmp_path / "home"
    app = StoryboardApp(home)
    try:
        use_simulator(f"http://127.0.0.1:{SIM_PORT}/v1", app=app)
        project_id = project_on(app, PROMPTS[0])
        # No key in the environment either: the simulator started here accepts its own.
        done = regen_cli(
            "--home",
            str(home),
            "run",
            FLOW,
            "-p",
            f"project_id={project_id}",
            env=environment(STORYBOARD_HOME=str(home)),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        (run,) = app.engine.sync.list_runs()
        (image,) = app.records.run_images(run.id)
        assert image.status == "completed"
        assert image.image_url == f"/images/{image.id}/file"
        assert image.file_path is not None
        assert Path(image.file_path).read_bytes().startswith(b"\x89PNG")
        assert not port_taken(SIM_PORT)  # stopped with the execution
    finally:
        app.close()


def test_regen_run_reports_the_seeds_validation_error_and_fails(
    tmp_path: Path, sim: SimServer
) -> None:
    home = tmp_path / "home"
    app = StoryboardApp(home)
    try:
        use_simulator(sim.openai_base_url, app=app)
        done = regen_cli(
            "--home",
            str(home),
            "run",
            FLOW,
            "-p",
            "project_id=no-such-project",
            env=environment(STORYBOARD_HOME=str(home), **{SIM_KEY_ENV: "sk-sim-cli-0002"}),
        )
        assert done.returncode == 1
        (run,) = app.engine.sync.list_runs()
        assert run.status is RunStatus.FAILED
        assert seed_events(app, run.id) == [
            {"type": "error", "error": "项目不存在：no-such-project"}
        ]
        assert sim.stats()["routes"].get("images", {}).get("requests", 0) == 0
    finally:
        app.close()


def test_regen_worker_executes_a_run_the_app_queued(tmp_path: Path, sim: SimServer) -> None:
    refused = PROMPTS[1]
    sim.script({"prompt": refused, "steps": ["content_policy"]})
    app = StoryboardApp(tmp_path / "home")
    try:
        use_simulator(sim.openai_base_url, app=app)
        project_id = project_on(app, *PROMPTS)
        run_id = asyncio.run(app.start(project_id))
        # The worker knows only its data directory: the run's params say where the records are.
        done = regen_cli(
            "--home",
            str(app.home),
            "worker",
            "--max-runs",
            "1",
            "--poll",
            "0.05",
            env=environment(**{SIM_KEY_ENV: "sk-sim-worker-0003"}),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "worker stopped after 1 runs" in done.stdout
        assert app.engine.sync.get_run(run_id).status is RunStatus.PARTIAL
        result = asyncio.run(app.result(run_id))
        assert result.success
        assert result.status == "partial"
        assert (result.data["success_count"], result.data["failed_count"]) == (2, 1)
        statuses = {
            sb.image_prompt: image.status for sb, image in by_storyboard(app, project_id, run_id)
        }
        assert statuses == {PROMPTS[0]: "completed", refused: "failed"}
        events = seed_events(app, run_id)
        assert {e["type"] for e in events} <= SEED_TYPES
        (error,) = [e for e in events if e["type"] == "error"]
        assert set(error) == {"type", "error", "storyboard_id"}
        assert "content_policy" in error["error"]
        assert events[-1]["type"] == "done"
        assert events[-1]["stage"]["status"] == "partial"
    finally:
        app.close()


async def test_another_engine_retries_what_failed_with_the_flows_own_resources(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-engine-0004")
    refused = PROMPTS[1]
    sim.script({"prompt": refused, "steps": ["content_policy"]})
    app = StoryboardApp(tmp_path / "home")
    try:
        use_simulator(sim.openai_base_url, app=app)
        project_id = project_on(app, *PROMPTS)
        run_id = await app.start(project_id)
        await app.execute(run_id)
        assert (await app.result(run_id)).status == "partial"
        await app.retry(run_id)
        other = Engine(home=app.home)
        try:
            run = await other.execute(run_id)  # no resources given: the flow opens its own
        finally:
            other.close()
        assert run.status is RunStatus.SUCCEEDED
        result = await app.result(run_id)
        assert result.status == "completed"
        assert result.data["success_count"] == 3
        prompts = sim.stats()["prompts"]
        assert (prompts[refused]["routes"]["images"], prompts[refused]["produced"]) == (2, 1)
        assert prompts[PROMPTS[0]]["routes"]["images"] == 1  # kept, not generated again
    finally:
        app.close()
