"""The breaker's state machine as pure functions: when it opens, refuses, probes, closes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regen.foundation import ConfigError
from regen.providers import BreakerSettings, breaker_key, breaker_status
from regen.providers._breaker import Admission, admit, record
from regen.retry import Kind

FIVE = BreakerSettings(failures=5, window_s=30.0, open_s=10.0, probes=1)


def _fail(value: Any, now: float, kind: Kind = Kind.SERVER_ERROR, **kw: Any) -> Any:
    value, _ = record(value, now, kw.pop("settings", FIVE), kind=kind, **kw)
    return value


def test_opens_after_five_outage_failures_in_a_row() -> None:
    value = None
    for i in range(4):
        value = _fail(value, 100.0 + i)
        _, admission = admit(value, 104.0, FIVE, 60.0)
        assert admission.allowed
    value, changed = record(value, 104.5, FIVE, kind=Kind.TIMEOUT)
    assert changed == "opened"
    _, admission = admit(value, 105.0, FIVE, 60.0)
    assert not admission.allowed
    assert admission.retry_after == pytest.approx(9.5)
    assert breaker_status(value, 105.0)["state"] == "open"
    assert breaker_status(value, 105.0)["kind"] == "timeout"


def test_a_success_between_failures_starts_the_count_again() -> None:
    value = None
    for i in range(4):
        value = _fail(value, 100.0 + i)
    value, _ = record(value, 104.0, FIVE, kind=None)
    for i in range(4):
        value = _fail(value, 105.0 + i)
    assert breaker_status(value, 110.0)["state"] == "closed"


def test_failures_spread_wider_than_the_window_do_not_open_it() -> None:
    value = None
    for i in range(10):
        value = _fail(value, 100.0 + i * 10)  # five failures span 40 s > window_s=30
    assert breaker_status(value, 200.0)["state"] == "closed"


@pytest.mark.parametrize(
    "kind", [Kind.AUTH, Kind.BAD_REQUEST, Kind.CONTENT_POLICY, Kind.QUOTA_EXHAUSTED, Kind.UNKNOWN]
)
def test_failures_that_are_not_outages_never_open_it(kind: Kind) -> None:
    value = None
    for i in range(20):
        value = _fail(value, 100.0 + i, kind)
    assert breaker_status(value, 130.0)["state"] == "closed"


def test_failure_rate_opens_it_over_enough_calls() -> None:
    rate = BreakerSettings(failures=0, failure_rate=0.5, min_calls=10, window_s=30.0)
    value = None
    now = 100.0
    for i in range(10):
        kind = Kind.SERVER_ERROR if i % 2 else None
        value, changed = record(value, now + i, rate, kind=kind)
    assert changed == "opened"


def test_failure_rate_below_the_threshold_keeps_it_closed() -> None:
    rate = BreakerSettings(failures=0, failure_rate=0.5, min_calls=10, window_s=30.0)
    value = None
    for i in range(30):
        kind = Kind.SERVER_ERROR if i % 3 == 0 else None
        value, changed = record(value, 100.0 + i * 0.5, rate, kind=kind)
        assert changed is None


def _opened(at: float = 100.0) -> Any:
    value = None
    for i in range(5):
        value = _fail(value, at + i * 0.1)
    return value


def test_half_open_lets_one_probe_through_and_its_success_closes_it() -> None:
    value = _opened()
    value, probe = admit(value, 111.0, FIVE, 60.0)
    assert probe.allowed
    assert probe.probe
    value, other = admit(value, 111.1, FIVE, 60.0)
    assert not other.allowed  # one probe at a time
    value, changed = record(value, 111.5, FIVE, kind=None, admission=probe)
    assert changed == "closed"
    assert value is None
    assert admit(value, 111.6, FIVE, 60.0)[1].allowed


def test_a_failed_probe_reopens_it_for_another_open_s() -> None:
    value = _opened()
    value, probe = admit(value, 111.0, FIVE, 60.0)
    value, changed = record(value, 112.0, FIVE, kind=Kind.CONNECTION, admission=probe)
    assert changed == "reopened"
    _, refused = admit(value, 113.0, FIVE, 60.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(9.0)


def test_a_probe_whose_caller_vanished_frees_its_slot_after_its_lease() -> None:
    value = _opened()
    value, _probe = admit(value, 111.0, FIVE, 5.0)  # never recorded
    assert not admit(value, 115.0, FIVE, 5.0)[1].allowed
    assert admit(value, 116.5, FIVE, 5.0)[1].probe


def test_a_probe_meeting_a_bad_request_closes_it_the_provider_answered() -> None:
    value = _opened()
    value, probe = admit(value, 111.0, FIVE, 60.0)
    value, changed = record(value, 111.2, FIVE, kind=Kind.BAD_REQUEST, admission=probe)
    assert changed == "closed"


def test_a_burst_of_rate_limits_opens_a_short_cooldown_then_closes_without_probing() -> None:
    limits = BreakerSettings(rate_limits=3, rate_limit_cooldown_s=2.0)
    value = None
    changes = []
    for i in range(3):
        value, changed = record(value, 100.0 + i * 0.1, limits, kind=Kind.RATE_LIMITED)
        changes.append(changed)
    assert changes == [None, None, "cooldown"]
    assert not admit(value, 101.0, limits, 60.0)[1].allowed
    value, admission = admit(value, 102.3, limits, 60.0)
    assert admission.allowed
    assert not admission.probe
    assert value is None


def test_the_cooldown_honours_a_longer_retry_after() -> None:
    limits = BreakerSettings(rate_limits=1, rate_limit_cooldown_s=2.0)
    value, _ = record(None, 100.0, limits, kind=Kind.RATE_LIMITED, retry_after=7.0)
    assert admit(value, 106.0, limits, 60.0)[1].retry_after == pytest.approx(1.0)


def test_a_disabled_breaker_never_refuses() -> None:
    off = BreakerSettings(enabled=False)
    value = None
    for i in range(50):
        value, _ = record(value, 100.0 + i, off, kind=Kind.TIMEOUT)
    assert admit(value, 200.0, off, 60.0)[1].allowed


def test_keys_name_the_provider_and_the_model() -> None:
    assert breaker_key("wanx") == "breaker:wanx"
    assert breaker_key("sim", "gpt-4o-mini") == "breaker:sim:gpt-4o-mini"


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"failures": -1}, "failures"),
        ({"open_s": 0}, "open_s"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"probes": 0}, "probes"),
        ({"window_s": float("inf")}, "window_s"),
    ],
)
def test_bad_settings_name_the_setting(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BreakerSettings(**settings_)


_outcome = st.one_of(st.none(), st.sampled_from(list(Kind)))


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0.0, 20.0), st.booleans(), _outcome, st.none() | st.floats(0, 30)),
        max_size=60,
    ),
    probes=st.integers(1, 3),
)
def test_any_sequence_keeps_the_value_json_and_the_machine_consistent(
    steps: list[tuple[float, bool, Kind | None, float | None]], probes: int
) -> None:
    chosen = BreakerSettings(
        failures=3, window_s=10.0, open_s=5.0, probes=probes, rate_limits=4, failure_rate=0.6
    )
    value: Any = None
    now = 1000.0
    for gap, call, outcome, retry_after in steps:
        now += gap
        if call:
            value, admission = admit(value, now, chosen, 30.0)
            if not admission.allowed:
                assert admission.retry_after >= 0
                assert breaker_status(value, now)["state"] in ("open", "half_open")
                continue
        else:
            admission = Admission(True)
        value, changed = record(
            value, now, chosen, kind=outcome, admission=admission, retry_after=retry_after
        )
        assert changed in (None, "opened", "reopened", "cooldown", "closed")
        assert json.loads(json.dumps(value)) == value  # storable as JSON, as it is
        if value is not None and value.get("state") == "half_open":
            assert len(value["probes"]) <= probes
        if changed in ("opened", "reopened"):
            assert not admit(value, now, chosen, 30.0)[1].allowed


def test_a_health_check_decides_as_a_probe_once_the_open_time_is_up() -> None:
    value = _opened()  # open until 110
    still, changed = record(value, 105.0, FIVE, kind=None, observed=True)
    assert changed is None
    assert not admit(still, 105.0, FIVE, 60.0)[1].allowed  # too early: it stays open
    closed, changed = record(value, 111.0, FIVE, kind=None, observed=True)
    assert changed == "closed"
    assert closed is None
    reopened, changed = record(value, 111.0, FIVE, kind=Kind.TIMEOUT, observed=True)
    assert changed == "reopened"
    assert admit(reopened, 112.0, FIVE, 60.0)[1].retry_after == pytest.approx(9.0)


def test_a_call_refused_in_a_cooldown_is_told_it_was_rate_limits_not_an_outage() -> None:
    limits = BreakerSettings(rate_limits=1, rate_limit_cooldown_s=2.0)
    value, _ = record(None, 100.0, limits, kind=Kind.RATE_LIMITED)
    assert admit(value, 101.0, limits, 60.0)[1].cooldown
    assert not admit(_opened(), 105.0, FIVE, 60.0)[1].cooldown
