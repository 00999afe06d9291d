"""``regen run -p``: params that do not fit the flow are refused before a run exists, in a
real ``regen`` process on a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATED = "tests.cli.flows:dated"


def regen(home: Path, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """``regen ARGS`` in a process of its own (arguments may be raw bytes, as a shell passes)."""
    env = {k: v for k, v in os.environ.items() if k != "REGEN_DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), REGEN_HOME=str(home), LC_ALL="C.UTF-8", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def runs(home: Path) -> list[dict[str, Any]]:
    listed = regen(home, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (b"count=-3", "flow 'cli-dated': param 'count' must be ≥ 1, got -3"),
        (b"date=not-a-date", "param 'date': 'not-a-date' is not a valid date (YYYY-MM-DD)"),
        (b"ratio=nan", "param 'ratio' must be a finite number, got nan"),
        (b"topic=caf\xe9", "param 'topic' is not valid UTF-8 text"),
        (b"colour=red", "unknown param 'colour'; it takes: date (date, required)"),
    ],
)
def test_a_param_that_does_not_fit_exits_2_with_the_reason_and_creates_no_run(
    tmp_path: Path, param: bytes, message: str
) -> None:
    home = tmp_path / "home"
    done = regen(home, "run", DATED, "-p", b"date=2026-01-02", "-p", param)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert runs(home) == []


def test_a_date_from_the_command_line_reaches_the_step_as_a_date(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = regen(home, "run", DATED, "-p", "date=2026-01-02", "-p", "count=2")
    assert done.returncode == 0, done.stderr.decode()
    [run] = runs(home)
    assert run["status"] == "succeeded"
    assert run["params"] == {"date": "2026-01-02", "count": 2, "ratio": 1.0, "topic": "news"}
    shown = regen(home, "show", run["id"], "--json")
    step = json.loads(shown.stdout)["steps"][0]
    assert step["output"] == "2 news posts for 02 January 2026"
