"""The DashScope adapter: asynchronous text-to-image tasks (wanx / wan2.x).

Submit with ``X-DashScope-Async: enable``, poll ``GET /tasks/{id}`` until a final status,
read ``output.results[].url``. One submit plus its polling is one attempt of the policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from regen.providers._base import BaseProvider, GeneratedImage, ImageWrap, run_sync
from regen.providers._errors import BadResponse, TaskFailed
from regen.providers._secret import Secret
from regen.providers._tasks import Polling, TaskState, poll_until_done
from regen.providers._transport import Response, Transport
from regen.retry import Failure, Kind, Policy, kind_of_code


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One poll of a DashScope task: its status, results, and error code if it failed."""

    task_id: str
    status: str
    results: tuple[Mapping[str, Any], ...] = ()
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    output: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def state(self) -> TaskState | None:
        """The status as a :class:`TaskState` (``None`` when the word is not known)."""
        return TaskState.parse(self.status)


class DashScopeProvider(BaseProvider):
    """DashScope's native API at ``base_url`` (``…/api/v1``), for asynchronous image tasks.

    ``polling`` sets the poll interval and deadline (see :class:`Polling`); the policy
    decides how many tasks may be submitted in all. Failed tasks are judged by their
    ``output.code``: ``InternalError`` is retried, ``DataInspectionFailed`` is not.
    """

    kind: ClassVar[str] = "dashscope"
    capabilities: ClassVar[frozenset[str]] = frozenset({"image"})
    default_base_url: ClassVar[str] = "https://dashscope.aliyuncs.com/api/v1"
    default_policy: ClassVar[Policy] = Policy(attempts=3, timeout=300.0, wait=2.0, max_wait=30.0)
    submit_path: ClassVar[str] = "services/aigc/text2image/image-synthesis"
    #: A task id no one was given: the answer (``UNKNOWN``, or a 400/404 for the id) proves
    #: the service and the key without starting any work.
    probe_path: ClassVar[str] = "tasks/regen-health-probe"

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        *,
        name: str | None = None,
        model: str | None = "wanx2.1-t2i-turbo",
        policy: Policy | None = None,
        polling: Polling | None = None,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            name=name,
            model=model,
            policy=policy,
            transport=transport,
            headers=headers,
        )
        self.polling = polling or Polling(interval=1.0, max_interval=5.0, deadline=240.0)

    # --- one task -----------------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = "1024*1024",
        model: str | None = None,
        negative_prompt: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Submit an image task (no retries); return its task id."""
        task_input: dict[str, Any] = {"prompt": prompt}
        if negative_prompt is not None:
            task_input["negative_prompt"] = negative_prompt
        params: dict[str, Any] = {"n": n}
        if size is not None:
            params["size"] = size
        params.update(parameters or {})
        body = {"model": model or self.model, "input": task_input, "parameters": params}
        response = await self._send(
            "POST",
            self.submit_path,
            json_body=body,
            headers={"X-DashScope-Async": "enable", **(headers or {})},
        )
        payload = self._native_json(
            response.status, response.headers, response.body, "task submission"
        )
        output = payload.get("output")
        task_id = output.get("task_id") if isinstance(output, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise self.missing("task submission", "output.task_id", response.status)
        return task_id

    async def fetch(self, task_id: str, *, headers: Mapping[str, str] | None = None) -> TaskStatus:
        """Poll a task once (no retries)."""
        response = await self._send("GET", f"tasks/{task_id}", headers=headers)
        payload = self._native_json(response.status, response.headers, response.body, "task poll")
        output = payload.get("output")
        if not isinstance(output, Mapping):
            raise self.missing("task poll", "output", response.status)
        status = output.get("task_status")
        if not isinstance(status, str) or not status:
            raise self.missing("task poll", "output.task_status", response.status)
        results = output.get("results")
        code, message = output.get("code"), output.get("message")
        return TaskStatus(
            task_id=str(output.get("task_id") or task_id),
            status=status,
            results=tuple(r for r in results if isinstance(r, Mapping))
            if isinstance(results, list)
            else (),
            code=str(code) if code else None,
            message=str(message) if message else None,
            request_id=payload.get("request_id"),
            output=output,
        )

    async def wait(
        self,
        task_id: str,
        *,
        polling: Polling | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TaskStatus:
        """Poll a task until it succeeds (one attempt: see :func:`poll_until_done`)."""
        return await poll_until_done(
            lambda: self.fetch(task_id, headers=headers),
            lambda status: status.status,
            polling=polling or self.polling,
            task_id=task_id,
            failed=self._task_failed,
            provider=self.name,
        )

    def _task_failed(self, status: TaskStatus, state: TaskState) -> TaskFailed:
        kind = kind_of_code(status.code) or Kind.SERVER_ERROR
        failure = Failure.of(kind, status.code or f"task_{state.lower()}")
        detail = f"{status.code}: {status.message}" if status.code else str(state)
        return TaskFailed(
            self._scrub(f"{self.name}: task {status.task_id} {state}: {detail}"),
            failure,
            task_id=status.task_id,
            code=status.code,
            provider=self.name,
        )

    def _judge_probe(self, response: Response) -> None:
        if response.status in (400, 404):
            error = self.error_from(response.status, response.headers, response.body)
            if error.kind is Kind.BAD_REQUEST:
                return  # the id was refused, after the key was accepted
            raise error
        self._native_json(response.status, response.headers, response.body, "probe")

    def _native_json(
        self, status: int, headers: Mapping[str, str], body: bytes, what: str
    ) -> dict[str, Any]:
        payload = self.json_of(Response(status, headers, body, self.base_url), what)
        code = payload.get("code")
        if code and "output" not in payload:
            # DashScope's flat error body on a 200 (seen behind some gateways).
            raise self.embedded_error({"error": payload}, status)
        return payload

    # --- images -------------------------------------------------------------------------------

    async def _images_attempt(
        self,
        prompt: str,
        n: int,
        polling: Polling | None,
        headers: Mapping[str, str] | None,
        poll_headers: Mapping[str, str] | None,
        params: Mapping[str, Any],
    ) -> tuple[list[GeneratedImage], list[str]]:
        task_id = await self.submit(prompt, n=n, headers=headers, **params)
        status = await self.wait(task_id, polling=polling, headers=poll_headers)
        images: list[GeneratedImage] = []
        problems: list[str] = []
        for result in status.results:
            url = result.get("url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                images.append(
                    GeneratedImage(
                        url=url,
                        revised_prompt=result.get("actual_prompt"),
                        provider=self.name,
                        task_id=task_id,
                    )
                )
            else:
                problems.append(str(result.get("code") or "no url"))
        if not status.results:
            raise self.missing(f"task {task_id}", "output.results")
        return images, problems

    async def generate_once(
        self,
        prompt: str,
        *,
        n: int = 1,
        polling: Polling | None = None,
        headers: Mapping[str, str] | None = None,
        poll_headers: Mapping[str, str] | None = None,
        fallback: bool = True,
        wrap: ImageWrap | None = None,
        **params: Any,
    ) -> list[GeneratedImage]:
        """Submit a task and poll it to success (one attempt): its ``n`` images, from this
        provider or, while it is down, from its fallbacks (``fallback=False``: this provider
        only; a fallback gets the prompt, ``n`` and ``size``).
        ``wrap``: each provider's attempt runs as ``wrap(generate)`` inside its guard
        (:class:`ImagePipeline` downloads the image there, so an image that cannot be had
        counts against the provider that made it and hands the call to the next one).

        ``params``: ``size`` (``"1024*1024"``), ``model``, ``negative_prompt``,
        ``parameters`` (other ``parameters`` fields). ``headers`` go with the submission
        only, ``poll_headers`` with the polls only (the adapter's own ``headers`` go with
        every request).
        """

        async def here() -> list[GeneratedImage]:
            images, problems = await self._images_attempt(
                prompt, n, polling, headers, poll_headers, params
            )
            if problems or len(images) < n:
                raise self._partial(len(images), n, problems)
            return _indexed(images)

        size = params.get("size", "1024*1024")
        return await self._chained(
            "image",
            params.get("model") or self.model,
            here,
            lambda other: lambda: other.fallback_images(prompt, n=n, size=size),
            allowed=fallback,
            wrap=wrap,
        )

    async def fallback_images(
        self, prompt: str, *, n: int = 1, size: str | None = None, response_format: str = "url"
    ) -> list[GeneratedImage]:
        """One attempt at ``n`` images for another provider's call (``1024x1024`` sizes
        are written ``1024*1024`` here). DashScope answers with URLs only, whatever
        ``response_format`` asks: the caller downloads them."""
        size = size.replace("x", "*") if size else "1024*1024"
        images, problems = await self._images_attempt(prompt, n, None, None, None, {"size": size})
        if problems or len(images) < n:
            raise self._partial(len(images), n, problems)
        return _indexed(images)

    def _partial(self, got: int, wanted: int, problems: list[str]) -> BadResponse:
        return BadResponse(
            f"{self.name}: {wanted - got} of {wanted} results carried no url "
            f"({', '.join(problems) or 'missing'})",
            "partial_results",
            provider=self.name,
        )

    async def generate_images(
        self,
        prompt: str,
        *,
        n: int = 1,
        policy: Policy | None = None,
        polling: Polling | None = None,
        headers: Mapping[str, str] | None = None,
        poll_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> list[GeneratedImage]:
        """``n`` images, retried under the policy.

        When some of a task's results carry no URL, the next attempt asks only for the
        missing ones, keeping the images already made.
        """
        kept: list[GeneratedImage] = []
        chosen = self._policy(policy, "images")
        size = params.get("size", "1024*1024")

        async def here() -> list[GeneratedImage]:
            missing = n - len(kept)
            images, problems = await self._images_attempt(
                prompt, missing, polling, headers, poll_headers, params
            )
            kept.extend(images[:missing])
            if len(kept) < n:
                raise self._partial(len(kept), n, problems)
            return _indexed(kept)

        def elsewhere(other: BaseProvider) -> Callable[[], Awaitable[list[GeneratedImage]]]:
            async def attempt() -> list[GeneratedImage]:
                kept.extend(await other.fallback_images(prompt, n=n - len(kept), size=size))
                return _indexed(kept)

            return attempt

        async def attempt() -> list[GeneratedImage]:
            return await self._chained(
                "image",
                params.get("model") or self.model,
                here,
                elsewhere,
                allowed=self.fallback_allowed(chosen),
            )

        return await chosen.acall(attempt)

    async def generate_image(
        self, prompt: str, *, policy: Policy | None = None, **params: Any
    ) -> GeneratedImage:
        """One image, retried under the policy."""
        images = await self.generate_images(prompt, n=1, policy=policy, **params)
        return images[0]

    # --- sync wrappers -----------------------------------------------------------------------

    def generate_images_sync(self, prompt: str, **kwargs: Any) -> list[GeneratedImage]:
        """:meth:`generate_images` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.generate_images(prompt, **kwargs))

    def generate_image_sync(self, prompt: str, **kwargs: Any) -> GeneratedImage:
        """:meth:`generate_image` for synchronous code (no event loop running)."""
        return run_sync(self.transport, lambda: self.generate_image(prompt, **kwargs))


def _indexed(images: list[GeneratedImage]) -> list[GeneratedImage]:
    return [replace(image, index=index) for index, image in enumerate(images)]
