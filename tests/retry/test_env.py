from __future__ import annotations

import pytest

from regen import ConfigError, Policy


def test_seed_000_defaults_when_nothing_is_set() -> None:
    policy = Policy.from_env("ALIYUN_IMAGE", environ={})
    assert policy.attempts == 3
    assert policy.backoff(1) == policy.backoff(2) == 2
    assert policy.timeout == 180
    assert policy.phases == {"download": 60}


def test_seed_000_variables_work_as_written() -> None:
    env = {
        "ALIYUN_IMAGE_MAX_ATTEMPTS": "5",
        "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.5",
        "ALIYUN_IMAGE_TIMEOUT_S": "90",
        "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "15",
    }
    policy = Policy.from_env("ALIYUN_IMAGE", environ=env)
    assert policy.attempts == 5
    assert policy.backoff(3) == 0.5
    assert policy.timeout == 90
    assert policy.phases["download"] == 15


def test_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("MY_API_POLL_TIMEOUT_S", "7")
    policy = Policy.from_env("MY_API")
    assert policy.attempts == 2
    assert policy.phases["poll"] == 7


def test_defaults_given_by_the_caller_apply_where_unset() -> None:
    policy = Policy.from_env("X", environ={"X_TIMEOUT_S": "5"}, attempts=4, wait=1, multiplier=2)
    assert (policy.attempts, policy.timeout) == (4, 5)
    assert policy.backoff(2) == 2


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        ("ALIYUN_IMAGE_MAX_ATTEMPTS", "abc", "whole number of attempts"),
        ("ALIYUN_IMAGE_MAX_ATTEMPTS", "-1", "whole number of attempts"),
        ("ALIYUN_IMAGE_MAX_ATTEMPTS", "0", "whole number of attempts"),
        ("ALIYUN_IMAGE_RETRY_SLEEP_S", "-1", "seconds ≥ 0"),
        ("ALIYUN_IMAGE_RETRY_SLEEP_S", "soon", "seconds ≥ 0"),
        ("ALIYUN_IMAGE_TIMEOUT_S", "0", "seconds > 0"),
        ("ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S", "nan", "seconds > 0"),
        ("ALIYUN_IMAGE_JITTER", "3", "fraction"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, expects: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Policy.from_env("ALIYUN_IMAGE", environ={name: value})
    message = str(caught.value)
    assert name in message
    assert repr(value) in message
    assert expects in message


def test_unknown_default_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="settings are"):
        Policy.from_env("X", environ={}, attemps=3)


@pytest.mark.parametrize(
    ("environ", "expects"),
    [
        (
            {"X_RETRY_SLEEP_S": "10", "X_BACKOFF_MAX_S": "5"},
            "X_BACKOFF_MAX_S=5: expected at least the first wait, 10 s",
        ),
        ({"X_BACKOFF_MAX_S": "0.5"}, "X_BACKOFF_MAX_S=0.5: expected at least the first wait, 2 s"),
        ({"X_MAX_ATTEMPTS": "500"}, "X_MAX_ATTEMPTS=500 without X_DEADLINE_S"),
    ],
)
def test_settings_that_contradict_each_other_name_the_variable(
    environ: dict[str, str], expects: str
) -> None:
    with pytest.raises(ConfigError, match=expects):
        Policy.from_env("X", environ=environ)


def test_a_first_wait_above_the_default_cap_raises_the_cap() -> None:
    assert Policy.from_env("X", environ={"X_RETRY_SLEEP_S": "40"}).max_wait == 40
    many = Policy.from_env("X", environ={"X_MAX_ATTEMPTS": "500", "X_DEADLINE_S": "60"})
    assert (many.attempts, many.deadline) == (500, 60)
