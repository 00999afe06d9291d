"""Illustrating a news post with DashScope (阿里云 wanx) images, retried by error type.

Mirrors the seed's ``src/images/auto_image.py``:

- :func:`generate_aliyun_image` makes ONE attempt: submit an asynchronous image task, poll
  it to success (bounded by ``ALIYUN_IMAGE_TIMEOUT_S``), download the image (bounded by
  ``ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S``) and check that it really is an image. When a second
  image provider's key is set (``OPENAI_API_KEY``), it is DashScope's fallback: while
  DashScope is down, the image comes from it, and the picture says which provider made it.
- :func:`generate_image_with_retry` is the seed's "按错误类型重试" wrapper around it, under
  the ``ALIYUN_IMAGE_*`` policy (:func:`image_policy`): timeouts, connection errors,
  malformed replies and HTML/XML in place of an image are retried (a failed download
  generates a NEW image, under the same attempt budget); a missing key, 401/403 and bad
  parameters fail at once. When the attempts run out it raises
  :class:`ImageGenerationAbandoned`, carrying every attempt and the last three errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from regen import Attempt, AttemptTimeout, ConfigError, Failure, GiveUp, Kind, Policy
from regen.providers import (
    BadResponse,
    DashScopeProvider,
    GeneratedImage,
    Image,
    Polling,
    ProviderConfig,
    Registry,
    Secret,
    Transport,
    download_image,
    image_from_bytes,
)
from regen.retry import by_message, classify, mask, phase_timeout

#: The policy's environment prefix: ``ALIYUN_IMAGE_MAX_ATTEMPTS``, ``…_RETRY_SLEEP_S``,
#: ``…_TIMEOUT_S``, ``…_DOWNLOAD_TIMEOUT_S`` (defaults 3, 2, 180, 60: the seed's §4.3).
ENV_PREFIX = "ALIYUN_IMAGE"
DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"
DEFAULT_MODEL = "wanx2.1-t2i-turbo"
DEFAULT_SIZE = "1024*1024"
DEFAULT_TIMEOUT_S = 180.0
DEFAULT_DOWNLOAD_TIMEOUT_S = 60.0
DEFAULT_POLL_INTERVAL_S = 1.0
OPERATION = "aliyun_image"

# What the seed's own code raises (plain exceptions with a message) mapped to a kind, for
# errors the taxonomy does not recognise by type. Refusals come first: "401 … timeout"
# is an auth failure.
_SEED_MESSAGES = by_message(
    {
        "api_key missing": Kind.CONFIG,
        "api key missing": Kind.CONFIG,
        "缺少 api key": Kind.CONFIG,
        "401": Kind.AUTH,
        "403": Kind.AUTH,
        "unauthorized": Kind.AUTH,
        "forbidden": Kind.AUTH,
        "invalid size": Kind.BAD_REQUEST,
        "超时": Kind.TIMEOUT,
        "timed out": Kind.TIMEOUT,
        "timeout": Kind.TIMEOUT,
        "<html": Kind.BAD_CONTENT,
        "not an image": Kind.BAD_CONTENT,
        "缺少图片": Kind.BAD_RESPONSE,
        "missing url": Kind.BAD_RESPONSE,
    }
)


def classify_image_error(exc: BaseException) -> Failure:
    """regen's taxonomy, then the seed's error messages for exceptions it does not know."""
    failure = classify(exc)
    if failure.kind is Kind.UNKNOWN:
        return _SEED_MESSAGES(exc) or failure
    return failure


def image_policy(environ: Mapping[str, str] | None = None, **settings: Any) -> Policy:
    """The ``ALIYUN_IMAGE_*`` policy: one attempt = generation + download.

    ``MAX_ATTEMPTS`` attempts in all (3), a fixed ``RETRY_SLEEP_S`` between them (2 s),
    generation bounded by ``TIMEOUT_S`` (180 s) and the download by
    ``DOWNLOAD_TIMEOUT_S`` (60 s); an attempt may take their sum. ``settings`` override
    :class:`regen.Policy` fields (``on_retry=…``).
    """
    base = Policy.from_env(
        ENV_PREFIX, environ, classifier=classify_image_error, operation=OPERATION
    )
    generate = base.timeout if base.timeout is not None else DEFAULT_TIMEOUT_S
    download = base.phases.get("download", DEFAULT_DOWNLOAD_TIMEOUT_S)
    policy = base.replace(
        timeout=generate + download,
        phases={**base.phases, "generate": generate, "download": download},
    )
    return policy.replace(**settings) if settings else policy


@dataclass
class AliyunImageClient:
    """Where and how images are generated: a DashScope endpoint (real, or the simulator).

    ``api_key`` may be ``None``: :func:`generate_aliyun_image` then fails at once with a
    :class:`regen.ConfigError` (the seed's "API Key 缺失"), before any request.
    ``poll_interval`` is the first gap between two polls of a task (growing to 5 s). How
    long a task is polled is the current attempt's ``generate`` phase
    (``ALIYUN_IMAGE_TIMEOUT_S``), not a fixed deadline.

    ``fallback``: providers that make the image while DashScope is down (its circuit
    breaker open, or an attempt meeting an outage), in order. With any, DashScope is
    declared in a :class:`regen.providers.Registry` with them as its ``fallback``, so its
    calls go through its breaker; without, calls go straight to DashScope.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    model: str = DEFAULT_MODEL
    size: str = DEFAULT_SIZE
    poll_interval: float = DEFAULT_POLL_INTERVAL_S
    name: str = "aliyun"
    fallback: tuple[ProviderConfig, ...] = ()
    _provider: DashScopeProvider | None = field(default=None, init=False, repr=False)
    _transport: Transport | None = field(default=None, init=False, repr=False)
    _registry: Registry | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        key = mask(self.api_key) if self.api_key else None
        fallback = f", fallback={[f.name for f in self.fallback]!r}" if self.fallback else ""
        return (
            f"AliyunImageClient(base_url={self.base_url!r}, api_key={key!r}, "
            f"model={self.model!r}, size={self.size!r}{fallback})"
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> AliyunImageClient:
        """``DASHSCOPE_API_KEY``, ``DASHSCOPE_BASE_URL``, ``ALIYUN_IMAGE_MODEL``,
        ``ALIYUN_IMAGE_SIZE`` and ``ALIYUN_IMAGE_POLL_INTERVAL_S`` (defaults where unset),
        and the fallback providers of :func:`fallback_from_env`."""
        env = os.environ if environ is None else environ
        settings: dict[str, Any] = {
            "base_url": env.get("DASHSCOPE_BASE_URL") or DEFAULT_BASE_URL,
            "api_key": env.get("DASHSCOPE_API_KEY") or None,
            "model": env.get(f"{ENV_PREFIX}_MODEL") or DEFAULT_MODEL,
            "size": env.get(f"{ENV_PREFIX}_SIZE") or DEFAULT_SIZE,
        }
        interval = env.get(f"{ENV_PREFIX}_POLL_INTERVAL_S")
        if interval:
            try:
                settings["poll_interval"] = float(interval)
            except ValueError:
                raise ConfigError(
                    f"{ENV_PREFIX}_POLL_INTERVAL_S={interval!r}: expected a number of seconds > 0"
                ) from None
        if "fallback" not in overrides:
            settings["fallback"] = fallback_from_env(env)
        settings.update(overrides)
        return cls(**settings)

    def provider(self) -> DashScopeProvider:
        """The DashScope adapter (made on first use); a missing key is a ConfigError."""
        if not self.api_key:
            raise ConfigError("api_key missing: set DASHSCOPE_API_KEY (IMAGE_PROVIDER=aliyun)")
        if self._provider is None:
            self._transport = Transport()
            interval = max(self.poll_interval, 0.001)
            polling = Polling(
                interval=interval,
                max_interval=max(5.0, interval),
                deadline=DEFAULT_TIMEOUT_S,
                error_wait=min(1.0, interval * 4),
                max_error_wait=max(10.0, interval),
            )
            if not self.fallback:
                self._provider = DashScopeProvider(
                    self.base_url,
                    self.api_key,
                    name=self.name,
                    model=self.model,
                    polling=polling,
                    transport=self._transport,
                )
                return self._provider
            aliyun = ProviderConfig(
                name=self.name,
                kind="dashscope",
                base_url=self.base_url,
                api_key=Secret(self.api_key),
                key_source="DASHSCOPE_API_KEY",
                model=self.model,
                polling=polling,
                source="daily_news",
                fallback=tuple(f.name for f in self.fallback),
            )
            self._registry = Registry(
                [aliyun, *self.fallback], default=self.name, transport=self._transport
            )
            self._provider = self._registry.dashscope(self.name)
        return self._provider

    def model_of(self, provider: str | None) -> str:
        """The image model of the provider that served an image (this client's own model
        when it was DashScope)."""
        if provider is None or provider == self.name or self._registry is None:
            return self.model
        adapter = self._registry.get(provider)
        return getattr(adapter, "image_model", None) or adapter.model or self.model

    async def aclose(self) -> None:
        """Close the HTTP connections (the client can be used again afterwards)."""
        if self._transport is not None:
            await self._transport.aclose()
        self._provider = self._transport = self._registry = None


def fallback_from_env(environ: Mapping[str, str] | None = None) -> tuple[ProviderConfig, ...]:
    """The providers that make images while DashScope is down, from the environment.

    ``DASHSCOPE_FALLBACK`` names them (``openai``, ``deepseek``…: providers regen declares
    from their ``{PREFIX}_API_KEY``); unset, OpenAI is the fallback when
    ``OPENAI_API_KEY`` is set (at ``OPENAI_BASE_URL``, model ``OPENAI_IMAGE_MODEL``,
    default ``dall-e-3``); otherwise there is none. A named fallback without a key, or
    one that makes no images, is a :class:`regen.ConfigError`.
    """
    env = os.environ if environ is None else environ
    declared = Registry.from_env(env)
    names: tuple[str, ...] = ()
    if "dashscope" in declared:
        names = declared.config("dashscope").fallback
    if not names and "openai" in declared and declared.config("openai").api_key:
        names = ("openai",)
    chain: list[ProviderConfig] = []
    for name in names:
        config = declared.config(name)
        if not config.api_key:
            raise ConfigError(
                f"DASHSCOPE_FALLBACK names {name!r}, which has no API key: set "
                f"{config.key_source or 'its key'}"
            )
        if "image" not in (config.capabilities or ()):
            raise ConfigError(
                f"DASHSCOPE_FALLBACK names {name!r}, which makes no images "
                f"(it offers {', '.join(sorted(config.capabilities or ()))})"
            )
        chain.append(config)
    return tuple(chain)


@dataclass(frozen=True, slots=True)
class GeneratedPicture:
    """What one successful attempt produced: the checked image and where it came from
    (``provider`` and ``model``: who made it, DashScope or a fallback while it was down)."""

    image: Image
    url: str | None = None
    task_id: str | None = None
    actual_prompt: str | None = None
    elapsed: float = 0.0
    provider: str | None = None
    model: str | None = None

    @property
    def data(self) -> bytes:
        """The image's bytes."""
        return self.image.data


async def generate_aliyun_image(
    prompt: str, *, client: AliyunImageClient, size: str | None = None, model: str | None = None
) -> GeneratedPicture:
    """ONE attempt: submit a DashScope image task, poll it to success, download the image.

    With ``client.fallback``, an attempt that meets DashScope down (its breaker open, or
    an outage answer) asks the fallback for the image at once, within the same attempt.

    No retries here (that is :func:`generate_image_with_retry`'s job). Generation is
    bounded by the ``generate`` phase of the current policy (``ALIYUN_IMAGE_TIMEOUT_S``),
    the download by its ``download`` phase; either running out raises
    :class:`regen.AttemptTimeout`. A reply without an image URL is
    :class:`regen.providers.BadResponse`; a download that is not an image (an HTML/XML
    error page, a cut-short file) is :class:`regen.providers.BadContent`.
    """
    provider = client.provider()
    started = time.monotonic()
    limit = phase_timeout("generate", DEFAULT_TIMEOUT_S)
    # The task is polled for as long as the generation may take, so a longer
    # ALIYUN_IMAGE_TIMEOUT_S is a longer wait, not the adapter's own poll deadline.
    polling = provider.polling if limit is None else _polled_for(provider.polling, limit)
    fetched: list[Image] = []

    async def made_and_fetched(
        generate: Callable[[], Awaitable[list[GeneratedImage]]],
    ) -> list[GeneratedImage]:
        # One provider's part of the attempt, inside its guard: an image its host cannot
        # deliver (an HTML page, a cut file) counts against that provider as a failed
        # generation does, and while it is down the fallback makes the image instead.
        try:
            async with asyncio.timeout(limit):
                images = await generate()
        except TimeoutError as exc:
            if isinstance(exc, AttemptTimeout) or limit is None:
                raise
            raise AttemptTimeout(limit, phase="generate") from None
        first = images[0]
        if first.data is not None:
            fetched[:] = [image_from_bytes(first.data)]
        elif first.url is None:
            served = first.provider or provider.name
            raise BadResponse(
                f"{served}: succeeded without an image url", "missing_fields", provider=served
            )
        else:
            fetched[:] = [await download_image(first.url, transport=provider.transport)]
        return images

    generated = await provider.generate_once(
        prompt,
        n=1,
        polling=polling,
        size=size or client.size,
        model=model or client.model,
        wrap=made_and_fetched,
    )
    first = generated[0]
    served = first.provider or provider.name
    return GeneratedPicture(
        image=fetched[0],
        url=first.url,
        task_id=first.task_id,
        actual_prompt=first.revised_prompt,
        elapsed=time.monotonic() - started,
        provider=served,
        model=client.model_of(served) if served != provider.name else model or client.model,
    )


def _polled_for(polling: Polling, seconds: float) -> Polling:
    # A deadline past the generation's own limit: that limit, not the poller, ends a slow task.
    return dataclasses.replace(polling, deadline=max(seconds, 0.001) + polling.interval)


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """A picture and the attempts it took (``attempts`` counts the successful one too)."""

    picture: Any
    attempts: int
    history: tuple[Attempt, ...] = ()

    @property
    def retried(self) -> bool:
        """Whether any attempt failed before this one."""
        return bool(self.history)

    @property
    def errors(self) -> list[str]:
        """The last three failed attempts' errors, oldest first (``image_generate.errors``)."""
        return [f"{a.kind}: {a.message}" for a in self.history[-GiveUp.keep_errors :]]

    def summary(self) -> dict[str, Any]:
        """``platform.image_generate`` for a post whose image succeeded after retries."""
        return {
            "attempts": self.attempts,
            "errors": self.errors,
            "give_up": False,
            "history": [a.to_dict() for a in self.history],
        }


class ImageGenerationAbandoned(GiveUp):
    """An image was given up on: its attempts ran out, or its failure was not worth a retry.

    ``attempts`` holds every failed attempt, ``errors`` the last three (``"kind: message"``),
    ``prompt`` what was asked. Being a :class:`regen.GiveUp`, it is never retried again by an
    outer policy (regen classifies it as the last attempt's kind, reason ``gave_up``), so a
    map step records the item as given up at once.
    """

    def __init__(
        self,
        operation: str | None,
        attempts: tuple[Attempt, ...] | list[Attempt],
        prompt: str | None = None,
    ) -> None:
        super().__init__(operation, attempts)
        self.prompt = prompt

    def summary(self) -> dict[str, Any]:
        """``platform.image_generate`` of the failed post (the seed's §4.2)."""
        return {
            "attempts": len(self.attempts),
            "errors": self.errors,
            "give_up": True,
            "kind": str(self.kind) if self.kind else None,
            "history": [a.to_dict() for a in self.attempts],
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.attempts, self.prompt))


Hook = Callable[[Attempt], Any]


async def generate_image_with_retry(
    prompt: str,
    *,
    client: AliyunImageClient,
    policy: Policy | None = None,
    on_retry: Hook | None = None,
    on_give_up: Hook | None = None,
    size: str | None = None,
    model: str | None = None,
) -> ImageOutcome:
    """:func:`generate_aliyun_image` retried by error type under the ``ALIYUN_IMAGE_*`` policy.

    Returns the picture with the number of attempts it took; raises
    :class:`ImageGenerationAbandoned` when it gives up. ``on_retry`` / ``on_give_up``
    receive each failed :class:`regen.Attempt` (for the console and the post's log).
    """
    chosen = policy or image_policy()
    history: list[Attempt] = []

    async def retry_hook(attempt: Attempt) -> None:
        history.append(attempt)
        await _call_hook(on_retry, attempt)

    async def give_up_hook(attempt: Attempt) -> None:
        await _call_hook(on_give_up, attempt)

    async def attempt() -> Any:
        # Looked up at each call, so tests can monkeypatch the one-attempt function.
        result = generate_aliyun_image(prompt, client=client, size=size, model=model)
        return await result if inspect.isawaitable(result) else result

    wrapped = chosen.replace(
        on_retry=retry_hook,
        on_give_up=give_up_hook,
        operation=chosen.operation or OPERATION,
        reraise=False,
    )
    try:
        picture = await wrapped.acall(attempt)
    except ImageGenerationAbandoned:
        raise
    except GiveUp as exc:
        raise ImageGenerationAbandoned(exc.operation, exc.attempts, prompt) from exc.__cause__
    return ImageOutcome(picture, len(history) + 1, tuple(history))


async def _call_hook(hook: Hook | None, attempt: Attempt) -> None:
    if hook is None:
        return
    outcome = hook(attempt)
    if isinstance(outcome, Awaitable):
        await outcome
