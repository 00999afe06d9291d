"""The OpenAI wire protocol: models, chat completions (plain and SSE), images."""

from __future__ import annotations

import base64
import functools
import os
import time
from typing import TYPE_CHECKING, Any

from regen.sim._errors import bad_request, dumps, fault_reply, refusal
from regen.sim._files import spoil
from regen.sim._images import parse_openai_size, ratio_size
from regen.sim._state import FileRef
from regen.sim._text import count_tokens, reply_words

if TYPE_CHECKING:
    from regen.sim._http import Ctx

SSE = b"text/event-stream; charset=utf-8"
_SSE_HEADERS = ((b"cache-control", b"no-cache"),)
_DONE = b"data: [DONE]\n\n"
_NOISE = b": keep-alive\n\n"
_IMAGE_FAULTS = ("fake_image", "truncated_image", "url_expired")
# Faults after which the client did not get a whole answer: nothing counts as produced.
_SPOILING = (
    "stream_cut",
    "stream_no_done",
    "stream_error_event",
    "empty_choices",
    "missing_fields",
)


async def models(ctx: Ctx, _parse_error: str | None) -> None:
    if ctx.fault("missing_fields"):
        await ctx.respond(200, b'{"object":"list"}')
        return
    await ctx.respond(200, ctx.state.models_body)


def _last_user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
            return "\n".join(parts)
    return None


def identify_chat(ctx: Ctx) -> str | None:
    error = ctx.parse_json()
    if error is None:
        data = ctx.data
        if data.get("stream") is True:
            ctx.route = "chat_stream"
        model = data.get("model")
        ctx.ident.model = model if isinstance(model, str) else None
        ctx.ident.prompt = _last_user_text(data.get("messages"))
    return error


def identify_images(ctx: Ctx) -> str | None:
    error = ctx.parse_json()
    if error is None:
        prompt, model = ctx.data.get("prompt"), ctx.data.get("model")
        ctx.ident.prompt = prompt if isinstance(prompt, str) else None
        ctx.ident.model = model if isinstance(model, str) else None
    return error


async def _refuse_model_or_content(ctx: Ctx, model: str) -> bool:
    """Answer an unknown model or a content/parameter fault; ``True`` if answered."""
    if ctx.fault("unknown_model") or model not in ctx.state.models:
        ctx.record("unknown_model" if "unknown_model" in ctx.plan else "not_found")
        await ctx.reply(refusal("openai", "unknown_model", request_id=ctx.request_id, model=model))
        return True
    for name in ("content_policy", "invalid_param"):
        spec = ctx.fault(name)
        if spec is not None:
            await ctx.reply(
                fault_reply("openai", spec, request_id=ctx.request_id, model=model, route=ctx.route)
            )
            return True
    return False


def _positive_int(
    data: dict[str, Any], name: str, default: int | None, top: int
) -> int | str | None:
    value = data.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        return f"Invalid value for '{name}': expected an integer from 1 to {top}."
    return value


async def chat(ctx: Ctx, parse_error: str | None) -> None:
    if parse_error is not None:
        await ctx.reply(bad_request("openai", parse_error, request_id=ctx.request_id))
        return
    data = ctx.data
    model = data.get("model")
    if not isinstance(model, str) or not model:
        await ctx.reply(
            bad_request("openai", "you must provide a model parameter", request_id=ctx.request_id)
        )
        return
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        message = (
            "Missing required parameter: 'messages'."
            if messages is None
            else "Invalid 'messages': expected a non-empty array of messages."
        )
        await ctx.reply(
            bad_request(
                "openai",
                message,
                request_id=ctx.request_id,
                param="messages",
                code="missing_required_parameter" if messages is None else "invalid_value",
            )
        )
        return
    if await _refuse_model_or_content(ctx, model):
        return
    n = _positive_int(data, "n", 1, 8)
    limit = _positive_int(data, "max_completion_tokens", None, 1_000_000)
    if limit is None:
        limit = _positive_int(data, "max_tokens", None, 1_000_000)
    for value, param in ((n, "n"), (limit, "max_tokens")):
        if isinstance(value, str):
            await ctx.reply(
                bad_request(
                    "openai", value, request_id=ctx.request_id, param=param, code="invalid_value"
                )
            )
            return
    assert isinstance(n, int)
    assert limit is None or isinstance(limit, int)
    prompt = ctx.ident.prompt or ""
    words = reply_words(prompt, limit)
    finish = "length" if limit is not None and len(reply_words(prompt)) > len(words) else "stop"
    if ctx.route == "chat_stream":
        options = data.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        await _stream(ctx, model, words, finish, n, usage)
    else:
        await _complete(ctx, model, words, finish, n)
    if prompt and not (ctx.plan.faults and any(name in ctx.plan for name in _SPOILING)):
        ctx.state.stats.produced(prompt, n)


