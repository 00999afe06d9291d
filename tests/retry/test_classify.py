"""Every row of the failure taxonomy, from the exceptions and responses users really see."""

from __future__ import annotations

import email.utils
import errno
import io
import json
import socket
from typing import Any

import aiohttp
import httpx
import openai
import pytest
import requests
import urllib3

from regen import AttemptTimeout, ConfigError, Kind, Permanent, Retryable, classify
from regen.retry import by_message, chain, classify_response, on_types, parse_retry_after

try:  # the openai SDK ships its own fork of httpx in recent releases
    import httpx2 as openai_httpx
except ImportError:  # pragma: no cover - older openai releases use httpx itself
    openai_httpx = httpx  # type: ignore[no-redef]


def _openai_error(
    cls: type[openai.APIStatusError], status: int, body: Any, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    request = openai_httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = openai_httpx.Response(status, headers=headers or {}, request=request)
    return cls("error", response=response, body=body)


def _verdict(exc: BaseException) -> tuple[Kind, bool]:
    failure = classify(exc)
    return failure.kind, failure.retry


@pytest.mark.parametrize(
    ("exc", "kind", "retry"),
    [
        (TimeoutError("slow"), Kind.TIMEOUT, True),
        (AttemptTimeout(30), Kind.TIMEOUT, True),
        (ConnectionResetError(errno.ECONNRESET, "reset"), Kind.CONNECTION, True),
        (ConnectionAbortedError(), Kind.CONNECTION, True),
        (BrokenPipeError(), Kind.CONNECTION, True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Kind.CONNECTION, True),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Kind.CONNECTION, True),
        (OSError(errno.ETIMEDOUT, "timed out"), Kind.TIMEOUT, True),
        (OSError(errno.ECONNRESET, "reset"), Kind.CONNECTION, True),
        (json.JSONDecodeError("Expecting value", "<html>", 0), Kind.BAD_RESPONSE, True),
        (KeyError("url"), Kind.UNKNOWN, False),
        (ValueError("bug"), Kind.UNKNOWN, False),
        (ConfigError("DASHSCOPE_API_KEY is missing"), Kind.CONFIG, False),
        (Retryable("html instead of png", kind="bad_content"), Kind.BAD_CONTENT, True),
        (Retryable("whatever"), Kind.UNKNOWN, True),
        (Permanent("no", kind=Kind.BAD_REQUEST), Kind.BAD_REQUEST, False),
    ],
)
def test_stdlib_and_regen_errors(exc: BaseException, kind: Kind, retry: bool) -> None:
    assert _verdict(exc) == (kind, retry)


def test_failures_that_never_reached_the_server_are_marked_unsent() -> None:
    assert classify(ConnectionRefusedError()).sent is False
    assert classify(socket.gaierror()).sent is False
    assert classify(httpx.ConnectError("refused")).sent is False
    assert classify(httpx.ConnectTimeout("connect")).sent is False
    assert classify(ConnectionResetError()).sent is True
    assert classify(httpx.ReadTimeout("read")).sent is True


def test_socket_level_reason_codes() -> None:
    assert classify(socket.gaierror()).reason == "ENOTFOUND"
    assert classify(ConnectionRefusedError()).reason == "ECONNREFUSED"
    assert classify(OSError(errno.ETIMEDOUT, "x")).reason == "ETIMEDOUT"


