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
    first = next(r for r in runs if r["retry_count"] == 1)
    assert (first["flow"], first["status"]) == ("regen-demo", "succeeded")
    detail = json.loads(_regen(home, "show", first["id"], "--json").stdout)
    counts = detail["steps"][1]["items"]
    assert (counts["succeeded"], counts["given_up"]) == (3, 1)  # the quota was backfilled
    stored = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) >= 3
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in stored)


def test_the_demo_shows_a_breaker_opening_and_the_fallback_serving(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = _regen(home, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    down = out.index("Now `sim` goes down")
    opened = out.index("circuit breaker open: `sim` failed 3 calls in a row")
    served = out.index("6 images served by the fallback `backup` while `sim` was down")
    assert down < opened < served

    runs = json.loads(_regen(home, "runs", "--json").stdout)
    assert sorted((r["status"], r["retry_count"]) for r in runs) == [
        ("succeeded", 0),
        ("succeeded", 1),
    ]
    outage = next(r for r in runs if r["retry_count"] == 0)
    assert f"regen show {outage['id']}" in out
    detail = json.loads(_regen(home, "show", outage["id"], "--json").stdout)
    illustrated = [i for i in detail["items"]["illustrate"] if i["status"] == "succeeded"]
    assert [i["provider"] for i in illustrated] == ["backup"] * 6


def test_the_demo_records_its_runs_like_any_other(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _regen(home, "demo", "--count", "1").returncode == 0
    assert _regen(home, "demo", "--count", "1").returncode == 0
    runs = json.loads(_regen(home, "runs", "--json").stdout)
    assert len(runs) == 4  # each demo: a batch, and a batch while `sim` is down
