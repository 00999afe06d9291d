"""Error responses in each protocol's own shape (docs/simulator.md).

Families: ``openai`` (``{"error": {message, type, param, code}}``), ``dashscope`` (flat
``{code, message, request_id}``), ``photo`` (``{"error": {code, message}, request_id}``),
``pay`` (WeChat Pay's flat ``{code, message}``) and ``file`` (object-storage XML).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from regen.sim._faults import FaultSpec

JSON = b"application/json"
HTML = b"text/html; charset=utf-8"
XML = b"application/xml"


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP answer."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
PROXY_HTML_200 = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    b"<title>Just a moment...</title></head><body><h1>Checking your browser before "
    b"accessing the site.</h1><p>This process is automatic. You will be redirected "
    b"shortly.</p></body></html>"
)

# fault or refusal -> (status, openai type, openai code, openai message)
_OPENAI: dict[str, tuple[int, str, str | None, str]] = {
    "missing_key": (
        401,
        "invalid_request_error",
        None,
        "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    ),
    "auth": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}."),
    "permission": (
        403,
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    "rate_limit": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-sim on requests per min (RPM): "
        "Limit {limit}, Used {limit}, Requested 1. Please try again in {wait}.",
    ),
    "quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (
        503,
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    "content_policy": (
        400,
        "invalid_request_error",
        "content_policy_violation",
        "Your request was rejected as a result of our safety system. Your prompt may "
        "contain text that is not allowed by our safety system.",
    ),
    "unknown_model": (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
}

# fault or refusal -> (status, dashscope code, message)
_DASHSCOPE: dict[str, tuple[int, str, str]] = {
    "missing_key": (401, "InvalidApiKey", "No API-key provided."),
    "auth": (401, "InvalidApiKey", "Invalid API-key provided."),
    "permission": (403, "AccessDenied", "Access denied."),
    "rate_limit": (429, "Throttling", "Requests rate limit exceeded, please try again later."),
    "rate_limit_burst": (
        429,
        "Throttling.RateQuota",
        "Requests rate limit exceeded, please try again later.",
    ),
    "retry_after_long": (
        429,
        "Throttling.AllocationQuota",
        "Allocated quota exceeded, please increase your quota limit.",
    ),
    "quota": (
        400,
        "Arrearage",
        "Access denied, please make sure your account is in good standing.",
    ),
    "server_error": (
        500,
        "InternalError",
        "An internal error has occured, please try again later.",
    ),
    "overloaded": (503, "ServiceUnavailable", "Service is busy, please try again later."),
    "content_policy": (
        400,
        "DataInspectionFailed",
        "Input data may contain inappropriate content.",
    ),
    "unknown_model": (400, "InvalidParameter", "Model not exist."),
    "invalid_param": (
        400,
        "InvalidParameter",
        "The size is not match the allowed size ['1024*1024', '720*1280', '1280*720']",
    ),
}

# fault or refusal -> (status, photo-API code, message)
_PHOTO: dict[str, tuple[int, str, str]] = {
    "missing_key": (401, "unauthorized", "Missing API key: send Authorization: Bearer KEY."),
    "auth": (401, "unauthorized", "Invalid API key."),
    "permission": (403, "forbidden", "This key may not use this API."),
    "rate_limit": (429, "rate_limited", "Too many requests, slow down."),
    "quota": (402, "insufficient_balance", "Your balance is insufficient."),
    "server_error": (500, "internal_error", "Internal error, please retry."),
    "overloaded": (503, "service_unavailable", "Service is busy, please retry later."),
    "content_policy": (400, "content_policy_violation", "The prompt was rejected by moderation."),
    "invalid_param": (400, "invalid_parameter", "Invalid parameter: size."),
    "unknown_model": (404, "model_not_found", "Unknown model {model}."),
}

# fault or refusal -> (status, WeChat Pay code, message)
_PAY: dict[str, tuple[int, str, str]] = {
    "missing_key": (
        401,
        "SIGN_ERROR",
        "Missing Authorization header: signature verification failed.",
    ),
    "auth": (401, "SIGN_ERROR", "Signature verification failed."),
    "permission": (403, "NO_AUTH", "The merchant has no permission for this API."),
    "rate_limit": (429, "FREQUENCY_LIMITED", "Request frequency exceeds the limit."),
    "quota": (403, "NOTENOUGH", "Insufficient balance."),
    "server_error": (500, "SYSTEM_ERROR", "System error; retry with the same out_trade_no."),
    "overloaded": (503, "SYSTEM_ERROR", "System busy; retry with the same out_trade_no."),
    "invalid_param": (400, "PARAM_ERROR", "Invalid parameter: amount.total."),
}

_FILE: dict[str, tuple[int, str, str]] = {
    "server_error": (500, "InternalError", "We encountered an internal error. Please try again."),
    "overloaded": (503, "ServiceUnavailable", "Please reduce your request rate."),
    "url_expired": (403, "AccessDenied", "Request has expired."),
    "not_found": (404, "NoSuchKey", "The specified key does not exist."),
}

_RATE_LIMITED = ("rate_limit", "rate_limit_burst", "retry_after_long")


def mask_key(key: str) -> str:
    return f"{key[:3]}…{key[-4:]}" if len(key) > 8 else "…"


def retry_after_headers(seconds: float, *, date: bool = False) -> tuple[tuple[bytes, bytes], ...]:
    whole = max(1, int(-(-seconds // 1)))
    if date:
        value = formatdate(time.time() + whole, usegmt=True).encode()
        return ((b"retry-after", value),)
    return (
        (b"retry-after", str(whole).encode()),
        (b"retry-after-ms", str(int(seconds * 1000)).encode()),
    )


def _retry_after(spec: FaultSpec) -> tuple[tuple[bytes, bytes], ...]:
    """The ``retry-after`` headers a rate-limit or overload fault asks for."""
    if spec.name == "rate_limit_burst":
        return ()
    if spec.name == "retry_after_long":
        return retry_after_headers(spec.number(300))
    if spec.name == "overloaded":
        return () if spec.arg is None else retry_after_headers(spec.number(1))
    if spec.arg is not None and spec.arg.startswith("date"):
        rest = spec.arg[4:].lstrip(":=+")
        return retry_after_headers(float(rest) if rest else 2, date=True)
    return retry_after_headers(spec.number(1))


def _wait_text(headers: tuple[tuple[bytes, bytes], ...]) -> str:
    for name, value in headers:
        if name == b"retry-after-ms":
            return f"{int(value) / 1000:g}s"
    return "a moment"


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Reply(status, dumps(body), JSON, headers)


def dashscope_error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Reply:
    return Reply(
        status, dumps({"code": code, "message": message, "request_id": request_id}), JSON, headers
    )


def photo_error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Reply:
    body = {"error": {"code": code, "message": message}, "request_id": request_id}
    return Reply(status, dumps(body), JSON, headers)


def pay_error(
    status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> Reply:
    return Reply(status, dumps({"code": code, "message": message}), JSON, headers)


def file_error(kind: str, request_id: str, *, expires: int | None = None) -> Reply:
    status, code, message = _FILE[kind]
    extra = ""
    if expires is not None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(expires))
        extra = f"\n  <Expires>{stamp}</Expires>\n  <ServerTime>{now}</ServerTime>"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n  <HostId>regen-sim.oss.local</HostId>{extra}\n"
        "</Error>\n"
    )
    return Reply(status, body.encode(), XML)


def fault_reply(
    family: str,
    spec: FaultSpec,
    *,
    request_id: str,
    model: str | None = None,
    key: str = "",
    route: str = "",
    limit: int = 10000,
) -> Reply:
    """The response a protocol-level fault gives in ``family``'s shape."""
    name = spec.name
    if name == "bad_gateway_html":
        return Reply(502, BAD_GATEWAY_HTML, HTML)
    if name == "html_200":
        return Reply(200, PROXY_HTML_200, HTML)
    headers = (
        _retry_after(spec) if name in (*_RATE_LIMITED, "overloaded", "poll_rate_limit") else ()
    )
    lookup = "rate_limit" if name == "poll_rate_limit" else name
    if family == "file":
        return file_error(lookup, request_id)
    if family == "openai":
        return _openai_fault(spec, lookup, headers, model=model, key=key, route=route, limit=limit)
    if family == "dashscope":
        status, code, message = _DASHSCOPE.get(lookup) or _DASHSCOPE["rate_limit"]
        return dashscope_error(status, code, message, request_id, headers)
    table = _PHOTO if family == "photo" else _PAY
    status, code, message = (
        table.get(lookup) or table["rate_limit" if lookup in _RATE_LIMITED else "server_error"]
    )
    message = message.format(model=model)
    if family == "photo":
        return photo_error(status, code, message, request_id, headers)
    return pay_error(status, code, message, headers)


