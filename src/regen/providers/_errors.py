"""Errors the provider adapters raise, each carrying its classified :class:`Failure`.

::

    RegenError                       (regen.foundation)
    └── ProviderError                anything an adapter learned went wrong
        ├── TransportError           the HTTP exchange itself failed: reset, refused, timed out
        ├── APIError                 the provider answered with an error (status ≥ 400, or an
        │                            error object in a 200 body or a stream)
        ├── BadResponse              a 200 whose body is not what the protocol promises
        │                            (HTML from a proxy, ``choices: []``, no image URL, a
        │                            stream that ended without ``[DONE]``)
        ├── BadContent               a download that is not the image it claims to be
        ├── Unavailable              refused without a request: the provider's circuit
        │                            breaker is open (kind ``unavailable``)
        ├── Throttled                held back without a request: the provider's shared rate
        │                            limit has no token within the attempt's time left
        └── TaskError                an asynchronous task did not succeed
            ├── TaskFailed           it ended ``FAILED``/``CANCELED``; kind by its code
            ├── TaskUnknown          the provider no longer knows it (``UNKNOWN``)
            └── TaskTimeout          it was still pending at the poll deadline

The retry core reads ``error.failure`` (kind, verdict, reason, status, ``Retry-After``), so
every one of these is retried or not by what it is, not by its class.
"""

from __future__ import annotations

from typing import Any

from regen.foundation import RegenError, mask_secrets
from regen.retry import Failure, Kind


class ProviderError(RegenError):
    """Something an adapter learned went wrong; ``failure`` says what kind and whether to retry."""

    def __init__(self, message: str, failure: Failure, *, provider: str | None = None) -> None:
        super().__init__(mask_secrets(message))
        self.failure = failure
        self.provider = provider

    @property
    def kind(self) -> Kind:
        """The taxonomy kind of this failure."""
        return self.failure.kind

    @property
    def retry(self) -> bool:
        """Whether the failure is worth another attempt."""
        return self.failure.retry

    @property
    def status(self) -> int | None:
        """The HTTP status that carried the failure, if any."""
        return self.failure.status

    @property
    def reason(self) -> str:
        """A short machine-readable code: ``"insufficient_quota"``, ``"html_200"``, …"""
        return self.failure.reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__))


class TransportError(ProviderError):
    """The HTTP exchange failed before a complete response arrived."""


class APIError(ProviderError):
    """The provider answered with an error; ``code`` is its error code when it gave one."""

    def __init__(
        self,
        message: str,
        failure: Failure,
        *,
        provider: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, failure, provider=provider)
        self.code = code
        self.request_id = request_id


class BadResponse(ProviderError):
    """A successful status whose body breaks the protocol (kind ``bad_response``)."""

    def __init__(
        self, message: str, reason: str, *, provider: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(
            message, Failure.of(Kind.BAD_RESPONSE, reason, status=status), provider=provider
        )


class BadContent(ProviderError):
    """Downloaded bytes that are not a usable image (kind ``bad_content``).

    Retried by default: in an image pipeline the next attempt generates a new image, which
    is the only cure for an expired URL or a CDN serving an error page. ``retry=False`` for
    failures a new image will not fix (a body over the size cap).
    """

    def __init__(
        self,
        message: str,
        reason: str,
        *,
        status: int | None = None,
        retry: bool = True,
        provider: str | None = None,
    ) -> None:
        failure = Failure(Kind.BAD_CONTENT, retry, reason, status)
        super().__init__(message, failure, provider=provider)


class Unavailable(ProviderError):
    """Refused at once, without a request: the provider's circuit breaker is open.

    ``retry_after`` (also on ``failure``) is the number of seconds until the breaker lets
    calls through again; ``sent`` is ``False``, so even a non-idempotent call may try again.
    """

    def __init__(self, message: str, retry_after: float, *, provider: str | None = None) -> None:
        failure = Failure.of(Kind.UNAVAILABLE, "breaker_open", retry_after=retry_after, sent=False)
        super().__init__(message, failure, provider=provider)

    @property
    def retry_after(self) -> float:
        """Seconds until the breaker lets calls through again."""
        return self.failure.retry_after or 0.0


class Throttled(ProviderError):
    """Held back without a request: the shared rate limit (or this process's adaptive
    concurrency) has no room within the attempt's time left (kind ``rate_limited``)."""

    def __init__(self, message: str, retry_after: float, *, provider: str | None = None) -> None:
        failure = Failure.of(
            Kind.RATE_LIMITED, "client_rate_limit", retry_after=retry_after, sent=False
        )
        super().__init__(message, failure, provider=provider)


class TaskError(ProviderError):
    """An asynchronous task did not succeed; ``task_id`` names it."""

    def __init__(
        self,
        message: str,
        failure: Failure,
        *,
        task_id: str | None = None,
        code: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, failure, provider=provider)
        self.task_id = task_id
        self.code = code


class TaskFailed(TaskError):
    """The task ended ``FAILED`` or ``CANCELED``; its kind follows its error code."""


class TaskUnknown(TaskError):
    """The provider does not know the task (expired or invalid id): submit again."""


class TaskTimeout(TaskError):
    """The task was still pending when the poll deadline passed: submit again."""


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
