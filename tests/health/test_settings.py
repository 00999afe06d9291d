"""The check interval and timeout from the environment: regen's variables, then seed 003's."""

from __future__ import annotations

import pytest

from regen.foundation import ConfigError
from regen.health import HealthSettings


def test_defaults_are_a_minute_and_five_seconds() -> None:
    assert HealthSettings.from_env({}) == HealthSettings(60.0, 5.0)


def test_seed_003_variables_are_honoured() -> None:
    env = {"MODEL_HEALTH_CHECK_INTERVAL": "30", "MODEL_HEALTH_CHECK_TIMEOUT": "2"}
    assert HealthSettings.from_env(env) == HealthSettings(30.0, 2.0)


def test_regen_variables_win_over_the_seed_ones() -> None:
    env = {
        "MODEL_HEALTH_CHECK_INTERVAL": "30",
        "MODEL_HEALTH_CHECK_TIMEOUT": "2",
        "REGEN_HEALTH_INTERVAL_S": "120",
        "REGEN_HEALTH_TIMEOUT_S": "1.5",
    }
    assert HealthSettings.from_env(env) == HealthSettings(120.0, 1.5)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_value_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="MODEL_HEALTH_CHECK_TIMEOUT"):
        HealthSettings.from_env({"MODEL_HEALTH_CHECK_TIMEOUT": value})


def test_settings_refuse_a_zero_interval() -> None:
    with pytest.raises(ConfigError, match="interval"):
        HealthSettings(interval=0)
