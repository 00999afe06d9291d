"""The provider registry: TOML and environment, keys masked everywhere, a missing key refused
before any request."""

from __future__ import annotations

import logging
from pathlib import Path

import openai as openai_sdk
import pytest

from regen.providers import (
    DashScopeProvider,
    OpenAIProvider,
    ProviderConfig,
    Registry,
    Secret,
    openai_client_kwargs,
)
from regen.retry import ConfigError, GiveUp, Kind, Policy
from regen.sim import SimServer

from .conftest import fault, requests

SIM_KEY = "sk-regen-registry-SECRET-9876wxyz"
DASH_KEY = "sk-dash-registry-SECRET-5432abcd"


def write_toml(tmp_path: Path, sim: SimServer, extra: str = "") -> Path:
    path = tmp_path / "regen.toml"
    path.write_text(f"""
default = "sim"

[providers.sim]
kind = "openai"
base_url = "{sim.openai_base_url}"
api_key_env = "SIM_API_KEY"
model = "gpt-4o-mini"
image_model = "jimeng-4.0"
headers = {{ "X-Team" = "news" }}

[providers.sim.policy]
attempts = 2
timeout = 5
wait = 0.01
download_timeout = 7

[providers.wanx]
kind = "dashscope"
base_url = "{sim.dashscope_base_url}"
api_key = "{DASH_KEY}"
model = "wan2.2-t2i-flash"

[providers.wanx.polling]
interval = 0.05
deadline = 5
{extra}
""")
    return path


def all_shown(registry: Registry) -> str:
    return (
        repr(registry)
        + repr(registry.describe())
        + "".join(repr(registry.config(name)) for name in registry.names())
    )


async def test_toml_providers_resolve_to_adapters(tmp_path: Path, sim: SimServer) -> None:
    path = write_toml(tmp_path, sim)
    async with Registry.from_toml(path, environ={"SIM_API_KEY": SIM_KEY}) as registry:
        assert registry.names() == ["sim", "wanx"]
        chat = registry.openai()  # the file's default
        assert chat is registry.get("sim")  # adapters are built once
        assert (chat.policy.attempts, chat.policy.timeout) == (2, 5)
        assert chat.policy.phases["download"] == 7
        assert chat.image_model == "jimeng-4.0"
        assert chat.headers == {"X-Team": "news"}
        assert (await chat.chat("hello")).text
        wanx = registry.dashscope("wanx")
        assert wanx.polling.deadline == 5
        assert wanx.model == "wan2.2-t2i-flash"
        assert (await wanx.generate_image("a cat")).url
        assert chat.transport is wanx.transport is registry.transport
        assert SIM_KEY not in all_shown(registry)
        assert DASH_KEY not in all_shown(registry)


async def test_environment_providers(sim: SimServer) -> None:
    env = {
        "OPENAI_API_KEY": SIM_KEY,
        "OPENAI_BASE_URL": sim.openai_base_url,
        "OPENAI_MAX_ATTEMPTS": "2",
        "OPENAI_TIMEOUT_S": "3",
        "OPENAI_RETRY_SLEEP_S": "0.01",
        "DASHSCOPE_API_KEY": DASH_KEY,
        "DASHSCOPE_BASE_URL": sim.dashscope_base_url,
    }
    async with Registry.from_env(env) as registry:
        assert registry.names() == ["dashscope", "openai"]
        provider = registry.openai("openai")
        assert (provider.policy.attempts, provider.policy.timeout) == (2, 3)
        await provider.chat("hello", headers=fault("server_error*1"))
        assert requests(sim, "chat") == 2
        assert isinstance(registry.get("dashscope"), DashScopeProvider)
        described = {d["name"]: d for d in registry.describe()}
        assert described["openai"]["api_key"] == "sk-…wxyz"
        assert described["openai"]["key_source"] == "OPENAI_API_KEY"
        assert described["dashscope"]["source"] == "environment"


async def test_a_missing_key_is_refused_before_any_request(tmp_path: Path, sim: SimServer) -> None:
    path = write_toml(tmp_path, sim)
    env = {"DEEPSEEK_BASE_URL": sim.openai_base_url}  # declared, but no DEEPSEEK_API_KEY
    async with Registry.load(path, environ=env) as registry:
        assert "deepseek" in registry
        assert "sim" in registry
        with pytest.raises(ConfigError, match="DEEPSEEK_API_KEY"):
            registry.get("deepseek")
        with pytest.raises(ConfigError, match="SIM_API_KEY"):
            registry.get("sim")
        assert {d["name"]: d["has_key"] for d in registry.describe()} == {
            "deepseek": False,
            "sim": False,
            "wanx": True,
        }
    assert sim.stats()["requests"] == 0


def test_an_unknown_provider_names_the_choices() -> None:
    registry = Registry.from_env({})
    with pytest.raises(ConfigError, match=r"unknown provider 'openai'.*OPENAI_API_KEY"):
        registry.get("openai")
    with pytest.raises(ConfigError, match="no provider named and no default"):
        registry.get()


def test_a_provider_without_a_key_cannot_be_built_directly() -> None:
    with pytest.raises(ConfigError, match="no API key"):
        OpenAIProvider("http://127.0.0.1:1/v1", "")


