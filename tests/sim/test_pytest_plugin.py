"""The pytest fixtures users enable with ``pytest_plugins = ["regen.sim.pytest_plugin"]``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CONFTEST = """
pytest_plugins = ["regen.sim.pytest_plugin"]

import pytest

@pytest.fixture(scope="session")
def regen_sim_options():
    return {"task_seconds": 0.05, "seed": 3}
"""

TESTS = """
import json
import urllib.error
import urllib.request


def chat(sim, prompt):
    request = urllib.request.Request(
        f"{sim.openai_base_url}/chat/completions",
        data=json.dumps({"model": "sim", "messages": [{"role": "user", "content": prompt}]})
        .encode(),
        headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_scripted_fault_then_success(regen_sim):
    regen_sim.script({"prompt": "hello", "route": "chat", "steps": ["server_error"]})
    assert chat(regen_sim, "hello") == 500
    assert chat(regen_sim, "hello") == 200
    assert regen_sim.stats()["routes"]["chat"]["requests"] == 2


def test_the_next_test_starts_from_a_reset_simulator(regen_sim):
    assert regen_sim.stats()["routes"].get("chat", {}).get("requests", 0) == 0
    assert chat(regen_sim, "hello") == 200  # the earlier test's script is gone


def test_the_options_fixture_configures_the_session_server(regen_sim_server):
    assert regen_sim_server.config.task_seconds == 0.05
    assert regen_sim_server.config.seed == 3
"""


def test_the_plugins_fixtures_run_a_users_tests(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_users_pipeline.py").write_text(textwrap.dedent(TESTS))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
