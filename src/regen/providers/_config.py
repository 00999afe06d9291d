"""Providers' settings and where they come from: a providers file (TOML) and the environment.

A providers file (``regen.toml`` or any path)::

    default = "sim"

    [providers.sim]
    kind = "openai"                         # openai | dashscope
    base_url = "http://127.0.0.1:8900/v1"
    api_key_env = "SIM_API_KEY"             # or api_key = "…" (kept out of version control!)
    model = "gpt-4o-mini"
    image_model = "jimeng-4.0"
    headers = { "X-Team" = "news" }

    [providers.sim.policy]                  # Policy settings, plus download_timeout
    attempts = 3
    timeout = 60

    [providers.wanx]
    kind = "dashscope"
    api_key_env = "DASHSCOPE_API_KEY"
    fallback = ["sim"]                      # while wanx is down, images come from sim

    [providers.wanx.polling]                # dashscope: Polling settings
    interval = 1
    deadline = 240

    [providers.wanx.breaker]                # BreakerSettings: failures = 5, open_s = 30, …
    [providers.wanx.limit]                  # LimitSettings: rps, burst, tpm, concurrency

The environment declares the well-known providers by their usual variables:
``OPENAI_API_KEY``/``OPENAI_BASE_URL``, ``DEEPSEEK_…``, ``DASHSCOPE_…``, ``MOONSHOT_…``,
with ``{PREFIX}_MODEL`` and the policy variables of :meth:`Policy.from_env`
(``{PREFIX}_MAX_ATTEMPTS``, ``…_TIMEOUT_S``, …). A provider without a key is listed but
refuses to resolve (:class:`ConfigError`, before any request). Keys are :class:`Secret`, and
every key the registry loads is masked wherever regen writes or prints text.

Breaker, limit and fallback settings: see :mod:`regen.providers._guard_settings`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regen.foundation import ConfigError, env_str, read_toml
from regen.providers import _guard_settings as guard_settings
from regen.providers._base import BaseProvider
from regen.providers._breaker import BreakerSettings
from regen.providers._dashscope import DashScopeProvider
from regen.providers._limiter import LimitSettings
from regen.providers._openai import OpenAIProvider
from regen.providers._secret import Secret
from regen.providers._tasks import Polling
from regen.retry import Kind, Policy

#: Adapter classes by ``kind``.
KINDS: dict[str, type[BaseProvider]] = {"openai": OpenAIProvider, "dashscope": DashScopeProvider}

#: The well-known providers the environment declares: (name, variable prefix, kind,
#: default base URL, default model).
ENV_PROVIDERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("openai", "OPENAI", "openai", "https://api.openai.com/v1", "gpt-4o-mini"),
    ("deepseek", "DEEPSEEK", "openai", "https://api.deepseek.com/v1", "deepseek-chat"),
    (
        "dashscope",
        "DASHSCOPE",
        "dashscope",
        "https://dashscope.aliyuncs.com/api/v1",
        "wanx2.1-t2i-turbo",
    ),
    ("moonshot", "MOONSHOT", "openai", "https://api.moonshot.cn/v1", "moonshot-v1-8k"),
)
_DEFAULT_TIMEOUT = {"openai": 120.0, "dashscope": 300.0}

_PROVIDER_KEYS = frozenset(
    {
        "kind",
        "base_url",
        "api_key",
        "api_key_env",
        "model",
        "image_model",
        "headers",
        "policy",
        "polling",
        "breaker",
        "limit",
        "fallback",
        "fallback_on",
        "capabilities",
    }
)
_POLICY_KEYS = frozenset(
    {
        "attempts",
        "timeout",
        "deadline",
        "wait",
        "multiplier",
        "max_wait",
        "jitter",
        "retry_after_max",
        "download_timeout",
    }
)


@dataclass(frozen=True)
class ProviderConfig:
    """One provider's settings. ``key_source`` says where its key is (or should be) set."""

    name: str
    kind: str
    base_url: str
    api_key: Secret | None = None
    key_source: str | None = None
    model: str | None = None
    image_model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    policy: Policy | None = None
    polling: Polling | None = None
    source: str = "code"
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    limit: LimitSettings = field(default_factory=LimitSettings)
    fallback: tuple[str, ...] = ()
    fallback_on: frozenset[Kind] = guard_settings.DEFAULT_FALLBACK_ON
    capabilities: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"provider {self.name!r} ({self.source}): unknown kind {self.kind!r}; "
                f"expected one of: {', '.join(sorted(KINDS))}"
            )
        where = f"provider {self.name!r} ({self.source})"
        if self.capabilities is None:
            object.__setattr__(self, "capabilities", guard_settings.CAPABILITIES[self.kind])
        else:
            object.__setattr__(
                self,
                "capabilities",
                guard_settings.capabilities_list(
                    sorted(self.capabilities), f"{where}: capabilities", self.kind
                ),
            )
        object.__setattr__(
            self, "fallback", guard_settings.names_list(list(self.fallback), f"{where}: fallback")
        )
        if self.name in self.fallback:
            raise ConfigError(f"{where}: fallback names the provider itself")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"provider {self.name!r} ({self.source}): base_url={self.base_url!r} "
                "is not an http(s) URL"
            )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description, safe to show: the key masked, header values hidden."""
        policy = self.policy
        return {
            "name": self.name,
            "kind": self.kind,
            "base_url": self.base_url,
            "model": self.model,
            "image_model": self.image_model,
            "api_key": self.api_key.masked if self.api_key else None,
            "has_key": bool(self.api_key),
            "key_source": self.key_source,
            "headers": sorted(self.headers),
            "attempts": policy.attempts if policy else None,
            "timeout": policy.timeout if policy else None,
            "source": self.source,
            "capabilities": sorted(self.capabilities or ()),
            "fallback": list(self.fallback),
            "breaker": {
                "failures": self.breaker.failures,
                "window_s": self.breaker.window_s,
                "failure_rate": self.breaker.failure_rate,
                "open_s": self.breaker.open_s,
                "enabled": self.breaker.enabled,
            },
            "limit": {
                "rps": self.limit.rps,
                "burst": self.limit.burst,
                "tpm": self.limit.tpm,
                "concurrency": self.limit.concurrency,
            },
        }


def _policy_from_table(name: str, source: str, table: Any, kind: str) -> Policy:
    settings = dict(guard_settings.checked_section(name, source, "policy", table, _POLICY_KEYS))
    settings.setdefault("timeout", _DEFAULT_TIMEOUT[kind])
    download = settings.pop("download_timeout", None)
    if download is not None:
        settings["phases"] = {"download": download}
    try:
        return Policy(**settings)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"provider {name!r} ({source}): policy: {exc}") from None


def _config_from_table(
    name: str, table: Any, source: str, environ: Mapping[str, str]
) -> ProviderConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [providers.{name}] must be a table")
    unknown = set(table) - _PROVIDER_KEYS
    if unknown:
        raise ConfigError(
            f"provider {name!r} ({source}): unknown setting(s) {sorted(unknown)}; "
            f"expected: {', '.join(sorted(_PROVIDER_KEYS))}"
        )
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(
            f"provider {name!r} ({source}): kind={kind!r}; expected one of: "
            f"{', '.join(sorted(KINDS))}"
        )
    base_url = table.get("base_url") or KINDS[kind].default_base_url
    key: str | None = None
    key_env = table.get("api_key_env")
    if "api_key" in table and key_env is not None:
        raise ConfigError(f"provider {name!r} ({source}): give api_key or api_key_env, not both")
    if key_env is not None:
        if not isinstance(key_env, str) or not key_env:
            raise ConfigError(f"provider {name!r} ({source}): api_key_env must name a variable")
        key = env_str(key_env, environ=environ)
        key_source = f"{key_env} (named by {source})"
    else:
        raw = table.get("api_key")
        if raw is not None and not isinstance(raw, str):
            raise ConfigError(f"provider {name!r} ({source}): api_key must be a string")
        key = raw or None
        key_source = f"api_key or api_key_env in [providers.{name}] of {source}"
    headers = table.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"provider {name!r} ({source}): headers must map strings to strings")
    policy = _policy_from_table(name, source, table.get("policy", {}), kind)
    polling = (
        guard_settings.settings_from_table(name, source, "polling", table["polling"], Polling)
        if "polling" in table
        else None
    )
    prefix = guard_settings.env_prefix(name)
    guards = _guards_from(name, source, table, kind, prefix, environ)
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=str(base_url),
        api_key=Secret(key) if key else None,
        key_source=key_source,
        model=table.get("model"),
        image_model=table.get("image_model"),
        headers=dict(headers),
        policy=policy,
        polling=polling,
        source=source,
        **guards,
    )


def _guards_from(
    name: str,
    source: str,
    table: Mapping[str, Any],
    kind: str,
    prefix: str,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Breaker, limit and fallback settings: the file's table, then ``{PREFIX}_…``."""
    where = f"provider {name!r} ({source})"
    breaker = (
        guard_settings.breaker_from_table(name, source, table["breaker"])
        if "breaker" in table
        else BreakerSettings()
    )
    limit = (
        guard_settings.limit_from_table(name, source, table["limit"])
        if "limit" in table
        else LimitSettings()
    )
    found: dict[str, Any] = {
        "breaker": guard_settings.breaker_from_env(breaker, prefix, environ),
        "limit": guard_settings.limit_from_env(limit, prefix, environ),
    }
    fallback = env_str(f"{prefix}_FALLBACK", environ=environ)
    if fallback is not None:
        found["fallback"] = guard_settings.names_list(fallback, f"{prefix}_FALLBACK")
    elif "fallback" in table:
        found["fallback"] = guard_settings.names_list(table["fallback"], f"{where}: fallback")
    fallback_on = env_str(f"{prefix}_FALLBACK_ON", environ=environ)
    if fallback_on is not None:
        found["fallback_on"] = guard_settings.kinds_list(fallback_on, f"{prefix}_FALLBACK_ON")
    elif "fallback_on" in table:
        found["fallback_on"] = guard_settings.kinds_list(
            table["fallback_on"], f"{where}: fallback_on"
        )
    if "capabilities" in table:
        found["capabilities"] = guard_settings.capabilities_list(
            table["capabilities"], f"{where}: capabilities", kind
        )
    return found