def _openai_fault(
    spec: FaultSpec,
    name: str,
    headers: tuple[tuple[bytes, bytes], ...],
    *,
    model: str | None,
    key: str,
    route: str,
    limit: int,
) -> Reply:
    if name == "invalid_param":
        if route == "images":
            return openai_error(
                400,
                "Invalid value for 'size': '1000x1000'. Supported values are: "
                "'256x256', '512x512', '1024x1024', '1792x1024' and '1024x1792'.",
                param="size",
                code="invalid_value",
            )
        return openai_error(
            400,
            "Invalid value for 'temperature': expected a number between 0 and 2.",
            param="temperature",
            code="invalid_value",
        )
    if name == "quota" and (spec.arg == "402" or (model or "").startswith("deepseek")):
        return openai_error(
            402, "Insufficient Balance", type_="unknown_error", code="invalid_request_error"
        )
    if name == "content_policy" and (spec.arg == "moderation_blocked" or model == "gpt-image-1"):
        return openai_error(
            400,
            "Your request was rejected by the safety system.",
            type_="image_generation_user_error",
            code="moderation_blocked",
        )
    status, type_, code, template = _OPENAI["rate_limit" if name in _RATE_LIMITED else name]
    message = template.format(
        model=model or "sim", key=mask_key(key), limit=limit, wait=_wait_text(headers)
    )
    return openai_error(status, message, type_=type_, code=code, headers=headers)


