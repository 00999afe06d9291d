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


def _last_json_line(*args: str, timeout: float = 120) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
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
        str(BENCHMARKS / "durable_steps.py"),
        *("--steps", "5", "--runs", "2", "--repeat", "1", "--json"),
    )
    assert (figures["steps"], figures["runs"]) == (5, 2)
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


@pytest.mark.timeout(150)
def test_the_shared_state_benchmark_runs_and_reports_its_figures() -> None:
    figures = _last_json_line(
        str(BENCHMARKS / "shared_state.py"), "--ops", "20", "--reps", "1", "--json"
    )
    per_op = figures["us_per_op"]
    assert isinstance(per_op, dict)
    assert set(per_op) == {"memory", "sqlite"}
    assert set(per_op["sqlite"]) == {"noop_update", "write_update", "count", "noop_update_busy"}


@pytest.mark.timeout(150)
def test_the_outage_benchmark_spares_the_dead_provider_and_keeps_under_the_shared_limit() -> None:
    figures = _last_json_line(str(BENCHMARKS / "outage.py"), "--quick", "--json")
    assert figures["items"] == 200
    for name in ("calls_to_dead_provider_naive", "calls_to_dead_provider", "given_up"):
        assert isinstance(figures[name], int)
    naive, guarded = figures["calls_to_dead_provider_naive"], figures["calls_to_dead_provider"]
    assert isinstance(naive, int)
    assert isinstance(guarded, int)
    assert 0 < guarded < naive  # the breaker learnt the outage and the backup served
    assert figures["given_up"] == 0
    assert figures["succeeded"] == 200
    limited = figures["limited"]
    assert isinstance(limited, dict)
    assert "sqlite" in limited  # and "postgres" when REGEN_DATABASE_URL names a server
    assert set(limited) <= {"sqlite", "postgres"}
    assert limited["sqlite"]["requests"] >= limited["sqlite"]["items"] > 0
    ratios = figures["ratios"]
    assert isinstance(ratios, dict)
    assert set(ratios) == {"dead_calls_vs_naive", "wall_vs_ideal", "rate_limit_429_share"}
    assert ratios["dead_calls_vs_naive"] == guarded / naive
    assert ratios["wall_vs_ideal"] == figures["wall_vs_ideal"]
    assert ratios["rate_limit_429_share"] == max(
        r["rate_limit_429_share"] for r in limited.values()
    )


@pytest.mark.timeout(300)
def test_the_workers_benchmark_runs_one_batch_on_1_2_and_4_workers_and_prices_a_step() -> None:
    with postgres_database():  # skips (or fails, in CI) without a server
        pass
    figures = _last_json_line(
        str(BENCHMARKS / "workers.py"),
        "--items",
        "40",
        "--latency-ms",
        "20",
        "--postgres",
        POSTGRES_URL,
        "--steps",
        "5",
        "--step-runs",
        "1",
        "--step-repeat",
        "1",
        "--json",
        timeout=280,
    )
    assert (figures["items"], figures["latency_ms"], figures["per_worker_concurrency"]) == (
        40,
        20,
        16,
    )
    runs = figures["runs"]
    assert isinstance(runs, dict)
    for workers in ("1", "2", "4"):
        assert runs[workers]["succeeded"] == 40
        assert sum(runs[workers]["items_per_worker"]) == 40
    ratios = figures["ratios"]
    assert isinstance(ratios, dict)
    assert set(ratios) == {"scale_2", "scale_4", "pg_step_vs_dbos", "pg_step_vs_raw_commit"}
    assert all(value > 0 for value in ratios.values())
    us = figures["pg_steps"]["us_per_step"]
    assert ratios["pg_step_vs_dbos"] == us["regen_sync"] / us["dbos_sync"]
    assert ratios["pg_step_vs_raw_commit"] == us["regen_sync"] / us["raw_sync"]


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
