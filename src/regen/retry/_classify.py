"""The failure taxonomy: which failures of an AI API are worth another attempt.

``classify`` turns an exception into a :class:`Failure` (a kind and a verdict).
Third-party errors (httpx, aiohttp, requests, the ``openai`` SDK) are recognised by their
class names and attributes, so none of those libraries is a dependency of the core.
Exceptions nobody recognises are bugs, not weather: kind ``unknown``, no retry.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from regen.foundation import ConfigError
from regen.retry._errors import AttemptTimeout, GiveUp, Permanent, Retryable
from regen.retry._kinds import Failure, Kind
from regen.retry._retry_after import parse_retry_after

Classifier = Callable[[BaseException], "Failure | None"]

# Error codes found in OpenAI-style ``error.code``/``error.type`` and DashScope-style
# ``code`` bodies, mapped to the kind they mean. Checked before the HTTP status, because
# a 429 ``insufficient_quota`` is not a rate limit and a 400 moderation block is not a typo.
_CODES: dict[str, Kind] = {
    "insufficient_quota": Kind.QUOTA_EXHAUSTED,
    "billing_hard_limit_reached": Kind.QUOTA_EXHAUSTED,
    "Arrearage": Kind.QUOTA_EXHAUSTED,
    "content_policy_violation": Kind.CONTENT_POLICY,
    "moderation_blocked": Kind.CONTENT_POLICY,
    "content_filter": Kind.CONTENT_POLICY,
    "DataInspectionFailed": Kind.CONTENT_POLICY,
    "DataInspection": Kind.CONTENT_POLICY,
    "invalid_api_key": Kind.AUTH,
    "InvalidApiKey": Kind.AUTH,
    "AccessDenied": Kind.AUTH,
    "AccessDenied.Unpurchased": Kind.AUTH,
    "model_not_found": Kind.BAD_REQUEST,
    "InvalidParameter": Kind.BAD_REQUEST,
    "invalid_request_error": Kind.BAD_REQUEST,
    "rate_limit_exceeded": Kind.RATE_LIMITED,
    "Throttling": Kind.RATE_LIMITED,
    "Throttling.RateQuota": Kind.RATE_LIMITED,
    "Throttling.AllocationQuota": Kind.RATE_LIMITED,
    "Throttling.User": Kind.RATE_LIMITED,
    "InternalError": Kind.SERVER_ERROR,
    "InternalError.Algo": Kind.SERVER_ERROR,
    "server_error": Kind.SERVER_ERROR,
    "ServiceUnavailable": Kind.SERVER_ERROR,
}

_TRANSIENT_ERRNOS: dict[int, tuple[Kind, str, bool]] = {
    errno.ECONNRESET: (Kind.CONNECTION, "ECONNRESET", True),
    errno.ECONNABORTED: (Kind.CONNECTION, "ECONNABORTED", True),
    errno.EPIPE: (Kind.CONNECTION, "EPIPE", True),
    errno.ETIMEDOUT: (Kind.TIMEOUT, "ETIMEDOUT", True),
    errno.ECONNREFUSED: (Kind.CONNECTION, "ECONNREFUSED", False),
    errno.EHOSTUNREACH: (Kind.CONNECTION, "EHOSTUNREACH", False),
    errno.ENETUNREACH: (Kind.CONNECTION, "ENETUNREACH", False),
}


def kind_of_code(code: str | None) -> Kind | None:
    """The kind an API error code means (``"insufficient_quota"`` → quota), if known."""
    if not code:
        return None
    kind = _CODES.get(code)
    if kind is None and code.startswith("Throttling"):
        return Kind.RATE_LIMITED
    return kind


def _kind_of(code: str | None, status: int) -> Kind:
    """The kind of an error reply: its code's, unless that only says "bad request".

    ``invalid_request_error`` is OpenAI's catch-all type; DeepSeek sends it with 402
    (insufficient balance) and OpenAI with 401 (no key), where the status says more.
    """
    by_status = kind_of_status(status)
    by_code = kind_of_code(code)
    if by_code is None or (by_code is Kind.BAD_REQUEST and by_status is not Kind.BAD_REQUEST):
        return by_status
    return by_code


def kind_of_status(status: int) -> Kind:
    """The kind an HTTP error status means when the body says nothing more specific."""
    if status in (401, 403):
        return Kind.AUTH
    if status == 402:
        return Kind.QUOTA_EXHAUSTED
    if status in (408, 504):
        return Kind.TIMEOUT
    if status == 429:
        return Kind.RATE_LIMITED
    if status == 409 or status >= 500:
        # 409 is OpenAI's lock-timeout conflict, retried by its own SDK.
        return Kind.SERVER_ERROR
    return Kind.BAD_REQUEST


def body_code(body: Any) -> str | None:
    """The error code of an OpenAI-style ``{"error": {...}}`` or DashScope-style body."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(body, Mapping):
        return None
    inner = body.get("error")
    if isinstance(inner, Mapping):
        body = inner
    for key in ("code", "type"):
        value = body.get(key)
        if isinstance(value, str) and kind_of_code(value) is not None:
            return value
    code = body.get("code")
    return code if isinstance(code, str) and code else None


