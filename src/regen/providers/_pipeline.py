"""Generate and download an image as ONE attempt, so a bad download makes a new image.

As a news app's image step needs it: generation bounded by the policy's ``timeout``
(``…_TIMEOUT_S``), the download by its ``download`` phase (``…_DOWNLOAD_TIMEOUT_S``), and
every failure of either — a timeout, a reply without a URL, an HTML page instead of an
image, an expired URL — counts toward the same ``attempts`` (``…_MAX_ATTEMPTS``).

With a registry's adapter the download belongs to the attempt of the provider that made
the image (``generate_once(wrap=…)``): an image its host cannot deliver counts against
that provider's breaker, and a fallback chain hands the item to the next provider at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from regen.providers._base import BaseProvider, GeneratedImage, run_sync
from regen.providers._download import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_MAX_BYTES,
    Image,
    download_image,
    image_from_bytes,
)
from regen.providers._transport import Transport
from regen.retry import Attempt, AttemptTimeout, Policy, phase_timeout


class ImageGenerator(Protocol):
    """What the pipeline needs of an adapter: one generation attempt, a policy, a transport."""

    name: str
    policy: Policy
    transport: Transport

    async def generate_once(self, prompt: str, **params: Any) -> list[GeneratedImage]:
        """Generate images in one attempt, without retrying."""
        ...


@dataclass(frozen=True, slots=True)
class ImageResult:
    """A generated, downloaded and checked image, with the attempts it took.

    ``provider`` is the provider that made the image: a fallback's name when the one
    asked was down. ``attempts`` is how many attempts ran (the successful one included);
    ``history`` the failed ones, oldest first (each with its kind, message and the wait
    that followed).
    """

    image: Image
    prompt: str
    provider: str
    attempts: int
    history: tuple[Attempt, ...] = ()
    revised_prompt: str | None = None
    elapsed: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        """The image's bytes."""
        return self.image.data

    @property
    def errors(self) -> list[str]:
        """The last three failed attempts' errors (an app's ``image_generate.errors``)."""
        return [f"{a.kind}: {a.message}" for a in self.history[-3:]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the image's metadata, not its bytes)."""
        return {
            "prompt": self.prompt,
            "provider": self.provider,
            "attempts": self.attempts,
            "errors": self.errors,
            "history": [a.to_dict() for a in self.history],
            "url": self.image.url,
            "revised_prompt": self.revised_prompt,
            "elapsed": round(self.elapsed, 3),
            **self.image.info.to_dict(),
        }


class ImagePipeline:
    """Generate with ``provider`` and download the result, retried as one unit.

    ``policy`` (default: the provider's) sets the attempts, the waits, the generation
    timeout (``timeout``) and the download timeout (``phases["download"]``, default 60 s);
    the attempt's own timeout is their sum. ``max_bytes`` caps the image's size.
    """

    def __init__(
        self,
        provider: ImageGenerator,
        *,
        policy: Policy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.provider = provider
        self.policy = policy or provider.policy
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"ImagePipeline({self.provider!r}, attempts={self.policy.attempts})"

    def _attempt_policy(self, history: list[Attempt]) -> Policy:
        policy = self.policy
        generate = policy.timeout
        download = policy.phases.get("download", DEFAULT_DOWNLOAD_TIMEOUT)
        total = None if generate is None else generate + download
        if total is not None and policy.deadline is not None:
            total = min(total, policy.deadline)
        phases = dict(policy.phases)
        phases.setdefault("download", download)
        if generate is not None:
            phases["generate"] = generate
        user_hook = policy.on_retry

        def on_retry(attempt: Attempt) -> Any:
            history.append(attempt)
            return None if user_hook is None else user_hook(attempt)

        return policy.replace(
            timeout=total,
            phases=phases,
            on_retry=on_retry,
            operation=policy.operation or f"{self.provider.name}.image",
        )

    async def run(
        self,
        prompt: str,
        *,
        headers: Mapping[str, str] | None = None,
        download_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ImageResult:
        """Generate one image for ``prompt`` and download it; raise :class:`GiveUp` on failure.

        ``params`` go to the provider's ``generate_once`` (``size``, ``model``, …);
        ``headers`` go with the generation request, ``download_headers`` with the download.
        """
        history: list[Attempt] = []
        started = time.monotonic()
        policy = self._attempt_policy(history)
        if isinstance(self.provider, BaseProvider):
            policy = self.provider.guard.counting(policy) if self.provider.guard else policy
            if not BaseProvider.fallback_allowed(policy):
                params = {**params, "fallback": False}

        fetched: list[Image] = []  # the image of the provider whose part succeeded

        async def one_provider(
            generate: Callable[[], Awaitable[list[GeneratedImage]]],
        ) -> list[GeneratedImage]:
            # One provider's part of the attempt, inside its guard: the image it cannot
            # deliver (a dead CDN, an HTML page) counts against it, and a chain hands the
            # attempt to its next provider.
            limit = phase_timeout("generate")
            try:
                async with asyncio.timeout(limit):
                    images = await generate()
            except TimeoutError as exc:
                if isinstance(exc, AttemptTimeout) or limit is None:
                    raise
                raise AttemptTimeout(limit, phase="generate") from None
            generated = images[0]
            if generated.data is not None:
                image = image_from_bytes(generated.data)
            else:
                assert generated.url is not None
                image = await download_image(
                    generated.url,
                    transport=self.provider.transport,
                    max_bytes=self.max_bytes,
                    headers=download_headers,
                )
            fetched[:] = [image]
            return images

        async def attempt() -> tuple[Image, str | None, str]:
            if isinstance(self.provider, BaseProvider):
                images = await self.provider.generate_once(
                    prompt, n=1, headers=headers, wrap=one_provider, **params
                )
            else:
                images = await one_provider(
                    lambda: self.provider.generate_once(prompt, n=1, headers=headers, **params)
                )
            generated = images[0]
            return fetched[0], generated.revised_prompt, generated.provider or self.provider.name

        image, revised, served = await policy.acall(attempt)
        return ImageResult(
            image=image,
            prompt=prompt,
            provider=served,
            attempts=len(history) + 1,
            history=tuple(history),
            revised_prompt=revised,
            elapsed=time.monotonic() - started,
            params=dict(params),
        )

    def run_sync(self, prompt: str, **kwargs: Any) -> ImageResult:
        """:meth:`run` for synchronous code (no event loop running)."""
        return run_sync(self.provider.transport, lambda: self.run(prompt, **kwargs))
