"""The fault catalogue and the fault-spec grammar."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regen.sim import APPLIES, CARRIED, FAULTS, ROUTES, FaultSpec, parse_faults
from regen.sim._faults import parse_seconds

#: The fault catalogue users read: the simulator implements exactly its rows.
SPEC = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"


def test_fault_names_are_exactly_the_catalogue_rows_in_order() -> None:
    text = SPEC.read_text(encoding="utf-8").split("### The fault catalogue", 1)[1]
    text = text.split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_0-9]+)` \|", text, flags=re.MULTILINE)
    assert tuple(rows) == FAULTS


def test_every_fault_applies_somewhere_known() -> None:
    assert set(APPLIES) == set(FAULTS)
    for name, routes in {**APPLIES, **CARRIED}.items():
        assert routes, name
        assert routes <= set(ROUTES), name


def test_spec_grammar() -> None:
    assert parse_faults("rate_limit:5, hang*2 ,ok,") == (
        FaultSpec("rate_limit", "5"),
        FaultSpec("hang", None, 2),
    )
    assert parse_faults("task_failed:DataInspectionFailed*1") == (
        FaultSpec("task_failed", "DataInspectionFailed", 1),
    )
    assert str(FaultSpec("hang", "x", 2)) == "hang:x*2"
    assert parse_faults("") == parse_faults("ok") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [("gremlins", "unknown fault"), ("hang*0", "at least 1"), ("hang*two", "integer")],
)
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("50ms", 0.05), ("1.5s", 1.5), ("2", 2.0), ("1m", 60.0), (" 10MS ", 0.01)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "-1s", "inf", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_seconds(text)


def test_spec_number_falls_back_to_the_default() -> None:
    assert FaultSpec("slow", "250ms").number(2) == 0.25
    assert FaultSpec("slow", "soon").number(2) == 2
    assert FaultSpec("slow").number(2) == 2
