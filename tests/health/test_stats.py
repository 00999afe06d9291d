"""Retry statistics summed per provider and kind, with the worst of its breakers."""

from __future__ import annotations

from regen.health import breaker_state, provider_stats, summarise
from regen.providers import MemoryState


def test_a_provider_shows_the_worst_of_its_models_breakers() -> None:
    (stats,) = summarise(
        {},
        {
            "breaker:dashscope:wanx": {"state": "half_open"},
            "breaker:dashscope:qwen": {"state": "closed"},
        },
    )
    assert (stats.provider, stats.breaker) == ("dashscope", "half_open")
    assert stats.breakers == {
        "breaker:dashscope:wanx": "half_open",
        "breaker:dashscope:qwen": "closed",
    }
    assert stats.retry_rate is None


def test_breaker_values_are_read_leniently() -> None:
    assert breaker_state({"state": "open"}) == "open"
    assert breaker_state({"state": "half-open"}) == "half_open"
    assert breaker_state({"failures": [1.0]}) == "closed"
    assert breaker_state("weird") == "closed"
    assert breaker_state({"state": "open", "until": 100.0}, now=99.0) == "open"
    assert breaker_state({"state": "open", "until": 100.0}, now=100.0) == "half_open"


async def test_totals_add_every_kind_and_the_engines_savings_come_last() -> None:
    state = MemoryState()
    await state.count(
        {
            ("", "", "saved_by_cache"): 4,
            ("openai", "", "attempts"): 8,
            ("openai", "timeout", "retries"): 2,
            ("openai", "server_error", "retries"): 2,
            ("openai", "", "saved_by_breaker"): 3,
        },
        60.0,
    )
    found = await provider_stats(state)
    assert [s.provider for s in found] == ["openai", ""]
    openai = found[0]
    assert (openai["retries"], openai.retry_rate, openai.saved) == (4, 0.5, 3)
    assert [k.kind for k in openai.kinds] == ["", "server_error", "timeout"]
    rows = openai.to_dict()["kinds"]
    assert [(k["kind"], k["retries"], k["give_ups"]) for k in rows] == [
        ("server_error", 2, 0),
        ("timeout", 2, 0),
    ]
    assert found[1].saved == 4