def _httpx_status(
    status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/")
    response = httpx.Response(status, headers=headers or {}, content=body, request=request)
    return httpx.HTTPStatusError("status", request=request, response=response)


@pytest.mark.parametrize(
    ("exc", "kind", "retry"),
    [
        (httpx.ReadTimeout("read"), Kind.TIMEOUT, True),
        (httpx.PoolTimeout("pool"), Kind.TIMEOUT, True),
        (httpx.ConnectError("refused"), Kind.CONNECTION, True),
        (httpx.RemoteProtocolError("peer closed connection"), Kind.CONNECTION, True),
        (httpx.ReadError("reset"), Kind.CONNECTION, True),
        (_httpx_status(429, {"retry-after": "3"}), Kind.RATE_LIMITED, True),
        (_httpx_status(503), Kind.SERVER_ERROR, True),
        (_httpx_status(502, {"content-type": "text/html"}), Kind.SERVER_ERROR, True),
        (_httpx_status(401), Kind.AUTH, False),
        (_httpx_status(403), Kind.AUTH, False),
        (_httpx_status(400), Kind.BAD_REQUEST, False),
        (_httpx_status(404), Kind.BAD_REQUEST, False),
    ],
)
def test_httpx_errors(exc: BaseException, kind: Kind, retry: bool) -> None:
    assert _verdict(exc) == (kind, retry)


def test_httpx_retry_after_is_read() -> None:
    assert classify(_httpx_status(429, {"retry-after": "3"})).retry_after == 3


def _aiohttp_response_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    info = aiohttp.RequestInfo(
        url=__import__("yarl").URL("http://127.0.0.1/"),
        method="GET",
        headers=__import__("multidict").CIMultiDictProxy(__import__("multidict").CIMultiDict()),
        real_url=__import__("yarl").URL("http://127.0.0.1/"),
    )
    return aiohttp.ClientResponseError(info, (), status=status, message="x", headers=headers or {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "retry"),
    [
        (aiohttp.ServerDisconnectedError(), Kind.CONNECTION, True),
        (aiohttp.ServerTimeoutError("read timeout"), Kind.TIMEOUT, True),
        (aiohttp.ClientPayloadError("incomplete chunked read"), Kind.CONNECTION, True),
        (_aiohttp_response_error(500), Kind.SERVER_ERROR, True),
        (_aiohttp_response_error(429, {"Retry-After": "2"}), Kind.RATE_LIMITED, True),
        (_aiohttp_response_error(401), Kind.AUTH, False),
    ],
)
def test_aiohttp_errors(exc: BaseException, kind: Kind, retry: bool) -> None:
    assert _verdict(exc) == (kind, retry)


def test_requests_errors_as_the_dashscope_sdk_raises_them() -> None:
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    )
    failure = classify(refused)
    assert (failure.kind, failure.retry, failure.sent) == (Kind.CONNECTION, True, False)
    assert _verdict(requests.exceptions.ReadTimeout()) == (Kind.TIMEOUT, True)
    assert classify(requests.exceptions.ConnectionError("reset")).sent is True


@pytest.mark.parametrize(
    ("cls", "status", "body", "kind", "retry"),
    [
        (
            openai.RateLimitError,
            429,
            {"code": "rate_limit_exceeded", "type": "requests"},
            Kind.RATE_LIMITED,
            True,
        ),
        (
            openai.RateLimitError,
            429,
            {"code": "insufficient_quota", "type": "insufficient_quota"},
            Kind.QUOTA_EXHAUSTED,
            False,
        ),
        (openai.AuthenticationError, 401, {"code": "invalid_api_key"}, Kind.AUTH, False),
        (
            openai.PermissionDeniedError,
            403,
            {"code": "unsupported_country_region_territory"},
            Kind.AUTH,
            False,
        ),
        (
            openai.BadRequestError,
            400,
            {"code": "content_policy_violation"},
            Kind.CONTENT_POLICY,
            False,
        ),
        (openai.BadRequestError, 400, {"code": "moderation_blocked"}, Kind.CONTENT_POLICY, False),
        (
            openai.BadRequestError,
            400,
            {"code": "invalid_value", "param": "size"},
            Kind.BAD_REQUEST,
            False,
        ),
        (openai.NotFoundError, 404, {"code": "model_not_found"}, Kind.BAD_REQUEST, False),
        (openai.InternalServerError, 500, {"code": None}, Kind.SERVER_ERROR, True),
        (openai.InternalServerError, 503, None, Kind.SERVER_ERROR, True),
        (openai.APIStatusError, 402, {"code": "insufficient_balance"}, Kind.QUOTA_EXHAUSTED, False),
        (openai.ConflictError, 409, None, Kind.SERVER_ERROR, True),
    ],
)
def test_openai_sdk_errors(
    cls: type[openai.APIStatusError], status: int, body: Any, kind: Kind, retry: bool
) -> None:
    assert _verdict(_openai_error(cls, status, body)) == (kind, retry)


