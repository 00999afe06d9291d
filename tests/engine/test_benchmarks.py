"""The benchmark scripts run end to end with tiny numbers (their figures are not checked
here: performance is measured by running them, never by timed unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.store.conftest import POSTGRES_URL, postgres_database

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _last_json_line(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@pytest.mark.timeout(150)
def test_the_batch_benchmark_runs_and_reports_its_figures() -> None:
    figures = _last_json_line(
        str(BENCHMARKS / "batch.py"),
        "--items",
        "50",
        "--latency",
        "20ms",
        "--concurrency",
        "8",
        "--json",
    )
    assert figures["items"] == 50
    assert figures["latency_ms"] == 20
    assert figures["concurrency"] == 8
    assert figures["succeeded"] == 50
    assert isinstance(figures["attempts"], int)
    assert figures["attempts"] >= 50
    for name in ("wall_vs_ideal", "peak_rss_mb", "items_per_s"):
        assert isinstance(figures[name], float)
        assert figures[name] > 0
    assert figures["ratios"] == {"wall_vs_ideal": figures["wall_vs_ideal"]}


@pytest.mark.timeout(150)
def test_the_durable_steps_benchmark_runs_every_peer_and_reports_its_ratios() -> None:
    figures = _last_json_line(
        str(BENCHMARKS / "durable_steps.py"), "--steps", "5", "--repeat", "1", "--json"
    )
    assert figures["steps"] == 5
    us = figures["us_per_step"]
    assert isinstance(us, dict)
    for name in ("regen", "dbos", "langgraph"):
        assert us[f"{name}_sync"] > 0
        assert us[f"{name}_async"] > 0
    assert us["raw_sync"] > 0
    ratios = figures["ratios"]
    assert isinstance(ratios, dict)
    assert set(ratios) == {"step_vs_dbos", "step_vs_langgraph", "step_vs_raw_commit"}
    assert ratios["step_vs_dbos"] == us["regen_sync"] / us["dbos_sync"]
    assert isinstance(figures["step_vs_dbos_wal_normal"], float)


@pytest.mark.timeout(200)
def test_the_postgres_steps_benchmark_runs_every_peer_and_reports_its_ratios() -> None:
    with postgres_database():  # skipped without a server (a failure in CI)
        pass
    figures = _last_json_line(
        str(BENCHMARKS / "pg_steps.py"),
        "--url",
        POSTGRES_URL,
        "--steps",
        "5",
        "--runs",
        "1",
        "--repeat",
        "1",
        "--json",
    )
    assert figures["steps"] == 5
    us = figures["us_per_step"]
    assert isinstance(us, dict)
    for name in ("regen", "dbos"):
        assert us[f"{name}_sync"] > 0
        assert us[f"{name}_async"] > 0
    assert us["raw_sync"] > 0
    ratios = figures["ratios"]
    assert isinstance(ratios, dict)
    assert set(ratios) == {"pg_step_vs_dbos", "pg_step_vs_raw_commit"}
    assert ratios["pg_step_vs_dbos"] == us["regen_sync"] / us["dbos_sync"]
    assert ratios["pg_step_vs_raw_commit"] == us["regen_sync"] / us["raw_sync"]
