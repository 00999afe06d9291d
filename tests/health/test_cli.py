"""``regen health`` as a user runs it: a real process, the simulator, a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import regen
from regen.sim import SimServer
from regen.store import SQLiteStore

from .conftest import WRONG_KEY

_PROVIDER_VARS = ("_API_KEY", "_BASE_URL", "_MODEL")
#: The regen under test, for the child process, whatever its working directory.
_SOURCE = str(Path(regen.__file__).resolve().parents[1])


def environment(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any provider or regen setting, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(_PROVIDER_VARS) and not name.startswith(("REGEN_", "MODEL_HEALTH"))
    }
    return {**env, "PYTHONPATH": _SOURCE, "REGEN_HOME": str(home), **extra}


def regen_health(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", "health", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_with_nothing_configured_the_built_in_simulator_is_checked_and_recorded(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    done = regen_health(tmp_path, environment(home), "--json")
    assert done.returncode == 0, done.stderr
    (status,) = json.loads(done.stdout)
    assert (status["name"], status["status"], status["source"]) == (
        "sim",
        "healthy",
        "built-in simulator",
    )
    assert status["quota_remaining"] == 99.95

    async def history() -> list[str]:
        store = SQLiteStore(home / "regen.db")
        try:
            return [check.status for check in await store.health_history("sim")]
        finally:
            await store.close()

    assert asyncio.run(history()) == ["healthy"]

    table = regen_health(tmp_path, environment(home, COLUMNS="80"))
    assert table.returncode == 0
    assert "sim: the built-in simulator" in table.stdout
    # an 80-column terminal shows every value whole: latency, quota, time of the check
    assert re.search(r"│ sim +│ healthy │ \d+ ms +│ - +│ 99\.95% │ \d\d:\d\d:\d\d", table.stdout)


def test_a_refused_key_exits_1_with_401_and_the_key_never_printed(
    tmp_path: Path, sim: SimServer
) -> None:
    env = environment(
        tmp_path / "home", OPENAI_API_KEY=WRONG_KEY, OPENAI_BASE_URL=sim.openai_base_url
    )
    done = regen_health(tmp_path, env, "--json")
    assert done.returncode == 1
    (status,) = json.loads(done.stdout)
    assert (status["name"], status["status"], status["error"]) == ("openai", "unhealthy", "401")
    table = regen_health(tmp_path, env)
    assert table.returncode == 1
    assert "401" in table.stdout
    for text in (done.stdout, done.stderr, table.stdout, table.stderr):
        assert WRONG_KEY not in text


def test_a_bad_setting_is_refused_with_the_variable_named(tmp_path: Path) -> None:
    env = environment(tmp_path / "home", MODEL_HEALTH_CHECK_TIMEOUT="soon")
    done = regen_health(tmp_path, env)
    assert done.returncode == 2  # a usage error, as an option refused
    assert "MODEL_HEALTH_CHECK_TIMEOUT" in done.stderr


def test_watch_checks_every_interval_until_ctrl_c(tmp_path: Path) -> None:
    env = environment(tmp_path / "home", REGEN_HEALTH_INTERVAL_S="0.05")
    with subprocess.Popen(
        [sys.executable, "-m", "regen.cli", "health", "--watch", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            rounds = [json.loads(process.stdout.readline()) for _ in range(3)]
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    code = process.returncode
    assert "Traceback" not in stderr
    assert code == 0
    times = [round_[0]["last_check"] for round_ in rounds]
    assert times == sorted(times)
    assert len(set(times)) == 3
    assert all(round_[0]["status"] == "healthy" for round_ in rounds)