def from_environment(environ: Mapping[str, str]) -> Iterator[ProviderConfig]:
    """The well-known providers whose ``{PREFIX}_API_KEY`` or ``_BASE_URL`` is set."""
    for name, prefix, kind, base_url, model in ENV_PROVIDERS:
        key = env_str(f"{prefix}_API_KEY", environ=environ)
        url = env_str(f"{prefix}_BASE_URL", environ=environ)
        if key is None and url is None:
            continue
        policy = Policy.from_env(
            prefix, environ, timeout=_DEFAULT_TIMEOUT[kind], wait=1.0, multiplier=2.0
        )
        guards = _guards_from(name, "environment", {}, kind, prefix, environ)
        yield ProviderConfig(
            name=name,
            kind=kind,
            base_url=url or base_url,
            api_key=Secret(key) if key else None,
            key_source=f"{prefix}_API_KEY",
            model=env_str(f"{prefix}_MODEL", model, environ=environ),
            image_model=env_str(f"{prefix}_IMAGE_MODEL", environ=environ),
            policy=policy,
            source="environment",
            **guards,
        )


def from_file(path: Path, environ: Mapping[str, str]) -> tuple[list[ProviderConfig], str | None]:
    """The providers a providers file declares, and the default it names (if any)."""
    source = str(path)
    document = read_toml(path, "providers file")
    # [alerts] is read by regen.health's alert settings, from the same file.
    unknown = set(document) - {"default", "providers", "alerts"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; expected 'default', "
            "[providers.NAME] tables and [alerts]"
        )
    providers = document.get("providers", {})
    if not isinstance(providers, Mapping):
        raise ConfigError(f"{source}: 'providers' must be a table of [providers.NAME] tables")
    configs = [
        _config_from_table(name, table, source, environ) for name, table in providers.items()
    ]
    default = document.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"{source}: default must name a provider")
    return configs, default
