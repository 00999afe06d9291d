"""The flow's own resources: the pipeline runs without the app, by ``regen run`` or
``regen worker``, choosing its provider from the environment as the app does.

A run needs nothing of the process that started it: the checks start it in one place
(the app, here or in a process that is killed) and finish it in another, and read what
the simulator the environment points at saw — no second analysis once
``openai_analyze`` is checkpointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from examples.paper_pipeline import STEPS, Config, PaperPipeline, Resources, flow, papers_for

import regen
from regen import ConfigError
from regen.engine import Engine, Event, RunStatus, StepStatus
from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]
REGEN = str(Path(sys.executable).parent / "regen")
FLOW = "examples.paper_pipeline.pipeline:flow"
DAY = "2026-12-01"
TASK = "task_publish_20261201"
KEY = "sk-test-paper-resources-0123"
_OWN_VARIABLES = ("AUTO_RETRY_", "REGEN_", "PAPER_PIPELINE_", "CHECKPOINT_RETENTION_HOURS")
_PROVIDER_VARIABLES = ("OPENAI", "DEEPSEEK", "DASHSCOPE", "MOONSHOT")


def environment(home: Path, sim: SimServer | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without Python paths, provider keys or the app's settings;
    the data directory ``home``; with ``sim``, the OpenAI variables pointing at it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(_OWN_VARIABLES + _PROVIDER_VARIABLES)
    }
    # The app's data directory; `regen --home` sets the same for the flow it runs.
    env["REGEN_HOME"] = str(home)
    if sim is not None:
        env.update({"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": sim.openai_base_url})
    env.update(extra)
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This process's environment as :func:`environment` makes it."""
    for name in list(os.environ):
        if name.startswith(_OWN_VARIABLES + _PROVIDER_VARIABLES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REGEN_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with run_simulator(slow_seconds=20.0) as server:
        yield server


def flows_own_resources() -> Any:
    """What the engine opens for a run of the day that nobody passes resources to."""
    assert flow.resources is not None
    return flow.resources(flow.parse_params({"day": DAY}))


def regen_cli(home: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``regen --home HOME ARGS…`` from the repository root."""
    return subprocess.run(
        [REGEN, "--home", str(home), *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )


def requests(sim: SimServer, route: str) -> int:
    return int(sim.stats()["routes"].get(route, {}).get("requests", 0))


def analyses(sim: SimServer) -> list[int]:
    """Per paper of the day, the analyses the chat model generated (and would bill)."""
    prompts = sim.stats()["prompts"]
    return [
        sum(e["produced"] for p, e in prompts.items() if p.startswith(f"Paper {paper['id']}:"))
        for paper in papers_for(dt.date.fromisoformat(DAY), 3)
    ]


def outbox(home: Path) -> list[dict[str, Any]]:
    path = home / "paper_pipeline" / "outbox.json"
    return json.loads(path.read_text()) if path.exists() else []


async def started_steps(engine: Engine, run_id: str) -> Counter[str]:
    return Counter(
        e.data["step"]
        for e in await engine.read_events(run_id, limit=10_000)
        if e.type == "step.started"
    )


def test_regen_run_from_the_repo_root_runs_the_five_steps_on_its_own_simulator(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path)  # no keys: the flow starts a simulator of its own

    ran = regen_cli(
        tmp_path, env, "run", "examples.paper_pipeline.pipeline:flow", "-p", f"day={DAY}"
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    (listed,) = json.loads(regen_cli(tmp_path, env, "runs", "--json").stdout)
    shown = regen_cli(tmp_path, env, "show", listed["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["status"] == "succeeded"
    assert [(s["name"], s["status"]) for s in detail["steps"]] == [
        (name, "succeeded") for name in STEPS
    ]
    assert (detail["max_retries"], detail["retry_delay"]) == (3, 30.0)  # the seed's 3 × 30 s
    (post,) = outbox(tmp_path)  # published once, in the app's default outbox
    assert post["idempotency_key"] == f"{listed['id']}/publish_mcp"
    assert len(post["post"]["notes"]) == 3
    with Engine(home=tmp_path) as engine:  # real PNGs from the simulator, as artifacts
        covers = [engine.artifacts.read(note["image"]) for note in post["post"]["notes"]]
    assert all(cover.startswith(b"\x89PNG") for cover in covers)


async def test_a_run_the_app_left_waiting_for_its_automatic_retry_is_finished_by_a_worker(
    tmp_path: Path, sim: SimServer
) -> None:
    env = environment(tmp_path, sim)
    # The app's execution fails at render_images (an injected failure, in the app only).
    config = Config(
        home=tmp_path, auto_retry_delay_seconds=2.0, fail_step=("render_images", "before")
    )
    waiting = asyncio.Event()

    def progress(event: Event) -> None:
        if event.type == "run.failed" and event.data.get("retry_at"):
            waiting.set()

    async with PaperPipeline.open(config, environ=env) as app:
        running = asyncio.create_task(app.run(DAY, progress=progress))
        await asyncio.wait_for(waiting.wait(), 20)
        running.cancel()  # the app goes away while it waits for its automatic retry
        with contextlib.suppress(asyncio.CancelledError):
            await running
        left = await app.record(TASK)
    assert (left["status"], left["retry_count"]) == ("failed", 0)
    assert left["next_auto_retry_at"] is not None
    assert left["last_successful_step"] == "openai_analyze"
    assert (requests(sim, "chat"), requests(sim, "images")) == (3, 0)

    worked = regen_cli(tmp_path, env, "worker", "--max-runs", "1", "--poll", "0.2")

    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert "worker stopped after 1 runs" in worked.stdout
    with PaperPipeline(Config(home=tmp_path)) as app:
        record = await app.record(TASK)
        steps = await started_steps(app.engine, record["run_id"])
    assert (record["status"], record["retry_count"]) == ("succeeded", 1)
    assert requests(sim, "chat") == 3  # the worker kept the analyses: no second call
    assert analyses(sim) == [1, 1, 1]
    assert requests(sim, "images") == 3  # the worker rendered, on the same simulator
    assert (steps["fetch_papers"], steps["openai_analyze"], steps["render_images"]) == (1, 1, 2)
    for name in ("fetch_papers", "openai_analyze"):
        assert (
            record["checkpoint"]["step_outputs"][name]["timestamp"]
            == left["checkpoint"]["step_outputs"][name]["timestamp"]
        )
    assert len(outbox(tmp_path)) == 1


def test_a_killed_app_is_taken_over_by_regen_worker_from_its_checkpoints(
    tmp_path: Path, sim: SimServer
) -> None:
    # The first paper's first image request hangs (20 s): the app is killed meanwhile.
    first = papers_for(dt.date.fromisoformat(DAY), 3)[0]["id"]
    sim.script({"route": "images", "prompt_contains": first, "steps": ["slow"]})
    env = environment(tmp_path, sim, REGEN_LEASE_TTL_S="1")  # a dead process's lease: 1 s
    app = subprocess.Popen(
        [sys.executable, "-m", "examples.paper_pipeline", "run", "--day", DAY],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while requests(sim, "images") == 0 and app.poll() is None:
            assert time.monotonic() < deadline, "render_images never started"
            time.sleep(0.05)
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    assert requests(sim, "chat") == 3
    with PaperPipeline(Config(home=tmp_path)) as peek:
        expires = asyncio.run(peek.find(DAY)).lease_expires_at or 0.0
    while time.time() <= expires:  # the dead process's lease runs out
        time.sleep(0.05)
    shown = subprocess.run(
        [sys.executable, "-m", "examples.paper_pipeline", "show", DAY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"{TASK}  running" in shown
    assert "its process stopped (killed, or its machine lost)" in shown

    worked = regen_cli(tmp_path, env, "worker", "--max-runs", "1", "--poll", "0.2")

    assert worked.returncode == 0, worked.stdout + worked.stderr
    with PaperPipeline(Config(home=tmp_path)) as done:
        record = asyncio.run(done.record(TASK))
        run = done.engine.sync.get_run(record["run_id"])
        steps = asyncio.run(started_steps(done.engine, run.id))
    assert run.status is RunStatus.SUCCEEDED
    assert run.executions == 2  # the killed one, and the worker's take-over
    assert requests(sim, "chat") == 3  # openai_analyze's checkpoint was kept
    assert analyses(sim) == [1, 1, 1]
    assert (steps["fetch_papers"], steps["openai_analyze"], steps["render_images"]) == (1, 1, 2)
    (post,) = outbox(tmp_path)
    assert post["post_id"] == record["checkpoint"]["step_outputs"]["publish_mcp"]["post_id"]


async def test_without_a_key_the_flows_resources_are_a_simulator_stopped_afterwards(
    clean_env: Path,
) -> None:
    with regen.test_mode():
        async with flows_own_resources() as res:
            assert isinstance(res, Resources)
            provider = res.chat_provider()
            assert provider.name == "sim"
            reply = await provider.chat([{"role": "user", "content": "hello"}])
            assert reply.text
            assert "open" in repr(provider.transport)
            assert res.outbox.path == clean_env / "paper_pipeline" / "outbox.json"
            address = urlsplit(provider.base_url)
    assert "idle" in repr(provider.transport)  # the client's connections were closed
    with pytest.raises(ConnectionRefusedError):  # and the simulator stopped
        socket.create_connection((address.hostname, address.port), timeout=5).close()


async def test_with_openai_variables_the_flows_resources_use_that_provider(
    clean_env: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment(clean_env, sim).items():
        monkeypatch.setenv(name, value)
    async with flows_own_resources() as res:
        provider = res.chat_provider()
        assert (provider.name, provider.base_url) == ("openai", sim.openai_base_url)
        assert KEY not in repr(res)
        await provider.chat([{"role": "user", "content": "hello"}])
    assert requests(sim, "chat") == 1


async def test_a_base_url_without_a_key_fails_the_run_before_any_step_until_the_key_is_set(
    clean_env: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    with Engine(home=clean_env) as engine:
        run = await engine.run(flow, {"day": DAY}, max_retries=0)
        assert run.status is RunStatus.FAILED
        detail = await engine.detail(run.id)
        error = detail.run.error
        assert error is not None
        assert error["where"] == "resources"
        assert "'paper_pipeline'" in error["message"]
        assert "set OPENAI_API_KEY" in error["message"]
        assert detail.resumable
        assert {s.status for s in detail.steps} == {StepStatus.PENDING}
        assert requests(sim, "chat") == 0

        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        await engine.retry(run.id)
        run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert requests(sim, "chat") == 3
    assert len(outbox(clean_env)) == 1


async def test_a_bad_setting_in_the_environment_is_named_when_the_resources_open(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPER_PIPELINE_FAIL_STEP", "render")
    with pytest.raises(ConfigError, match="PAPER_PIPELINE_FAIL_STEP='render'"):
        async with flows_own_resources():
            pass
