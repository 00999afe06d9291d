"""Declaring flows and checking params: misuse is refused where it is written."""

from __future__ import annotations

import pytest

from regen.engine import (
    Cache,
    Engine,
    Flow,
    FlowError,
    FlowNotFound,
    Param,
    ParamsError,
    load_flow,
)


def test_duplicate_step_names_are_refused() -> None:
    flow = Flow("dup")

    @flow.step()
    async def fetch(ctx): ...

    with pytest.raises(FlowError, match="a step named 'fetch' already exists"):

        @flow.step(name="fetch")
        async def other(ctx): ...


def test_map_over_a_missing_step_is_refused() -> None:
    flow = Flow("m")
    with pytest.raises(FlowError, match="'nowhere' is not an earlier step"):

        @flow.map(items="nowhere")
        async def each(ctx, item): ...


def test_map_over_an_undeclared_param_is_refused() -> None:
    flow = Flow("m", params={"a": list})
    with pytest.raises(FlowError, match="names no declared param"):

        @flow.map(items="params.b")
        async def each(ctx, item): ...


def test_step_signature_and_kind_are_checked() -> None:
    flow = Flow("sig")
    with pytest.raises(FlowError, match="must accept 2 positional"):

        @flow.map(items=lambda ctx: [1])
        async def one_arg(ctx): ...

    with pytest.raises(FlowError, match="async generator"):

        @flow.stream()
        async def not_a_generator(ctx):
            return "x"

    with pytest.raises(FlowError, match="concurrency"):

        @flow.map(items=lambda ctx: [1], concurrency=0)
        async def zero(ctx, item): ...


def test_unknown_params_are_refused_with_what_the_flow_takes() -> None:
    flow = Flow("p", params={"topic": str, "count": Param(int, default=3)})
    with pytest.raises(ParamsError, match=r"unknown param 'colour'.*topic \(str, required\)"):
        flow.check_params({"topic": "x", "colour": "red"})
    with pytest.raises(ParamsError, match=r"'topic'.*is missing"):
        flow.check_params({})
    with pytest.raises(ParamsError, match="must be int"):
        flow.check_params({"topic": "x", "count": "3"})
    assert flow.check_params({"topic": "x"}) == {"topic": "x", "count": 3}
    assert flow.parse_params({"topic": "x", "count": "4"}) == {"topic": "x", "count": 4}


def test_an_optional_param_defaulting_to_none_accepts_none_again() -> None:
    """Filled-in params are checked again where a run is executed or retried."""
    flow = Flow("opt", params={"home": Param(str, default=None)})
    filled = flow.check_params({})
    assert filled == {"home": None}
    assert flow.check_params(filled) == {"home": None}
    assert flow.check_params({"home": "/data"}) == {"home": "/data"}
    with pytest.raises(ParamsError, match="must be str"):
        flow.check_params({"home": 3})
    required = Flow("req", params={"home": str})
    with pytest.raises(ParamsError, match="must be str"):
        required.check_params({"home": None})


@pytest.mark.parametrize("ttl", [0, -5, float("inf"), float("nan"), "1h"])
def test_a_cache_ttl_that_is_not_positive_seconds_is_refused(ttl: object) -> None:
    with pytest.raises(FlowError, match="ttl is seconds"):
        Cache(ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("retries", "delay", "expected"),
    [
        (-1, 30.0, "max_retries=-1: expected a whole number from 0 to 10,000"),
        (10**20, 30.0, "max_retries=100000000000000000000: expected a whole number"),
        (True, 30.0, "max_retries=True"),
        (3, -1.0, r"retry_delay=-1.0: expected seconds from 0 to 31,536,000 \(a year\)"),
        (3, float("inf"), "retry_delay=inf"),
        (3, 1e308, "retry_delay=1e\\+308"),
    ],
)
def test_automatic_retries_out_of_bounds_are_refused(
    retries: object, delay: object, expected: str
) -> None:
    with pytest.raises(FlowError, match=f"flow 'r': {expected}"):
        Flow("r", max_retries=retries, retry_delay=delay)  # type: ignore[arg-type]


def test_a_flow_key_that_is_not_a_function_of_the_params_is_refused() -> None:
    with pytest.raises(FlowError, match="key must be a function of the run's params, not str"):
        Flow("k", key="day")  # type: ignore[arg-type]
    with pytest.raises(FlowError, match="flow 'k': key"):
        Flow("k", key=lambda: "x")  # type: ignore[arg-type]


def test_bad_params_create_no_run(engine: Engine) -> None:
    flow = Flow("p2", params={"n": int})

    @flow.step()
    async def s(ctx): ...

    with pytest.raises(ParamsError):
        engine.sync.start(flow, {"n": 1, "extra": 2})
    assert engine.sync.list_runs() == []


def test_load_flow_by_import_string() -> None:
    flow = load_flow("engine.flows:linear")
    assert flow.name == "linear"
    assert flow.ref == "engine.flows:linear"
    with pytest.raises(FlowNotFound, match="has no 'missing'"):
        load_flow("engine.flows:missing")
    with pytest.raises(FlowNotFound, match="cannot import"):
        load_flow("no_such_module_xyz:flow")
    with pytest.raises(FlowNotFound, match="MODULE:FLOW"):
        load_flow("no-colon")


def test_describe_lists_steps_for_a_dashboard() -> None:
    flow = load_flow("engine.flows:linear")
    assert [s["name"] for s in flow.describe()["steps"]] == ["fetch", "analyze", "publish"]
