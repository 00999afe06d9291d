"""Params: types, constraints and dates, refused before a run exists."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from regen.engine import Engine, Flow, FlowError, Param, ParamsError, RunStatus

DAY = datetime.date(2026, 1, 2)


def _batch() -> Flow:
    flow = Flow(
        "batch",
        params={
            "count": Param(int, default=3, ge=1, le=10, help="posts wanted"),
            "date": Param(datetime.date, help="the batch's day"),
            "size": Param(str, default="1024*1024", choices=["512*512", "1024*1024"]),
        },
        resources=lambda params: {"day": params["date"]},
    )

    @flow.step()
    async def seen(ctx: Any) -> dict[str, Any]:
        return {
            "param": repr(ctx.params["date"]),
            "resources": repr(ctx.resources["day"]),
            "count": ctx.params["count"],
        }

    return flow


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"count": "-3"}, r"flow 'batch': param 'count' must be ≥ 1, got -3"),
        ({"count": "11"}, r"param 'count' must be ≤ 10, got 11"),
        ({"count": "three"}, r"param 'count': 'three' is not a valid int"),
        ({"date": "not-a-date"}, r"param 'date': 'not-a-date' is not a valid date \(YYYY-MM-DD\)"),
        ({"date": "2026-02-30"}, r"'2026-02-30' is not a valid date"),
        ({"size": "huge"}, r"param 'size' must be one of '512\*512', '1024\*1024', got 'huge'"),
    ],
)
def test_command_line_text_that_does_not_fit_is_refused_naming_the_param(
    texts: dict[str, str], message: str
) -> None:
    with pytest.raises(ParamsError, match=message):
        _batch().parse_params({"date": "2026-01-02", **texts})


def test_a_date_is_stored_as_iso_text_and_steps_and_resources_see_a_date() -> None:
    flow = _batch()
    assert flow.parse_params({"date": "2026-01-02"}) == {
        "count": 3,
        "date": "2026-01-02",
        "size": "1024*1024",
    }
    assert flow.check_params({"date": DAY})["date"] == "2026-01-02"
    # What was stored is accepted again where a run is executed or retried.
    stored = flow.check_params({"date": DAY})
    assert flow.check_params(stored) == stored


async def test_a_run_keeps_the_date_as_json_and_hands_it_back_as_a_date(engine: Engine) -> None:
    flow = _batch()
    run = await engine.run(flow, flow.parse_params({"date": "2026-01-02", "count": "4"}))
    assert run.status is RunStatus.SUCCEEDED
    assert (await engine.get_run(run.id)).params == {
        "count": 4,
        "date": "2026-01-02",
        "size": "1024*1024",
    }
    assert (await engine.detail(run.id)).steps[0].output == {
        "param": repr(DAY),
        "resources": repr(DAY),
        "count": 4,
    }


def test_a_datetime_is_not_a_date() -> None:
    expected = r"param 'date' must be date \(YYYY-MM-DD\), got datetime"
    with pytest.raises(ParamsError, match=expected):
        _batch().check_params({"date": datetime.datetime(2026, 1, 2, 3, 4)})


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_a_float_that_is_not_finite_is_refused(text: str) -> None:
    flow = Flow("f", params={"ratio": float})
    with pytest.raises(ParamsError, match="param 'ratio' must be a finite number"):
        flow.parse_params({"ratio": text})
    with pytest.raises(ParamsError, match="param 'ratio' must be a finite number"):
        flow.check_params({"ratio": float(text)})
    assert flow.check_params({"ratio": 2}) == {"ratio": 2.0}


def test_nan_inside_a_json_param_is_refused() -> None:
    flow = Flow("j", params={"weights": list, "extra": object})
    with pytest.raises(ParamsError, match="param 'weights' holds nan or infinity"):
        flow.parse_params({"weights": "[1, NaN]", "extra": "null"})
    with pytest.raises(ParamsError, match="param 'extra' holds nan or infinity"):
        flow.check_params({"weights": [], "extra": {"x": float("inf")}})


def test_text_that_is_not_valid_utf8_is_refused() -> None:
    # What Python makes of the bytes b"caf\xe9" from a Latin-1 terminal's command line.
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
    flow = Flow("u", params={"topic": str, "tags": Param(list, default=[])})
    with pytest.raises(ParamsError, match="param 'topic' is not valid UTF-8 text"):
        flow.parse_params({"topic": latin1})
    with pytest.raises(ParamsError, match="param 'tags' is not valid UTF-8 text"):
        flow.check_params({"topic": "café", "tags": [latin1]})


@pytest.mark.parametrize("given", ["notadict", ["topic", "x"], 3])
def test_params_that_are_not_a_mapping_are_refused_and_no_run_is_created(
    engine: Engine, given: Any
) -> None:
    flow = Flow("m", params={"topic": str})

    @flow.step()
    async def s(ctx: Any) -> None: ...

    with pytest.raises(ParamsError, match="params must be a mapping of name to value"):
        engine.sync.start(flow, given)
    with pytest.raises(ParamsError, match="param names must be text, not 1"):
        engine.sync.start(flow, {1: "x"})
    with pytest.raises(ParamsError, match="must be ≥ 0"):
        engine.sync.start(Flow("n", params={"n": Param(int, ge=0)}), {"n": -1})
    assert engine.sync.list_runs() == []


def test_a_validator_refuses_by_returning_false_or_raising_value_error() -> None:
    def even(n: int) -> bool:
        return n % 2 == 0

    def short(text: str) -> None:
        if len(text) > 5:
            raise ValueError("at most 5 characters")

    flow = Flow("v", params={"n": Param(int, validator=even), "word": Param(str, validator=short)})
    assert flow.check_params({"n": 2, "word": "hello"}) == {"n": 2, "word": "hello"}
    with pytest.raises(ParamsError, match="param 'n': 3 is refused by its validator 'even'"):
        flow.check_params({"n": 3, "word": "hi"})
    with pytest.raises(ParamsError, match="param 'word': 'goodbye' is refused: at most 5"):
        flow.check_params({"n": 2, "word": "goodbye"})


def test_date_bounds_and_choices() -> None:
    flow = Flow(
        "d",
        params={
            "day": Param(datetime.date, ge=datetime.date(2026, 1, 1)),
            "ratio": Param(float, default=1.0, choices=[0.5, 1, 2.0]),
        },
    )
    with pytest.raises(ParamsError, match="param 'day' must be ≥ 2026-01-01, got 2025-12-31"):
        flow.parse_params({"day": "2025-12-31"})
    assert flow.parse_params({"day": "2026-01-01", "ratio": "1"})["ratio"] == 1.0
    assert flow.describe()["params"]["day"]["type"] == "date, required, ≥ 2026-01-01"
    assert flow.describe()["params"]["ratio"]["type"] == "float, default 1.0, one of 0.5, 1, 2.0"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Param(int, ge=5, le=1), r"Param\(int\): ge=5 is above le=1; no value fits"),
        (lambda: Param(str, ge="a"), r"Param\(str\): ge= bounds int, float and date params"),
        (lambda: Param(int, le=2.5), r"le=2.5 must be a finite int"),
        (lambda: Param(float, ge=float("nan")), r"ge=nan must be a finite float"),
        (lambda: Param(int, le=True), r"le=True must be a finite int"),
        (lambda: Param(str, choices=[1, 2]), r"non-empty list of str values \(not str: 1, 2\)"),
        (lambda: Param(str, choices="ab"), r"choices='ab' must be a list"),
        (lambda: Param(int, choices=[]), r"choices=\[\] must be a non-empty list"),
        (lambda: Param(list, choices=[[1]]), r"must be a list of str, int, float or date"),
        (lambda: Param(int, validator=3), r"validator=3 must be a function"),
        (lambda: Param(int, default=0, ge=1), r"the default does not fit: param 'default' must"),
        (lambda: Param(int, default="3"), r"the default does not fit"),
        (lambda: Param(bytes), r"not supported"),
    ],
)
def test_misuse_of_param_is_refused_where_it_is_written(make: Any, message: str) -> None:
    with pytest.raises(FlowError, match=message):
        make()


def test_a_value_stored_before_the_param_was_a_date_reaches_steps_as_stored() -> None:
    param = Param(datetime.date)
    assert param.restore("2026-01-02") == DAY
    assert param.restore("last tuesday") == "last tuesday"  # a run queued by an older flow
    assert Param(str).restore("2026-01-02") == "2026-01-02"