def _usage(prompt: str, words: tuple[str, ...], n: int) -> dict[str, int]:
    prompt_tokens = count_tokens(prompt)
    completion = len(words) * n
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


@functools.lru_cache(maxsize=1024)
def _completion_tail(
    prompt: str, model: str, words: tuple[str, ...], finish: str, n: int, shape: str
) -> bytes:
    """Everything of a completion after its ``created`` value, computed once per reply."""
    body: dict[str, Any] = {"model": model, "system_fingerprint": "fp_regen_sim"}
    if shape == "empty_choices":
        body["choices"] = []
    elif shape != "missing_fields":
        text = "".join(words)
        body["choices"] = [
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            for index in range(n)
        ]
    body["usage"] = _usage(prompt, words, n)
    return b"," + dumps(body)[1:]


async def _complete(ctx: Ctx, model: str, words: tuple[str, ...], finish: str, n: int) -> None:
    shape, noise = "whole", None
    if ctx.plan.faults:
        noise = ctx.fault("keepalive_noise")
        shape = next((s for s in ("empty_choices", "missing_fields") if ctx.fault(s)), "whole")
    raw = b"".join(
        (
            b'{"id":"chatcmpl-',
            os.urandom(12).hex().encode(),
            b'","object":"chat.completion","created":',
            str(int(time.time())).encode(),
            _completion_tail(ctx.ident.prompt or "", model, words, finish, n, shape),
        )
    )
    if noise is not None:
        # DeepSeek keeps a slow non-streaming request alive with blank lines first.
        raw = b"\n" * int(noise.number(3)) + raw
    await ctx.respond(200, raw)


def _chunk_tail(index: int, delta: bytes, finish: str | None) -> bytes:
    """A chunk's bytes after its per-stream head (id, created, model)."""
    finish_bytes = b"null" if finish is None else b'"' + finish.encode() + b'"'
    return (
        b'{"index":'
        + str(index).encode()
        + b',"delta":'
        + delta
        + b',"logprobs":null,"finish_reason":'
        + finish_bytes
        + b"}]}\n\n"
    )


