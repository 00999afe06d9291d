"""One image generation request against an OpenAI-compatible image gateway.

The seed's gateway (``jimeng-4.0`` behind ``POST /v1/images/generations``) takes
``ratio``, ``resolution`` and ``negative_prompt`` next to the usual ``prompt`` and
``model``; the simulator speaks the same extras. A *request* is what identifies an image:
provider, model, prompt and parameters. Storyboards that make the same request share one
generation, and the result cache is keyed by it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from examples.storyboard.models import ModelProvider, Storyboard
from regen.providers import (
    GeneratedImage,
    Image,
    OpenAIProvider,
    ProviderConfig,
    Registry,
    Secret,
    SharedState,
    Transport,
    download_image,
    image_from_bytes,
)
from regen.retry import ConfigError

DEFAULT_RATIO = "16:9"
DEFAULT_RESOLUTION = "2k"
# Keys of custom_params that are the request's own fields, never overridden.
_RESERVED = frozenset({"prompt", "model", "n", "response_format"})


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """The provider a stage run uses, as checkpointed (the key is read from the
    environment when the request is made, never stored).

    ``fallback``: the providers that make an image while this one is down (its circuit
    breaker open, or an attempt meeting an outage), in order: the project's other
    text-to-image providers, then the system default, those whose key was set.
    """

    name: str
    api_url: str
    model_name: str
    api_key_env: str
    source: str  # "project" (its model config) or "system" (the default provider)
    fallback: tuple[ProviderInfo, ...] = ()

    @classmethod
    def of(cls, provider: ModelProvider, source: str) -> ProviderInfo:
        return cls(
            provider.name, provider.api_url, provider.model_name, provider.api_key_env, source
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderInfo:
        return cls(
            str(data["name"]),
            str(data["api_url"]),
            str(data["model_name"]),
            str(data["api_key_env"]),
            str(data["source"]),
            tuple(cls.from_dict(other) for other in data.get("fallback") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "api_url": self.api_url,
            "model_name": self.model_name,
            "api_key_env": self.api_key_env,
            "source": self.source,
        }
        if self.fallback:
            described["fallback"] = [other.to_dict() for other in self.fallback]
        return described

    def config(
        self, environ: Mapping[str, str] | None = None, *, fallback: Sequence[str] = ()
    ) -> ProviderConfig:
        """This provider as a :class:`regen.providers.ProviderConfig` (its key read now)."""
        return ProviderConfig(
            name=self.name,
            kind="openai",
            base_url=self.api_url,
            api_key=Secret(self.api_key(environ)),
            key_source=self.api_key_env,
            image_model=self.model_name,
            capabilities=frozenset({"image"}),
            source="storyboard model_providers",
            fallback=tuple(fallback),
        )

    def api_key(self, environ: Mapping[str, str] | None = None) -> str:
        """The key, from ``environ`` (default: the process environment); a
        :class:`ConfigError` naming the variable when it is not set."""
        key = (os.environ if environ is None else environ).get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"image provider {self.name!r} has no API key: set ${self.api_key_env}"
            )
        return key


def request_params(storyboard: Storyboard) -> dict[str, Any]:
    """The gateway parameters for a storyboard: ``ratio`` (default 16:9), ``resolution``
    (default 2k), ``negative_prompt``, then the rest of its ``custom_params``."""
    custom = dict(storyboard.custom_params)
    params: dict[str, Any] = {
        "ratio": custom.pop("ratio", None) or DEFAULT_RATIO,
        "resolution": custom.pop("resolution", None) or DEFAULT_RESOLUTION,
    }
    negative = custom.pop("negative_prompt", None) or storyboard.negative_prompt
    if negative:
        params["negative_prompt"] = negative
    for key in sorted(custom):
        if key not in _RESERVED:
            params[key] = custom[key]
    return params


def request_key(provider: ProviderInfo, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies an image: the result cache's key, and how storyboards are grouped."""
    return {
        "provider": provider.name,
        "api_url": provider.api_url,
        "model": provider.model_name,
        "prompt": prompt,
        "params": dict(params),
    }


def request_id(key: Mapping[str, Any]) -> str:
    """A short, stable name for a request key."""
    text = json.dumps(key, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Generated:
    """A generated and downloaded image, and the provider that made it (the stage's own,
    or a fallback while that one was down)."""

    image: Image
    url: str | None
    revised_prompt: str | None
    provider: str


def _adapter(
    provider: ProviderInfo,
    transport: Transport | None,
    environ: Mapping[str, str] | None,
    state: SharedState | None,
) -> tuple[OpenAIProvider, Registry | None]:
    """The stage provider's adapter: on its own, or, with fallbacks whose key is set,
    declared in a registry with them as its ``fallback`` (so its breaker is kept in
    ``state`` and, while it is open, the fallbacks make the images)."""
    env = os.environ if environ is None else environ
    others = [other for other in provider.fallback if env.get(other.api_key_env)]
    if not others:
        adapter = OpenAIProvider(
            provider.api_url,
            provider.api_key(environ),
            name=provider.name,
            image_model=provider.model_name,
            transport=transport,
        )
        return adapter, None
    registry = Registry(
        [
            provider.config(environ, fallback=[other.name for other in others]),
            *(other.config(environ) for other in others),
        ],
        transport=transport,
        state=state,
    )
    return registry.openai(provider.name), registry


async def generate(
    provider: ProviderInfo,
    prompt: str,
    params: Mapping[str, Any],
    *,
    transport: Transport | None,
    environ: Mapping[str, str] | None = None,
    state: SharedState | None = None,
) -> Generated:
    """One attempt: ask the gateway for one image, then download and check it (keys
    read from ``environ``, by default the process environment).

    While the provider is down, its fallbacks (``provider.fallback``) are asked in turn
    within the same attempt; they get the prompt only, not the gateway's extra
    parameters. ``state`` keeps the providers' circuit breakers between attempts.

    No retries here: the flow's per-image policy owns the loop (and its 60 s timeout
    bounds this whole attempt). Failures are classified by regen's providers.
    """
    adapter, registry = _adapter(provider, transport, environ, state)
    fetched: list[Image] = []

    async def made_and_fetched(
        generate: Callable[[], Awaitable[list[GeneratedImage]]],
    ) -> list[GeneratedImage]:
        # One provider's part of the attempt, inside its guard: an image its host cannot
        # deliver counts against that provider, and its fallbacks are asked in turn.
        images = await generate()
        first = images[0]
        if first.data is not None:
            fetched[:] = [image_from_bytes(first.data)]
        else:
            assert first.url is not None
            fetched[:] = [await download_image(first.url, transport=adapter.transport)]
        return images

    try:
        images = await adapter.generate_once(
            prompt, n=1, model=provider.model_name, wrap=made_and_fetched, **dict(params)
        )
        first = images[0]
        served = first.provider or provider.name
        url = None if first.data is not None else first.url
        return Generated(fetched[0], url, first.revised_prompt, served)
    finally:
        # Either closes only a transport it opened itself.
        await (registry.aclose() if registry is not None else adapter.aclose())
