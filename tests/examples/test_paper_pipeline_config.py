"""Seed 003's configuration names, the paper feed and the flow's shape."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from examples.paper_pipeline import BUILT_IN, STEPS, Config, flow, load_feed, papers_for

from regen import ConfigError


def test_the_defaults_are_the_seeds() -> None:
    config = Config.from_env({})
    assert config.auto_retry_enabled is True
    assert config.auto_retry_max_attempts == 3
    assert config.auto_retry_delay_seconds == 30.0
    assert config.checkpoint_retention_hours == 24.0
    assert config.max_retries == 3
    settings = config.settings({})
    assert (settings.checkpoint_retention_hours, settings.auto_retry) == (24.0, True)


def test_the_seeds_names_map_onto_the_runs_retries_and_regens_retention() -> None:
    env = {
        "AUTO_RETRY_ENABLED": "true",
        "AUTO_RETRY_MAX_ATTEMPTS": "5",
        "AUTO_RETRY_DELAY_SECONDS": "0.5",
        "CHECKPOINT_RETENTION_HOURS": "48",
        "REGEN_HOME": "/tmp/somewhere",
        "PAPER_PIPELINE_FAIL_STEP": "publish_mcp:after",
    }
    config = Config.from_env(env)
    assert (config.max_retries, config.auto_retry_delay_seconds) == (5, 0.5)
    assert config.settings(env).checkpoint_retention_hours == 48.0
    assert config.home == Path("/tmp/somewhere")
    assert config.fail_step == ("publish_mcp", "after")


@pytest.mark.parametrize("value", ["false", "0", "no", "OFF"])
def test_auto_retry_enabled_false_switches_automatic_retries_off(value: str) -> None:
    env = {"AUTO_RETRY_ENABLED": value}
    config = Config.from_env(env)
    assert config.max_retries == 0
    assert config.settings(env).auto_retry is False


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AUTO_RETRY_ENABLED", "maybe", "expected true or false"),
        ("AUTO_RETRY_MAX_ATTEMPTS", "three", "expected a whole number from 0 to 10,000"),
        ("AUTO_RETRY_MAX_ATTEMPTS", "-1", "expected a whole number from 0 to 10,000"),
        ("AUTO_RETRY_MAX_ATTEMPTS", "2.5", "expected a whole number from 0 to 10,000"),
        ("AUTO_RETRY_MAX_ATTEMPTS", "9" * 20, "expected a whole number from 0 to 10,000"),
        ("AUTO_RETRY_DELAY_SECONDS", "-5", "expected a number of seconds ≥ 0"),
        ("AUTO_RETRY_DELAY_SECONDS", "30s", "expected a number of seconds ≥ 0"),
        ("AUTO_RETRY_DELAY_SECONDS", "inf", "expected a number of seconds ≥ 0"),
        ("AUTO_RETRY_DELAY_SECONDS", "1e308", "≥ 0 and ≤ 31,536,000"),
        ("CHECKPOINT_RETENTION_HOURS", "a day", "expected a number of hours ≥ 0"),
        ("CHECKPOINT_RETENTION_HOURS", "nan", "expected a number of hours ≥ 0"),
        ("PAPER_PIPELINE_FAIL_STEP", "render", "STEP one of fetch_papers"),
        ("PAPER_PIPELINE_FAIL_STEP", "render_images:during", "STEP or STEP:after"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}={value!r}: .*{expected}"):
        Config.from_env({name: value})


def test_the_flow_has_the_seeds_five_steps_in_order() -> None:
    assert tuple(s.name for s in flow.steps) == STEPS
    assert STEPS == (
        "fetch_papers",
        "openai_analyze",
        "render_images",
        "build_payload",
        "publish_mcp",
    )
    assert (flow.max_retries, flow.retry_delay) == (3, 30.0)


def test_each_day_gets_its_own_selection_and_the_same_day_the_same_one() -> None:
    day = dt.date(2025, 12, 29)
    assert papers_for(day, 3) == papers_for(day, 3)
    assert papers_for(day, 3) != papers_for(day + dt.timedelta(days=1), 3)
    assert len(papers_for(day, 100)) == len(BUILT_IN)


def test_a_local_json_feed_replaces_the_built_in_list(tmp_path: Path) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"papers": [{"id": "x1", "title": "T", "abstract": "A"}]}))
    assert load_feed(feed) == [
        {"id": "x1", "title": "T", "authors": [], "abstract": "A", "url": None}
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "is not readable JSON"),
        ("[]", "expected a non-empty JSON list"),
        ('[{"id": "x", "title": "T"}]', "paper 0 needs the text field"),
        (
            '[{"id": "x", "title": "T", "abstract": "A"}, {"id": "x", "title": "U", '
            '"abstract": "B"}]',
            "ids must be unique",
        ),
    ],
)
def test_a_bad_feed_is_refused_clearly(tmp_path: Path, content: str, expected: str) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_feed(feed)


def test_a_missing_feed_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_feed(tmp_path / "nope.json")
