"""The engine's settings from ``REGEN_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from regen.engine import Engine, Flow, RunStatus, Settings
from regen.retry import ConfigError, FakeClock


def test_unset_or_empty_variables_give_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"REGEN_LEASE_TTL_S": " ", "REGEN_AUTO_RETRY": ""}) == Settings()
    defaults = Settings()
    assert (defaults.lease_ttl, defaults.checkpoint_retention_hours) == (30.0, 24.0)
    assert (defaults.run_retention_days, defaults.gc_interval) == (30.0, 3600.0)
    assert defaults.auto_retry is True


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "REGEN_LEASE_TTL_S": "5",
            "REGEN_CHECKPOINT_RETENTION_HOURS": "0.5",
            "REGEN_RUN_RETENTION_DAYS": "7",
            "REGEN_GC_INTERVAL_S": "60",
            "REGEN_AUTO_RETRY": "off",
            "REGEN_STATS_RETENTION_DAYS": "2",
        }
    )
    assert settings == Settings(
        lease_ttl=5.0,
        checkpoint_retention_hours=0.5,
        run_retention_days=7.0,
        gc_interval=60.0,
        auto_retry=False,
        stats_retention_days=2.0,
    )


@pytest.mark.parametrize(
    ("value", "on"),
    [
        *[("1", True), ("true", True), (" YES ", True), ("On", True)],
        *[("0", False), ("false", False), ("no", False), ("OFF", False)],
    ],
)
def test_auto_retry_reads_the_usual_spellings(value: str, on: bool) -> None:
    assert Settings.from_env({"REGEN_AUTO_RETRY": value}).auto_retry is on


def test_retention_may_be_zero_but_a_lease_may_not() -> None:
    settings = Settings.from_env(
        {"REGEN_CHECKPOINT_RETENTION_HOURS": "0", "REGEN_RUN_RETENTION_DAYS": "0"}
    )
    assert (settings.checkpoint_retention_hours, settings.run_retention_days) == (0.0, 0.0)
    with pytest.raises(ConfigError, match=r"REGEN_LEASE_TTL_S='0': expected a number > 0"):
        Settings.from_env({"REGEN_LEASE_TTL_S": "0"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REGEN_AUTO_RETRY", "maybe", "expected 1/0, true/false, yes/no or on/off"),
        ("REGEN_CHECKPOINT_RETENTION_HOURS", "24h", "expected a number"),
        ("REGEN_CHECKPOINT_RETENTION_HOURS", "-1", "expected a number ≥ 0"),
        ("REGEN_RUN_RETENTION_DAYS", "thirty", "expected a number"),
        ("REGEN_LEASE_TTL_S", "inf", "expected a finite number"),
        ("REGEN_GC_INTERVAL_S", "nan", "expected a finite number"),
        ("REGEN_GC_INTERVAL_S", "-60", "expected a number ≥ 0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert str(info.value) == f"{name}={value!r}: {message}"


async def test_an_engine_reads_its_settings_from_the_environment(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGEN_AUTO_RETRY", "0")
    monkeypatch.setenv("REGEN_LEASE_TTL_S", "12")
    flow = Flow("no_auto", max_retries=3, retry_delay=30.0)

    @flow.step()
    async def broken(ctx):
        raise RuntimeError("broke")

    with Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path) as engine:
        assert engine.settings == Settings(lease_ttl=12.0, auto_retry=False)
        run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    assert (run.retry_count, run.retry_at) == (0, None)  # no automatic retry was scheduled
    assert clock.sleeps == []


def test_an_engine_with_a_bad_setting_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGEN_CHECKPOINT_RETENTION_HOURS", "a day")
    with pytest.raises(ConfigError, match="REGEN_CHECKPOINT_RETENTION_HOURS='a day'"):
        Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path)
    assert not (tmp_path / "regen.db").exists()  # refused before anything was opened


def test_a_gc_interval_of_zero_means_never_as_the_worker_argument_does() -> None:
    assert Settings.from_env({"REGEN_GC_INTERVAL_S": "0"}).gc_interval == 0