def classify_response(
    status: int, headers: Any = None, body: Any = None, *, now: float | None = None
) -> Failure | None:
    """Classify an HTTP response by status, error code and headers; ``None`` for success."""
    if status < 400:
        return None
    return _reply_failure(status, headers, body_code(body), now)


def _reply_failure(status: int, headers: Any, code: str | None, now: float | None) -> Failure:
    kind = _kind_of(code, status)
    retry_after = parse_retry_after(headers, time.time() if now is None else now)
    return Failure.of(kind, code or f"http_{status}", status=status, retry_after=retry_after)


def _response_body(response: Any) -> bytes | str | None:
    """The body of an httpx or requests response object if it is already in memory.

    Never reads from the network: a streamed httpx response that was not read raises
    ``ResponseNotRead`` (a ``RuntimeError``), and requests' ``.content`` would read a
    ``stream=True`` body from the socket, so its ``_content`` (``False`` until the body has
    been read) is checked first.
    """
    if response is None or getattr(response, "_content", None) is False:
        return None
    try:
        content = response.content
    except RuntimeError:
        return None
    return content if isinstance(content, (bytes, str)) else None


def _status_failure(
    exc: BaseException, status: int, response: Any, body: Any, module: str
) -> Failure:
    headers = getattr(response, "headers", None) if response is not None else None
    if headers is None:
        headers = getattr(exc, "headers", None)
    # aiohttp's ``code`` is a deprecated alias of ``status``, not an API error code.
    code = None if module == "aiohttp" else getattr(exc, "code", None)
    if not isinstance(code, str) or kind_of_code(code) is None:
        if body is None and module != "aiohttp":
            body = _response_body(response)
        code = body_code(body) or (code if isinstance(code, str) else None)
    return _reply_failure(status, headers, code, None)


