"""benchmarks/transport.py runs end to end with tiny numbers (its figures are not checked
here: performance is measured by running it, never by timed unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transport.py"
CLIENTS = {"httpx_shared", "httpx_per_group", "aiohttp", "regen"}


@pytest.mark.timeout(120)
def test_the_transport_benchmark_measures_every_client_both_ways() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--requests", "16", "--concurrency", "8", "--latency", "5ms", "--repeat", "1"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert (figures["requests"], figures["concurrency"], figures["latency_ms"]) == (16, 8, 5)
    assert figures["ceiling_rps"] == 1600
    for mode in ("workers", "queued"):
        assert set(figures["rps"][mode]) == CLIENTS
        assert all(rate > 0 for rate in figures["rps"][mode].values())
        assert all(len(runs) == 1 for runs in figures["runs"][mode].values())
    rps = figures["rps"]
    assert figures["ratios"] == {
        "aiohttp_vs_httpx_shared": rps["workers"]["aiohttp"] / rps["workers"]["httpx_shared"],
        "regen_vs_aiohttp": rps["workers"]["regen"] / rps["workers"]["aiohttp"],
        "queued_aiohttp_vs_httpx_shared": rps["queued"]["aiohttp"] / rps["queued"]["httpx_shared"],
        "queued_regen_vs_aiohttp": rps["queued"]["regen"] / rps["queued"]["aiohttp"],
    }
    assert "| regen's `Transport` |" in done.stderr  # the table, beside the JSON


def test_bad_counts_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--requests", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--requests" in done.stderr
    assert "at least 1" in done.stderr