def refusal(family: str, kind: str, *, request_id: str, model: str | None = None) -> Reply:
    """A refusal that is not a fault (a missing key, an unknown model) in ``family``'s shape."""
    if family == "openai":
        status, type_, code, template = _OPENAI[kind]
        return openai_error(
            status, template.format(model=model, key="", limit=0, wait=""), type_=type_, code=code
        )
    if family == "dashscope":
        status, code, message = _DASHSCOPE[kind]
        return dashscope_error(status, code, message, request_id)
    if family == "photo":
        status, code, message = _PHOTO[kind]
        return photo_error(status, code, message.format(model=model), request_id)
    status, code, message = _PAY[kind]
    return pay_error(status, code, message)


def bad_request(
    family: str, message: str, *, request_id: str, param: str | None = None, code: str | None = None
) -> Reply:
    """A 400 for a malformed request, in ``family``'s shape."""
    if family == "openai":
        return openai_error(400, message, param=param, code=code)
    if family == "dashscope":
        return dashscope_error(400, code or "InvalidParameter", message, request_id)
    if family == "photo":
        return photo_error(400, code or "invalid_parameter", message, request_id)
    return pay_error(400, code or "PARAM_ERROR", message)


def not_found(family: str, message: str, *, request_id: str) -> Reply:
    if family == "openai":
        return openai_error(404, message, code="not_found")
    if family == "dashscope":
        return dashscope_error(404, "NotFound", message, request_id)
    if family == "photo":
        return photo_error(404, "task_not_found", message, request_id)
    if family == "pay":
        return pay_error(404, "ORDER_NOT_EXIST", message)
    return file_error("not_found", request_id)