# Third-party transport errors by class name: (kind, reached the server?).
_TRANSPORT_NAMES: dict[str, tuple[Kind, bool]] = {
    # httpx
    "ConnectTimeout": (Kind.TIMEOUT, False),
    "PoolTimeout": (Kind.TIMEOUT, False),
    "ReadTimeout": (Kind.TIMEOUT, True),
    "WriteTimeout": (Kind.TIMEOUT, True),
    "TimeoutException": (Kind.TIMEOUT, True),
    "ConnectError": (Kind.CONNECTION, False),
    "ReadError": (Kind.CONNECTION, True),
    "WriteError": (Kind.CONNECTION, True),
    "RemoteProtocolError": (Kind.CONNECTION, True),
    "NetworkError": (Kind.CONNECTION, True),
    "DecodingError": (Kind.BAD_RESPONSE, True),
    # aiohttp
    "ConnectionTimeoutError": (Kind.TIMEOUT, False),
    "SocketTimeoutError": (Kind.TIMEOUT, True),
    "ServerTimeoutError": (Kind.TIMEOUT, True),
    "ClientConnectorDNSError": (Kind.CONNECTION, False),
    "ClientConnectorError": (Kind.CONNECTION, False),
    "ServerDisconnectedError": (Kind.CONNECTION, True),
    "ClientPayloadError": (Kind.CONNECTION, True),
    "ClientOSError": (Kind.CONNECTION, True),
    "ContentTypeError": (Kind.BAD_RESPONSE, True),
    # requests / urllib3 (the dashscope SDK's transport)
    "ConnectionError": (Kind.CONNECTION, True),
    "ChunkedEncodingError": (Kind.CONNECTION, True),
    "ProtocolError": (Kind.CONNECTION, True),
    "Timeout": (Kind.TIMEOUT, True),
    "NewConnectionError": (Kind.CONNECTION, False),
    "NameResolutionError": (Kind.CONNECTION, False),
    # openai SDK (checked after its status errors)
    "APITimeoutError": (Kind.TIMEOUT, True),
    "APIConnectionError": (Kind.CONNECTION, True),
    "APIResponseValidationError": (Kind.BAD_RESPONSE, True),
}

_THIRD_PARTY = (
    "httpx",
    "httpx2",
    "httpcore",
    "aiohttp",
    "requests",
    "urllib3",
    "openai",
    "dashscope",
)


