"""``regen demo``, the README's main-job command, runs as designed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _regen(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGEN_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_retries_gives_up_backfills_and_resumes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = _regen(home, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "gave up after 3 attempts" in out
    assert "Resuming it from the failed step" in out
    assert "failed attempts: timeout" in out
    assert "failed attempts: rate_limited" in out

    runs = json.loads(_regen(home, "runs", "--json").stdout)
    assert [(r["flow"], r["status"], r["retry_count"]) for r in runs] == [
        ("regen-demo", "succeeded", 1)
    ]
    detail = json.loads(_regen(home, "show", runs[0]["id"], "--json").stdout)
    counts = detail["steps"][1]["items"]
    assert (counts["succeeded"], counts["given_up"]) == (3, 1)  # the quota was backfilled
    stored = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == 3
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in stored)


def test_the_demo_records_its_runs_like_any_other(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _regen(home, "demo", "--count", "1").returncode == 0
    assert _regen(home, "demo", "--count", "1").returncode == 0
    runs = json.loads(_regen(home, "runs", "--json").stdout)
    assert len(runs) == 2