@functools.lru_cache(maxsize=1024)
def _stream_tails(
    words: tuple[str, ...], finish: str, n: int
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The word chunks' and the closing chunks' tails, computed once per reply."""
    body = [_chunk_tail(i, b'{"role":"assistant","content":""}', None) for i in range(n)]
    for word in words:
        delta = b'{"content":' + dumps(word) + b"}"
        body.extend(_chunk_tail(i, delta, None) for i in range(n))
    return tuple(body), tuple(_chunk_tail(i, b"{}", finish) for i in range(n))


async def _stream(
    ctx: Ctx, model: str, words: tuple[str, ...], finish: str, n: int, usage: bool
) -> None:
    noise = ctx.fault("keepalive_noise")
    created = int(time.time())
    head = (
        b'data: {"id":"chatcmpl-'
        + os.urandom(12).hex().encode()
        + b'","object":"chat.completion.chunk",'
        b'"created":'
        + str(created).encode()
        + b',"model":'
        + dumps(model)
        + b',"system_fingerprint":"fp_regen_sim","choices":['
    )
    events: list[bytes] = [_NOISE * int(noise.number(3)) + b"\n"] if noise is not None else []
    if ctx.fault("empty_choices"):
        events.append(head + b"]}\n\n")
        events.append(_DONE)
        await _send_events(ctx, events, cut_at=None)
        return
    body_tails, closing_tails = _stream_tails(words, finish, n)
    events.extend(head + tail for tail in body_tails)
    middle = len(events) // 2 + 1
    cut = ctx.fault("stream_cut")
    if cut is not None:
        fraction = min(0.95, max(0.05, float(cut.arg) if cut.arg and _is_number(cut.arg) else 0.5))
        await _send_events(ctx, events, cut_at=max(1, int(len(events) * fraction)))
        return
    if ctx.fault("stream_error_event"):
        error = {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": "server_error",
            }
        }
        events.insert(middle, b"data: " + dumps(error) + b"\n\n")
        await _send_events(ctx, events[: middle + 1], cut_at=None)
        return
    if not ctx.fault("stream_no_done"):
        events.extend(head + tail for tail in closing_tails)
        if usage:
            events.append(
                head + b'],"usage":' + dumps(_usage(ctx.ident.prompt or "", words, n)) + b"}\n\n"
            )
        events.append(_DONE)
    await _send_events(ctx, events, cut_at=None)


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


async def _send_events(ctx: Ctx, events: list[bytes], cut_at: int | None) -> None:
    await ctx.start(200, SSE, _SSE_HEADERS)
    delay = ctx.state.config.chunk_delay
    sent = events if cut_at is None else events[:cut_at]
    if cut_at is not None or delay:
        for event in sent if delay else [b"".join(sent)]:
            await ctx.write(event)
            await ctx.pause(delay)
        if cut_at is not None:
            await ctx.cut()
            return
        await ctx.write(b"", more=False)
    else:
        # Every event of the stream in one write: each is still its own SSE event.
        await ctx.write(b"".join(sent), more=False)


async def images(ctx: Ctx, parse_error: str | None) -> None:
    if parse_error is not None:
        await ctx.reply(bad_request("openai", parse_error, request_id=ctx.request_id))
        return
    data = ctx.data
    prompt = ctx.ident.prompt
    if not prompt:
        await ctx.reply(
            bad_request(
                "openai",
                "Missing required parameter: 'prompt'.",
                request_id=ctx.request_id,
                param="prompt",
                code="missing_required_parameter",
            )
        )
        return
    model = ctx.ident.model or "dall-e-2"
    if await _refuse_model_or_content(ctx, model):
        return
    n = _positive_int(data, "n", 1, 10)
    if isinstance(n, str):
        await ctx.reply(
            bad_request("openai", n, request_id=ctx.request_id, param="n", code="invalid_value")
        )
        return
    assert n is not None
    response_format = data.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        await ctx.reply(
            bad_request(
                "openai",
                f"Invalid value for 'response_format': {response_format!r}. "
                "Supported values are: 'url' and 'b64_json'.",
                request_id=ctx.request_id,
                param="response_format",
                code="invalid_value",
            )
        )
        return
    try:
        size = data.get("size")
        if size is not None:
            width, height = parse_openai_size(str(size))
            nominal = (width, height)
        else:
            (width, height), nominal = ratio_size(data.get("ratio"), data.get("resolution"))
    except ValueError as exc:
        param = (
            "size"
            if data.get("size") is not None
            else ("resolution" if "resolution" in str(exc) else "ratio")
        )
        await ctx.reply(
            bad_request(
                "openai",
                f"Invalid value for '{param}': {exc}",
                request_id=ctx.request_id,
                param=param,
                code="invalid_value",
            )
        )
        return
    if ctx.fault("missing_fields"):
        await ctx.respond(200, dumps({"created": int(time.time())}))
        return
    carried = tuple(spec for spec in ctx.plan.carried if spec.name in _IMAGE_FAULTS)
    for spec in carried:
        ctx.state.stats.fault(ctx.route, prompt, spec.name)
        ctx.record(spec.name)
    items = []
    for variant in range(n):
        ref = FileRef("png", prompt, width, height, variant)
        item: dict[str, Any] = {"revised_prompt": prompt}
        if response_format == "url":
            item["url"] = ctx.state.file_url(ctx.base_url, ref, carried)
        else:
            png = await ctx.state.images.get("png", prompt, width, height, variant)
            for spec in carried:
                if spec.name != "url_expired":
                    png, _ = spoil(png, spec)
            item["b64_json"] = base64.b64encode(png).decode()
        items.append(item)
    body: dict[str, Any] = {"created": int(time.time()), "data": items, "size": f"{width}x{height}"}
    if nominal != (width, height):
        body["nominal_size"] = f"{nominal[0]}x{nominal[1]}"
    ctx.state.stats.produced(prompt, n)
    await ctx.respond(200, dumps(body))