def test_openai_rate_limit_carries_retry_after() -> None:
    exc = _openai_error(
        openai.RateLimitError, 429, {"code": "rate_limit_exceeded"}, {"retry-after": "7"}
    )
    assert classify(exc).retry_after == 7
    exc = _openai_error(openai.RateLimitError, 429, {}, {"retry-after-ms": "250"})
    assert classify(exc).retry_after == 0.25


def test_openai_transport_and_stream_errors() -> None:
    request = openai_httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    assert _verdict(openai.APITimeoutError(request=request)) == (Kind.TIMEOUT, True)
    assert _verdict(openai.APIConnectionError(request=request)) == (Kind.CONNECTION, True)
    # A mid-stream ``data: {"error": …}`` event surfaces as a bare APIError.
    overloaded = openai.APIError("overloaded", request, body={"code": "server_error"})
    assert _verdict(overloaded) == (Kind.SERVER_ERROR, True)
    blocked = openai.APIError("blocked", request, body={"code": "content_filter"})
    assert _verdict(blocked) == (Kind.CONTENT_POLICY, False)


# Error replies as OpenAI-compatible and DashScope APIs send them: (status, body, kind, retry).
_REPLIES: list[tuple[int, Any, Kind, bool]] = [
    (400, {"code": "InvalidParameter", "message": "size"}, Kind.BAD_REQUEST, False),
    (400, {"code": "DataInspectionFailed"}, Kind.CONTENT_POLICY, False),
    (400, {"code": "Arrearage"}, Kind.QUOTA_EXHAUSTED, False),
    (401, {"code": "InvalidApiKey"}, Kind.AUTH, False),
    (403, {"code": "AccessDenied"}, Kind.AUTH, False),
    (429, {"code": "Throttling.RateQuota"}, Kind.RATE_LIMITED, True),
    (429, {"code": "Throttling.AllocationQuota"}, Kind.RATE_LIMITED, True),
    (500, {"code": "InternalError"}, Kind.SERVER_ERROR, True),
    (502, b"<html><body>Bad Gateway</body></html>", Kind.SERVER_ERROR, True),
    (503, b"", Kind.SERVER_ERROR, True),
    (504, None, Kind.TIMEOUT, True),
    (429, json.dumps({"error": {"code": "insufficient_quota"}}), Kind.QUOTA_EXHAUSTED, False),
]


@pytest.mark.parametrize(("status", "body", "kind", "retry"), _REPLIES)
def test_responses_by_status_and_code(status: int, body: Any, kind: Kind, retry: bool) -> None:
    failure = classify_response(status, {}, body)
    assert failure is not None
    assert (failure.kind, failure.retry, failure.status) == (kind, retry, status)


def test_success_is_not_a_failure() -> None:
    assert classify_response(200, {}, {"output": {}}) is None


_QUOTA_BODY = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
    }
}


def _content(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, str)):
        return body.encode() if isinstance(body, str) else body
    return json.dumps(body).encode()


def _httpx_raised(response: httpx.Response) -> httpx.HTTPStatusError:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    return caught.value


def _requests_raised(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> requests.HTTPError:
    # What requests builds from a (non-streamed) reply: the body already read into memory.
    response = requests.Response()
    response.status_code = status
    response.url = "http://127.0.0.1/api/v1/services/aigc/text2image/image-synthesis"
    response.headers.update(headers or {})
    response._content = _content(body)
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    return caught.value


@pytest.mark.parametrize(("status", "body", "kind", "retry"), _REPLIES)
def test_raise_for_status_errors_are_classified_by_their_body(
    status: int, body: Any, kind: Kind, retry: bool
) -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/images/generations")
    from_httpx = _httpx_raised(httpx.Response(status, content=_content(body), request=request))
    from_requests = _requests_raised(status, body)
    expected = classify_response(status, {}, body)
    assert expected is not None
    for exc in (from_httpx, from_requests):
        failure = classify(exc)
        assert (failure.kind, failure.retry, failure.status) == (kind, retry, status)
        assert failure.reason == expected.reason


def test_httpx_429_insufficient_quota_is_not_retried() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, json=_QUOTA_BODY, request=request)
    failure = classify(_httpx_raised(response))
    assert (failure.kind, failure.retry, failure.reason) == (
        Kind.QUOTA_EXHAUSTED,
        False,
        "insufficient_quota",
    )