def test_the_default_provider(tmp_path: Path, sim: SimServer) -> None:
    env = {"OPENAI_API_KEY": SIM_KEY, "DEEPSEEK_API_KEY": SIM_KEY, "REGEN_PROVIDER": "deepseek"}
    assert Registry.load(environ=env).get().name == "deepseek"
    only = Registry.from_env({"MOONSHOT_API_KEY": SIM_KEY})
    assert only.get().name == "moonshot"
    path = write_toml(tmp_path, sim)
    assert Registry.load(path, environ={**env, "SIM_API_KEY": SIM_KEY}).default == "sim"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[providers.bad]\nkind = "openai"\nbase_uri = "x"', "unknown setting.*base_uri"),
        ('[providers.bad]\nkind = "anthropic"', "kind='anthropic'"),
        ('[providers.bad]\nkind = "openai"\nbase_url = "ftp://x"', "not an http"),
        (
            '[providers.bad]\nkind = "openai"\n[providers.bad.policy]\nattempts = 0',
            "policy: attempts=0",
        ),
        (
            '[providers.bad]\nkind = "openai"\n[providers.bad.policy]\nretries = 3',
            "unknown policy setting.*retries",
        ),
        (
            '[providers.bad]\nkind = "dashscope"\n[providers.bad.polling]\ninterval = -1',
            r"provider 'bad' \(.*bad.toml\): polling interval=-1: expected a number of seconds > 0",
        ),
        ('[providers.bad]\nkind = "openai"\napi_key = "a"\napi_key_env = "B"', "not both"),
        ("colour = 'red'", "unknown top-level key"),
    ],
)
def test_bad_files_are_refused_with_what_to_fix(
    tmp_path: Path, sim: SimServer, extra: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(extra)
    with pytest.raises(ConfigError, match=message):
        Registry.from_toml(path, environ={})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Registry.from_toml(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[providers.x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Registry.from_toml(broken)


def test_typed_getters_check_the_kind(tmp_path: Path, sim: SimServer) -> None:
    registry = Registry.from_toml(write_toml(tmp_path, sim), environ={"SIM_API_KEY": SIM_KEY})
    with pytest.raises(ConfigError, match="of kind 'dashscope', not 'openai'"):
        registry.openai("wanx")


async def test_keys_never_reach_logs_errors_or_reprs(
    sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "OPENAI_API_KEY": SIM_KEY,
        "OPENAI_BASE_URL": sim.openai_base_url,
        "OPENAI_RETRY_SLEEP_S": "0",
    }
    with caplog.at_level(logging.DEBUG, logger="regen"):
        async with Registry.from_env(env) as registry:
            provider = registry.openai()
            shown = [repr(registry), repr(provider), repr(provider.api_key), str(provider.api_key)]
            with pytest.raises(GiveUp) as auth:
                await provider.chat("hello", headers=fault("auth"))
            with pytest.raises(GiveUp) as server:
                await provider.chat("hello", headers=fault("server_error"))
            # A server that echoes the key in full (some gateways do): scrubbed too.
            echoed = provider.error_from(
                401, {}, f'{{"error":{{"message":"bad key {SIM_KEY}"}}}}'.encode()
            )
    assert auth.value.kind is Kind.AUTH
    assert server.value.kind is Kind.SERVER_ERROR
    texts = [
        *shown,
        caplog.text,
        str(auth.value),
        str(auth.value.__cause__),
        str(server.value),
        repr(auth.value.attempts),
        str(echoed),
        *auth.value.errors,
        *server.value.errors,
    ]
    for text in texts:
        assert SIM_KEY not in text
    assert "…wxyz" in str(echoed)
    assert "attempt 1 of 3 failed" in caplog.text  # the logs were there to check


def test_openai_sdk_kwargs_turn_sdk_retries_off(sim: SimServer) -> None:
    config = ProviderConfig(
        "sim",
        "openai",
        sim.openai_base_url,
        Secret(SIM_KEY),
        policy=Policy(attempts=2, timeout=5, wait=0.01),
    )
    kwargs = openai_client_kwargs(config)
    assert kwargs["max_retries"] == 0
    assert kwargs["timeout"] == 5
    with openai_sdk.OpenAI(**kwargs) as client:
        with pytest.raises(openai_sdk.InternalServerError):
            client.chat.completions.create(
                model="gpt-4o-mini",
                extra_headers=fault("server_error"),
                messages=[{"role": "user", "content": "hi"}],
            )
        assert requests(sim, "chat") == 1  # the SDK did not retry on its own
        assert config.policy is not None
        reply = config.policy.call(
            client.chat.completions.create,
            model="gpt-4o-mini",
            extra_headers=fault("server_error*1"),
            messages=[{"role": "user", "content": "again"}],
        )
    assert reply.choices[0].message.content
    assert requests(sim, "chat") == 3  # 1 above + 2 attempts under regen's policy


def test_client_kwargs_refuse_a_keyless_config() -> None:
    with pytest.raises(ConfigError, match="no API key"):
        openai_client_kwargs(ProviderConfig("x", "openai", "https://api.openai.com/v1"))


def test_adapter_kwargs_from_an_adapter(sim: SimServer) -> None:
    provider = OpenAIProvider(sim.openai_base_url, SIM_KEY)
    assert openai_client_kwargs(provider)["api_key"] == SIM_KEY
