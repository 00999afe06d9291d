"""The README's commands: the demo on its own simulator, and on a configured gateway (here a
simulator that hangs on one prompt, so the per-image timeout, read from the environment,
is what ends those images); ``regen run`` on the demo's project and on one the ``project``
command made; no temporary directory left behind by ``demo`` or ``serve``."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from examples.storyboard.resources import SIM_PORT
from examples.storyboard.testing import DEMO_SCRIPT, DEMO_STORYBOARDS

from regen.sim import run_simulator

ROOT = Path(__file__).resolve().parents[2]


def run_demo(home: Path, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for name in ("STORYBOARD_IMAGE_BASE_URL", "STORYBOARD_HOME"):
        if name not in env:
            environ.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "examples.storyboard", "demo", "--json", "--home", str(home)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def test_the_demo_runs_on_its_own_simulator(tmp_path: Path) -> None:
    code, lines, stderr = run_demo(tmp_path)
    assert code == 0, stderr
    *events, last = lines
    result = last["result"]
    assert result["status"] == "partial"
    assert result["data"]["total_storyboards"] == 5
    assert result["data"]["success_count"] == 4
    assert len(result["failed_storyboard_ids"]) == 1
    assert events[0]["type"] == "stage_update"
    assert events[-1]["type"] == "done"
    assert (tmp_path / "regen.db").is_file()
    assert (tmp_path / "storyboard.db").is_file()


def test_the_demo_uses_the_configured_gateway_and_its_per_image_timeout(tmp_path: Path) -> None:
    lighthouse = DEMO_STORYBOARDS[3]["image_prompt"]
    rules = [*DEMO_SCRIPT, {"prompt": lighthouse, "then": "hang"}]
    with run_simulator(rules=rules) as gateway:
        code, lines, stderr = run_demo(
            tmp_path,
            STORYBOARD_IMAGE_BASE_URL=gateway.openai_base_url,
            STORYBOARD_IMAGE_API_KEY="sk-gateway-test-0004",
            STORYBOARD_IMAGE_TIMEOUT_S="0.5",
            STORYBOARD_IMAGE_RETRY_SLEEP_S="0.01",
        )
        stats = gateway.stats()
    assert code == 0, stderr
    *events, last = lines
    result = last["result"]
    assert result["data"]["success_count"] == 2  # #1 and #3
    assert result["data"]["failed_count"] == 3  # #2 refused; #4 and #5 hung
    hung = [e for e in events if e["type"] == "error" and "timeout" in e["error"]]
    assert len(hung) == 2
    assert all("共尝试 3 次" in e["error"] for e in hung)
    assert stats["prompts"][lighthouse]["routes"] == {"images": 3}
    assert stats["prompts"][lighthouse]["produced"] == 0
    assert "sk-gateway-test-0004" not in json.dumps(lines) + stderr


REGEN = Path(sys.executable).with_name("regen")
FLOW = "examples.storyboard.flow:flow"


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the app's, regen's or the simulator key's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORYBOARD_", "REGEN_")) and k != "PYTHONPATH"
    }
    return {**env, **extra}


def regen_run(home: Path, project_id: str) -> subprocess.CompletedProcess[str]:
    """The README's recipe, as written: from the repository root, no key in the environment."""
    return subprocess.run(
        [str(REGEN), "--home", str(home), "run", FLOW, "-p", f"project_id={project_id}"],
        cwd=ROOT,
        env=clean_environment(STORYBOARD_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def stage_result(home: Path) -> dict[str, Any]:
    """The last stage result the data directory recorded."""
    with sqlite3.connect(home / "storyboard.db") as db:
        (result,) = db.execute(
            "SELECT result FROM project_stages WHERE stage_type = 'image_generation'"
        ).fetchone()
    return dict(json.loads(result))


def test_regen_run_works_on_the_demos_project_after_the_demo_ended(tmp_path: Path) -> None:
    code, lines, stderr = run_demo(tmp_path)
    assert code == 0, stderr
    demo = lines[-1]["result"]
    assert demo["data"]["failed_count"] == 1  # the demo's content-policy refusal

    # The demo's simulator is gone; no REGEN_SIM_API_KEY is set.
    done = regen_run(tmp_path, demo["project_id"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    result = stage_result(tmp_path)
    assert (result["status"], result["success_count"], result["failed_count"]) == (
        "completed",
        5,
        0,
    )


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_project_command_makes_a_project_regen_run_completes(tmp_path: Path) -> None:
    if port_taken(SIM_PORT):
        pytest.skip(f"something listens on 127.0.0.1:{SIM_PORT}")
    made = subprocess.run(
        [sys.executable, "-m", "examples.storyboard", "project", "--home", str(tmp_path)],
        cwd=ROOT,
        env=clean_environment(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=45,
        check=True,
    )
    (project_id,) = made.stdout.split()
    done = regen_run(tmp_path, project_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stage_result(tmp_path)["success_count"] == 5


def test_the_demo_leaves_no_temporary_directory(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "examples.storyboard", "demo", "--json"],
        cwd=ROOT,
        env=clean_environment(PYTHONPATH=str(ROOT), TMPDIR=str(temp)),
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["result"]["data"]["success_count"] == 4
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize(
    ("stop", "code"),
    [(signal.SIGINT, 0), (signal.SIGTERM, 128 + signal.SIGTERM)],
    ids=["ctrl-c", "sigterm"],  # a terminal, a supervisor (systemd, docker stop)
)
def test_serve_leaves_no_temporary_directory(
    tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "examples.storyboard", "serve", "--port", str(port)],
            cwd=ROOT,
            env=clean_environment(PYTHONPATH=str(ROOT), TMPDIR=str(temp)),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_taken(port):
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "serve did not start listening"
                time.sleep(0.05)
            assert [p.name[:11] for p in temp.iterdir()] == ["storyboard-"]  # its data
            server.send_signal(stop)
            assert server.wait(timeout=30) == code, log.read_text()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert list(temp.iterdir()) == []