def _third_party(exc: BaseException) -> Failure | None:
    for cls in type(exc).__mro__:
        module = cls.__module__.partition(".")[0]
        if module not in _THIRD_PARTY:
            continue
        status = getattr(exc, "status_code", None)
        if status is None and module == "aiohttp":
            status = getattr(exc, "status", None)
        response = getattr(exc, "response", None)
        if status is None and response is not None and module in ("httpx", "httpx2"):
            status = getattr(response, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return _status_failure(exc, status, response, getattr(exc, "body", None), module)
        known = _TRANSPORT_NAMES.get(cls.__name__)
        if known is not None:
            kind, sent = known
            if module == "requests" and cls.__name__ == "ConnectionError":
                sent = not _is_connect_failure(exc)
            return Failure.of(kind, cls.__name__, sent=sent)
        if module == "openai" and cls.__name__ == "APIError":
            # A mid-stream ``data: {"error": …}`` event: classify what it carries.
            code = getattr(exc, "code", None) or body_code(getattr(exc, "body", None))
            kind = kind_of_code(code if isinstance(code, str) else None) or Kind.SERVER_ERROR
            return Failure.of(kind, str(code or "stream_error"))
    return None


def _is_connect_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError"):
            return True
        if isinstance(current, (ConnectionRefusedError, socket.gaierror)):
            return True
        current = (
            current.__cause__
            or current.__context__
            or (
                current.args[0]
                if current.args and isinstance(current.args[0], BaseException)
                else None
            )
        )
    return False


def _marker_kind(kind: Kind | str | None, default: Kind) -> Kind:
    if kind is None:
        return default
    try:
        return Kind(kind)
    except ValueError:
        return default


def classify(exc: BaseException) -> Failure:
    """Classify an exception into a kind and a verdict (retry or fail now).

    An exception that carries a :class:`Failure` as its ``failure`` attribute is that
    failure: adapters that read a response attach what they learned (kind, reason, status,
    ``Retry-After``) instead of collapsing it into a marker. A :class:`GiveUp` from an
    inner policy keeps its kind and is not retried (reason ``gave_up``).
    """
    carried = getattr(exc, "failure", None)
    if isinstance(carried, Failure):
        return carried
    if isinstance(exc, GiveUp):
        # An inner policy already spent its attempts: keep what failed, never retry it again
        # (retries would multiply across the two layers).
        last = exc.last
        return Failure(exc.kind or Kind.UNKNOWN, False, "gave_up", last.status if last else None)
    if isinstance(exc, Retryable):
        kind = _marker_kind(exc.kind, Kind.UNKNOWN)
        return Failure(kind, True, "retryable", exc.status, exc.retry_after)
    if isinstance(exc, Permanent):
        return Failure(_marker_kind(exc.kind, Kind.UNKNOWN), False, "permanent", exc.status)
    if isinstance(exc, ConfigError):
        return Failure(Kind.CONFIG, False, "config")
    if isinstance(exc, AttemptTimeout):
        return Failure.of(Kind.TIMEOUT, exc.phase or "attempt_timeout")
    found = _third_party(exc)
    if found is not None:
        return found
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Failure.of(Kind.TIMEOUT, "ETIMEDOUT" if exc.errno == errno.ETIMEDOUT else "timeout")
    if isinstance(exc, socket.gaierror):
        return Failure.of(Kind.CONNECTION, "ENOTFOUND", sent=False)
    if isinstance(exc, ConnectionRefusedError):
        return Failure.of(Kind.CONNECTION, "ECONNREFUSED", sent=False)
    if isinstance(exc, ConnectionError):
        return Failure.of(Kind.CONNECTION, type(exc).__name__)
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        kind, reason, sent = _TRANSIENT_ERRNOS[exc.errno]
        return Failure.of(kind, reason, sent=sent)
    if isinstance(exc, json.JSONDecodeError):
        return Failure.of(Kind.BAD_RESPONSE, "invalid_json")
    status = _http_status(exc)
    if status is not None:
        return _status_failure(exc, status, getattr(exc, "response", None), None, "")
    return Failure(Kind.UNKNOWN, False, type(exc).__name__)


def _http_status(exc: BaseException) -> int | None:
    """The HTTP error status an application's own exception carries, if any.

    An error with ``status_code`` or ``status`` (or ``response.status_code``) between 400
    and 599 is an HTTP failure whatever its class, so it is classified by that status.
    """
    candidates = (
        getattr(exc, "status_code", None),
        getattr(exc, "status", None),
        getattr(getattr(exc, "response", None), "status_code", None),
    )
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
    return None


def by_message(rules: Mapping[str, Kind | str], *, retry: bool | None = None) -> Classifier:
    """A classifier that picks a kind when a rule's text appears in the error message.

    ``by_message({"超时": "timeout", "timeout": "timeout"})`` treats any error whose
    message mentions a timeout as one. The verdict follows the kind unless ``retry`` says.
    Matching ignores case. Returns ``None`` (no opinion) when nothing matches.
    """
    lowered = [(text.lower(), Kind(kind)) for text, kind in rules.items()]
    if not lowered:
        raise ConfigError("by_message() needs at least one rule")

    def classify_message(exc: BaseException) -> Failure | None:
        message = str(exc).lower()
        for text, kind in lowered:
            if text in message:
                verdict = Failure.of(kind, f"message:{text}")
                if retry is not None:
                    return Failure(kind, retry, verdict.reason)
                return verdict
        return None

    return classify_message


def chain(*classifiers: Classifier | None) -> Classifier:
    """The first opinion of several classifiers, falling back to :func:`classify`."""
    present = tuple(c for c in classifiers if c is not None)

    def classify_chain(exc: BaseException) -> Failure:
        for classifier in present:
            found = classifier(exc)
            if found is not None:
                return found
        return classify(exc)

    return classify_chain


def on_types(types: Iterable[type[BaseException]], kind: Kind | str = Kind.UNKNOWN) -> Classifier:
    """A classifier that retries the given exception types as ``kind``."""
    chosen = tuple(types)
    failure = Failure(Kind(kind), True, "on_types")

    def classify_types(exc: BaseException) -> Failure | None:
        return failure if isinstance(exc, chosen) else None

    return classify_types
