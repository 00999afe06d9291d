"""``regen stats``: retry statistics read from a real store file, as table and JSON."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from regen.cli import cli
from regen.cli._app import _load_commands
from regen.cli._stats import parse_since
from regen.store import Count, SQLiteStore

_load_commands()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REGEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("REGEN_STATS_SINCE", raising=False)
    return tmp_path / "home"


def regen(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _fill(home: Path) -> float:
    """Two hours of counters from two workers, and one open breaker; returns now."""
    now = time.time()
    home.mkdir(parents=True, exist_ok=True)

    async def fill() -> None:
        store = SQLiteStore(home / "regen.db")
        try:
            old, recent = now - 2 * 3600, now - 60
            await store.add_counts(
                [
                    Count(old, "dashscope", "", "attempts", 10),
                    Count(old, "dashscope", "timeout", "retries", 4),
                    Count(recent, "dashscope", "", "attempts", 10),
                    Count(recent, "dashscope", "timeout", "retries", 3),
                    Count(recent, "dashscope", "server_error", "retries", 2),
                    Count(recent, "dashscope", "timeout", "give_ups", 1),
                    Count(recent, "dashscope", "", "breaker_opened", 1),
                    Count(recent, "dashscope", "", "saved_by_breaker", 6),
                    Count(recent, "openai", "", "attempts", 4),
                    Count(recent, "openai", "", "fallbacks", 2),
                    Count(recent, "", "", "saved_by_checkpoint", 5),
                    Count(recent, "", "", "saved_by_cache", 2),
                ]
            )
            await store.update_state(
                "breaker:dashscope", lambda _: ('{"state":"open","opened_at":1}', None)
            )
        finally:
            await store.close()

    asyncio.run(fill())
    return now


def test_stats_shows_each_provider_with_its_kinds_rates_savings_and_breaker(home: Path) -> None:
    _fill(home)
    out = regen("stats", "--wide").output
    lines = [line for line in out.splitlines() if "│" in line]
    dashscope = next(line for line in lines if "dashscope" in line)
    assert [cell.strip() for cell in dashscope.split("│")[1:-1]] == [
        "dashscope",
        "all",
        "20",
        "9",
        "1",
        "45%",
        "1",
        "0",
        "6",
        "open",
    ]
    assert any("timeout" in line and "35%" in line for line in lines)  # 7 of 20 attempts
    engine = next(line for line in lines if "(engine)" in line)
    assert [cell.strip() for cell in engine.split("│")[1:-1]][-2:] == ["7", "-"]
    assert "6 refused by an open breaker, 2 served by the result cache, 5 steps" in out


def test_stats_into_a_pipe_keeps_every_column_whole_unless_columns_is_set(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(home)
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = regen("stats").output  # not a terminal: no width to fit
    assert "attempts" in piped
    assert "fallbacks" in piped
    assert "…" not in piped
    monkeypatch.setenv("COLUMNS", "60")
    assert "…" in regen("stats").output  # a width asked for is kept


def test_stats_json_filtered_by_since(home: Path) -> None:
    now = _fill(home)
    document = json.loads(regen("stats", "--json", "--since", "1h").stdout)
    assert document["since"] == pytest.approx(now - 3600, abs=30)
    providers = {p["provider"]: p for p in document["providers"]}
    assert list(providers) == ["dashscope", "openai", ""]
    dashscope = providers["dashscope"]
    assert (dashscope["attempts"], dashscope["retries"], dashscope["give_ups"]) == (10, 5, 1)
    assert dashscope["retry_rate"] == 0.5
    assert (dashscope["breaker"], dashscope["saved"]) == ("open", 6)
    assert {k["kind"]: k["retries"] for k in dashscope["kinds"]} == {
        "server_error": 2,
        "timeout": 3,
    }
    assert providers["openai"]["fallbacks"] == 2
    assert providers["openai"]["breaker"] is None
    assert (providers[""]["saved_by_checkpoint"], providers[""]["saved_by_cache"]) == (5, 2)
    everything = json.loads(regen("stats", "--json").stdout)
    assert everything["since"] is None
    assert everything["providers"][0]["attempts"] == 20


def test_stats_on_a_new_database_says_nothing_was_counted(home: Path) -> None:
    assert "Nothing counted yet" in regen("stats").output
    assert json.loads(regen("stats", "--json").stdout)["providers"] == []


def test_a_bad_since_says_what_is_expected(home: Path) -> None:
    result = regen("stats", "--since", "yesterday", code=2)
    assert "'--since'" in result.output
    assert "30m, 1h, 2d" in result.output


def test_since_reads_durations_and_iso_times() -> None:
    assert parse_since("30m", 10_000.0) == 10_000.0 - 1800
    assert parse_since("1h30m", 10_000.0) == 10_000.0 - 5400
    assert parse_since("2d", 200_000.0) == 200_000.0 - 172_800
    assert parse_since("2026-01-31T09:00", 0) == datetime(2026, 1, 31, 9, 0).timestamp()
    with pytest.raises(click.BadParameter):
        parse_since("", 0)
