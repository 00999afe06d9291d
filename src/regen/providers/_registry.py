"""The provider registry: names resolved to adapters, from a providers file and the
environment (their settings: :mod:`regen.providers._config`).

Every adapter the registry builds goes through its provider's :class:`Guard` (circuit
breaker, shared rate limit, adaptive concurrency, counters), whose state is the registry's
:class:`SharedState`: a :class:`MemoryState` unless one is given (``state=`` or
:meth:`Registry.use_state`), as the engine does so that every worker shares them. Breaker,
limit and fallback settings: see :mod:`regen.providers._guard_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from regen.foundation import ConfigError, env_str, remember_secret
from regen.providers._base import BaseProvider
from regen.providers._breaker import breaker_status
from regen.providers._config import ENV_PROVIDERS, ProviderConfig, from_environment, from_file
from regen.providers._dashscope import DashScopeProvider
from regen.providers._guard import Guard
from regen.providers._openai import OpenAIProvider
from regen.providers._shared_state import MemoryState, SharedState
from regen.providers._transport import Transport
from regen.retry import current_clock

P = TypeVar("P", bound=BaseProvider)


class Registry:
    """Providers by name; :meth:`get` resolves one to an adapter sharing one transport.

    Use it as ``async with Registry.load() as providers:`` or close it with
    :meth:`aclose`. Its ``repr`` and :meth:`describe` never show a key unmasked.
    ``state`` keeps the providers' breakers, limits and counters (default: this process's
    memory; see :meth:`use_state`).
    """

    def __init__(
        self,
        providers: Iterable[ProviderConfig] = (),
        *,
        default: str | None = None,
        transport: Transport | None = None,
        state: SharedState | None = None,
    ) -> None:
        self._configs: dict[str, ProviderConfig] = {}
        self._adapters: dict[str, BaseProvider] = {}
        self._guards: dict[str, Guard] = {}
        self.state: SharedState = state if state is not None else MemoryState()
        self.default = default
        self._owns_transport = transport is None
        self.transport = transport or Transport()
        for config in providers:
            self.add(config)

    # --- building ----------------------------------------------------------------------------

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, transport: Transport | None = None
    ) -> Registry:
        """The well-known providers whose ``{PREFIX}_API_KEY`` or ``_BASE_URL`` is set."""
        registry = cls(transport=transport)
        registry._add_env(os.environ if environ is None else environ)
        return registry

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        environ: Mapping[str, str] | None = None,
        transport: Transport | None = None,
    ) -> Registry:
        """The providers declared in a TOML file (its shape: :mod:`regen.providers._config`)."""
        registry = cls(transport=transport)
        registry._add_toml(Path(path), os.environ if environ is None else environ)
        return registry

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        transport: Transport | None = None,
    ) -> Registry:
        """Providers from the environment, then from a TOML file (which wins on a name).

        The file is ``path``, else ``$REGEN_PROVIDERS_FILE``, else ``./regen.toml`` when it
        exists. ``$REGEN_PROVIDER`` names the default provider unless the file does.
        """
        env = os.environ if environ is None else environ
        registry = cls(transport=transport)
        registry._add_env(env)
        chosen = path or env_str("REGEN_PROVIDERS_FILE", environ=env)
        if chosen:
            registry._add_toml(Path(chosen), env)
        elif Path("regen.toml").is_file():
            registry._add_toml(Path("regen.toml"), env)
        if registry.default is None:
            registry.default = env_str("REGEN_PROVIDER", environ=env)
        return registry

    def _add_env(self, environ: Mapping[str, str]) -> None:
        for config in from_environment(environ):
            self.add(config)

    def _add_toml(self, path: Path, environ: Mapping[str, str]) -> None:
        configs, default = from_file(path, environ)
        for config in configs:
            self.add(config)
        if default is not None:
            self.default = default

    def add(self, config: ProviderConfig) -> None:
        """Declare (or replace) a provider; its key is masked in everything regen writes
        from now on (:func:`regen.foundation.remember_secret`)."""
        if config.api_key:
            remember_secret(config.api_key.reveal())
        self._configs[config.name] = config
        self._adapters.pop(config.name, None)
        self._guards.pop(config.name, None)

    def use_state(self, state: SharedState) -> None:
        """Keep breakers, limits and counters in ``state`` from now on (the engine gives a
        store-backed one, shared by every worker)."""
        self.state = state
        for guard in self._guards.values():
            guard.state = state

    def guard(self, name: str | None = None) -> Guard:
        """Provider ``name``'s guard: its breaker, rate limit and counters."""
        config = self.config(name)
        guard = self._guards.get(config.name)
        if guard is None:
            guard = self._guards[config.name] = Guard(
                config.name, self.state, breaker=config.breaker, limit=config.limit
            )
        return guard

    async def breakers(self) -> dict[str, dict[str, Any]]:
        """Every breaker that is not plainly closed, by key (``breaker:NAME[:MODEL]``):
        ``state``, ``kind``, ``opened``, ``retry_after``."""
        now = current_clock().wall()
        values = await self.state.read("breaker:")
        return {key: breaker_status(value, now) for key, value in sorted(values.items())}

    # --- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The declared providers' names, sorted."""
        return sorted(self._configs)

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    def __len__(self) -> int:
        return len(self._configs)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{c.name}={c.kind}({c.api_key.masked if c.api_key else 'no key'})"
            for c in self._configs.values()
        )
        return f"Registry({shown})"

    def _name(self, name: str | None) -> str:
        if name is not None:
            return name
        if self.default is not None:
            return self.default
        if len(self._configs) == 1:
            return next(iter(self._configs))
        raise ConfigError(
            'no provider named and no default: pass a name, set default = "…" in the '
            f"providers file or REGEN_PROVIDER (declared: {', '.join(self.names()) or 'none'})"
        )

    def config(self, name: str | None = None) -> ProviderConfig:
        """A provider's settings (a :class:`ConfigError` when it is not declared)."""
        chosen = self._name(name)
        try:
            return self._configs[chosen]
        except KeyError:
            hints = ", ".join(f"{prefix}_API_KEY" for _, prefix, *_ in ENV_PROVIDERS)
            raise ConfigError(
                f"unknown provider {chosen!r}: declared are "
                f"{', '.join(self.names()) or 'none'}; declare it in a providers file or set "
                f"one of {hints}"
            ) from None

    def get(self, name: str | None = None) -> BaseProvider:
        """The adapter for provider ``name`` (or the default); refused without a key, or
        when a fallback it names is not declared, has no key or offers none of its
        capabilities."""
        config = self.config(name)
        adapter = self._adapters.get(config.name)
        if adapter is None:
            self._check_fallbacks(config)
            adapter = self._adapters[config.name] = self._build(config)
        return adapter

    def _check_fallbacks(self, config: ProviderConfig) -> None:
        where = f"provider {config.name!r} ({config.source})"
        for other_name in config.fallback:
            if other_name not in self._configs:
                raise ConfigError(
                    f"{where}: fallback {other_name!r} is not a declared provider "
                    f"(declared: {', '.join(self.names())})"
                )
            other = self._configs[other_name]
            shared = (config.capabilities or frozenset()) & (other.capabilities or frozenset())
            if not shared:
                raise ConfigError(
                    f"{where}: fallback {other_name!r} offers "
                    f"{', '.join(sorted(other.capabilities or ()))}, none of what "
                    f"{config.name!r} offers ({', '.join(sorted(config.capabilities or ()))})"
                )
            if not other.api_key:
                raise ConfigError(
                    f"{where}: fallback {other_name!r} has no API key: set "
                    f"{other.key_source or 'its key'}"
                )

    def _fallbacks(self, config: ProviderConfig, capability: str) -> list[BaseProvider]:
        chain: list[BaseProvider] = []
        for other_name in config.fallback:
            other = self._configs.get(other_name)
            if other is None or capability not in (other.capabilities or ()):
                continue
            adapter = self._adapters.get(other_name)
            if adapter is None:
                adapter = self._adapters[other_name] = self._build(other)
            chain.append(adapter)
        return chain

    def _typed(self, name: str | None, cls: type[P]) -> P:
        adapter = self.get(name)
        if not isinstance(adapter, cls):
            raise ConfigError(
                f"provider {adapter.name!r} is of kind {adapter.kind!r}, not {cls.kind!r}"
            )
        return adapter

    def openai(self, name: str | None = None) -> OpenAIProvider:
        """:meth:`get`, for a provider of kind ``openai``."""
        return self._typed(name, OpenAIProvider)

    def dashscope(self, name: str | None = None) -> DashScopeProvider:
        """:meth:`get`, for a provider of kind ``dashscope``."""
        return self._typed(name, DashScopeProvider)

    def _build(self, config: ProviderConfig) -> BaseProvider:
        if not config.api_key:
            raise ConfigError(
                f"provider {config.name!r} has no API key: set {config.key_source or 'its key'}"
            )
        common: dict[str, Any] = {
            "name": config.name,
            "policy": config.policy,
            "transport": self.transport,
            "headers": config.headers,
        }
        if config.model is not None:
            common["model"] = config.model
        adapter: BaseProvider
        if config.kind == "dashscope":
            adapter = DashScopeProvider(
                config.base_url, config.api_key, polling=config.polling, **common
            )
        else:
            if config.image_model is not None:
                common["image_model"] = config.image_model
            adapter = OpenAIProvider(config.base_url, config.api_key, **common)
        adapter.guard = self.guard(config.name)
        adapter.fallbacks = lambda capability: self._fallbacks(config, capability)
        adapter.fallback_on = config.fallback_on
        return adapter

    def describe(self) -> list[dict[str, Any]]:
        """Every provider's settings, keys masked: for health checks and dashboards."""
        return [self._configs[name].describe() for name in self.names()]

    async def aclose(self) -> None:
        """Close the shared transport (when the registry opened it)."""
        if self._owns_transport:
            await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def openai_client_kwargs(provider: OpenAIProvider | ProviderConfig) -> dict[str, Any]:
    """Keyword arguments for ``openai.OpenAI(**…)`` / ``AsyncOpenAI`` with SDK retries off.

    ``max_retries=0``: when regen's policy owns the retry loop, the SDK's own two retries
    would multiply every attempt by three. The result holds the key in clear: pass it to
    the client, never log it.
    """
    if isinstance(provider, ProviderConfig):
        if not provider.api_key:
            raise ConfigError(
                f"provider {provider.name!r} has no API key: set {provider.key_source or 'its key'}"
            )
        key, base_url, policy = provider.api_key, provider.base_url, provider.policy
    else:
        key, base_url, policy = provider.api_key, provider.base_url, provider.policy
    timeout = policy.timeout if policy is not None and policy.timeout is not None else 600.0
    return {"api_key": key.reveal(), "base_url": base_url, "max_retries": 0, "timeout": timeout}