def test_httpx_429_rate_limit_body_keeps_retry_after() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    body = {"error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"}}
    response = httpx.Response(429, json=body, headers={"retry-after": "4"}, request=request)
    failure = classify(_httpx_raised(response))
    assert (failure.kind, failure.retry, failure.retry_after) == (Kind.RATE_LIMITED, True, 4)
    assert failure.reason == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            {
                "code": "DataInspectionFailed",
                "message": "Input data may contain inappropriate content.",
            },
            Kind.CONTENT_POLICY,
        ),
        (
            {
                "code": "Arrearage",
                "message": "Access denied, please make sure your account is in good standing.",
            },
            Kind.QUOTA_EXHAUSTED,
        ),
    ],
)
def test_dashscope_400_bodies_through_raise_for_status(body: Any, kind: Kind) -> None:
    request = httpx.Request(
        "POST", "http://127.0.0.1/api/v1/services/aigc/text2image/image-synthesis"
    )
    from_httpx = _httpx_raised(httpx.Response(400, json=body, request=request))
    assert _verdict(from_httpx) == (kind, False)
    assert _verdict(_requests_raised(400, body)) == (kind, False)


def test_requests_429_insufficient_quota_is_not_retried() -> None:
    failure = classify(_requests_raised(429, _QUOTA_BODY, {"Retry-After": "1"}))
    assert (failure.kind, failure.retry, failure.reason) == (
        Kind.QUOTA_EXHAUSTED,
        False,
        "insufficient_quota",
    )


def test_an_unread_httpx_stream_is_classified_by_status_without_reading_it() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    content = json.dumps(_QUOTA_BODY).encode()
    response = httpx.Response(429, stream=httpx.ByteStream(content), request=request)
    failure = classify(_httpx_raised(response))
    assert (failure.kind, failure.retry) == (Kind.RATE_LIMITED, True)
    assert not response.is_stream_consumed
    assert response.read() == content  # still there for the caller


def test_an_unread_requests_stream_is_classified_by_status_without_reading_it() -> None:
    content = json.dumps(_QUOTA_BODY).encode()
    raw = io.BytesIO(content)
    response = requests.Response()  # as with stream=True: the body still on the wire
    response.status_code = 429
    response.url = "http://127.0.0.1/v1/chat/completions"
    response.raw = raw
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    failure = classify(caught.value)
    assert (failure.kind, failure.retry) == (Kind.RATE_LIMITED, True)
    assert raw.tell() == 0
    assert response.content == content


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after": "5"}, now) == 5
    assert parse_retry_after({"Retry-After": "1.5"}, now) == 1.5
    assert parse_retry_after({"retry-after-ms": "20", "retry-after": "9"}, now) == 0.02
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now) == pytest.approx(30)
    assert parse_retry_after({"retry-after": "tomorrow"}, now) is None
    assert parse_retry_after({"retry-after": "-3"}, now) is None
    assert parse_retry_after({}, now) is None


def test_message_rules_opt_in_seed_002_timeout_words() -> None:
    rules = by_message({"超时": Kind.TIMEOUT, "timeout": Kind.TIMEOUT})
    classify_seed = chain(rules)
    assert classify_seed(RuntimeError("网络连接超时")).kind is Kind.TIMEOUT
    assert classify_seed(RuntimeError("Request TIMEOUT")).retry is True
    assert classify_seed(RuntimeError("bad input")).retry is False


def test_on_types_retries_named_exceptions() -> None:
    classifier = chain(on_types([LookupError], Kind.BAD_RESPONSE))
    assert classifier(KeyError("url")).kind is Kind.BAD_RESPONSE
    assert classifier(ValueError()).kind is Kind.UNKNOWN


def test_empty_message_rules_are_refused() -> None:
    with pytest.raises(ConfigError):
        by_message({})
