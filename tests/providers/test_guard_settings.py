"""Breaker, limit and fallback settings from a providers file and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from regen.foundation import ConfigError
from regen.providers import BreakerSettings, LimitSettings, Registry
from regen.retry import Kind

KEY = "sk-test-regen-0123456789abcdef"

FILE = """
[providers.wanx]
kind = "dashscope"
api_key = "{key}"
fallback = ["backup"]
fallback_on = ["timeout", "server_error", "rate_limited"]

[providers.wanx.breaker]
failures = 3
open_s = 12.5
failure_rate = 0.5
min_calls = 20

[providers.wanx.limit]
rps = 20
burst = 10
concurrency = 8

[providers.backup]
kind = "openai"
api_key = "{key}"
capabilities = ["image"]
"""


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Registry:
    path = tmp_path / "regen.toml"
    path.write_text(text.format(key=KEY))
    return Registry.from_toml(path, environ=environ or {})


def test_the_file_sets_breaker_limit_and_fallback(tmp_path: Path) -> None:
    registry = _load(tmp_path, FILE)
    wanx = registry.config("wanx")
    assert wanx.breaker == BreakerSettings(failures=3, open_s=12.5, failure_rate=0.5, min_calls=20)
    assert wanx.limit == LimitSettings(rps=20, burst=10, concurrency=8)
    assert wanx.fallback == ("backup",)
    assert wanx.fallback_on == {Kind.TIMEOUT, Kind.SERVER_ERROR, Kind.RATE_LIMITED}
    assert wanx.capabilities == frozenset({"image"})
    assert registry.config("backup").capabilities == frozenset({"image"})
    adapter = registry.get("wanx")
    assert adapter.guard is registry.guard("wanx")
    assert [p.name for p in adapter.fallbacks("image")] == ["backup"]
    assert adapter.fallbacks("chat") == []
    described = {d["name"]: d for d in registry.describe()}
    assert described["wanx"]["fallback"] == ["backup"]
    assert described["wanx"]["limit"]["rps"] == 20


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    environ = {
        "WANX_BREAKER_FAILURES": "7",
        "WANX_BREAKER_ENABLED": "false",
        "WANX_LIMIT_RPS": "2.5",
        "WANX_FALLBACK": "",
    }
    registry = _load(tmp_path, FILE, environ)
    wanx = registry.config("wanx")
    assert wanx.breaker.failures == 7
    assert wanx.breaker.enabled is False
    assert wanx.limit.rps == 2.5
    assert wanx.fallback == ("backup",)  # a blank variable is unset


def test_well_known_providers_read_their_prefix() -> None:
    environ = {
        "DASHSCOPE_API_KEY": KEY,
        "OPENAI_API_KEY": KEY,
        "DASHSCOPE_BREAKER_OPEN_S": "45",
        "DASHSCOPE_LIMIT_RPS": "20",
        "DASHSCOPE_LIMIT_BURST": "20",
        "DASHSCOPE_FALLBACK": "openai",
        "DASHSCOPE_FALLBACK_ON": "timeout,connection",
    }
    registry = Registry.from_env(environ)
    dashscope = registry.config("dashscope")
    assert dashscope.breaker.open_s == 45
    assert dashscope.limit == LimitSettings(rps=20, burst=20)
    assert dashscope.fallback == ("openai",)
    assert dashscope.fallback_on == {Kind.TIMEOUT, Kind.CONNECTION}
    assert [p.name for p in registry.get("dashscope").fallbacks("image")] == ["openai"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DASHSCOPE_BREAKER_FAILURES": "many"}, "DASHSCOPE_BREAKER_FAILURES='many'"),
        ({"DASHSCOPE_BREAKER_FAILURE_RATE": "2"}, "DASHSCOPE_BREAKER_FAILURE_RATE.*failure_rate"),
        ({"DASHSCOPE_LIMIT_BURST": "5"}, "DASHSCOPE_LIMIT_BURST.*needs rps"),
        ({"DASHSCOPE_FALLBACK_ON": "timeout,weather"}, "DASHSCOPE_FALLBACK_ON.*'weather'"),
        ({"DASHSCOPE_BREAKER_ENABLED": "perhaps"}, "DASHSCOPE_BREAKER_ENABLED"),
    ],
)
def test_bad_variables_name_themselves(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Registry.from_env({"DASHSCOPE_API_KEY": KEY, **environ})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[providers.a]\nkind = "openai"\n[providers.a.breaker]\nfailurs = 3', "failurs"),
        ('[providers.a]\nkind = "openai"\n[providers.a.breaker]\nopen_s = -1', "open_s"),
        ('[providers.a]\nkind = "openai"\n[providers.a.limit]\nrps = "fast"', "rps"),
        ('[providers.a]\nkind = "openai"\nfallback = "b"\nfallback_on = ["x"]', "'x'"),
        ('[providers.a]\nkind = "dashscope"\ncapabilities = ["chat"]', "offers image, not chat"),
        ('[providers.a]\nkind = "openai"\nfallback = ["a"]', "names the provider itself"),
        ('[providers.a]\nkind = "openai"\nfallback = [1]', "list of names"),
    ],
)
def test_bad_tables_are_refused_with_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_a_fallback_must_exist_offer_the_capability_and_have_a_key(tmp_path: Path) -> None:
    head = f'[providers.a]\nkind = "openai"\napi_key = "{KEY}"\ncapabilities = ["chat"]\n'
    missing = _load(tmp_path, head + 'fallback = ["nobody"]\n')
    with pytest.raises(ConfigError, match="fallback 'nobody' is not a declared provider"):
        missing.get("a")
    mismatch = _load(
        tmp_path, head + f'fallback = ["w"]\n[providers.w]\nkind = "dashscope"\napi_key = "{KEY}"'
    )
    with pytest.raises(ConfigError, match="fallback 'w' offers image, none of what 'a' offers"):
        mismatch.get("a")
    keyless = _load(tmp_path, head + 'fallback = ["b"]\n[providers.b]\nkind = "openai"\n')
    with pytest.raises(ConfigError, match="fallback 'b' has no API key"):
        keyless.get("a")
