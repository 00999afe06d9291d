"""The fault catalogue: names, the routes each fault applies to, and the fault-spec grammar.

A fault spec is ``name[:arg][*count]``, several separated by commas:
``rate_limit:5`` (retry after 5 s), ``task_failed:DataInspectionFailed``, ``hang*2``
(only the first two requests carrying this same spec hang).
"""

from __future__ import annotations

from dataclasses import dataclass

# Exactly the rows of the fault catalogue in docs/simulator.md, in its order.
FAULTS: tuple[str, ...] = (
    "auth",
    "permission",
    "rate_limit",
    "rate_limit_burst",
    "retry_after_long",
    "quota",
    "server_error",
    "bad_gateway_html",
    "overloaded",
    "content_policy",
    "invalid_param",
    "unknown_model",
    "hang",
    "slow",
    "reset",
    "stream_cut",
    "stream_no_done",
    "stream_error_event",
    "keepalive_noise",
    "empty_choices",
    "missing_fields",
    "html_200",
    "task_stuck",
    "task_failed",
    "task_unknown",
    "partial_results",
    "poll_rate_limit",
    "url_expired",
    "fake_image",
    "truncated_image",
)

# Route kinds: the names stats, scripts and this table use for the simulator's endpoints.
ROUTES: tuple[str, ...] = (
    "models",
    "chat",
    "chat_stream",
    "images",
    "dashscope_submit",
    "dashscope_task",
    "photo_submit",
    "photo_task",
    "video_submit",
    "video_task",
    "pay",
    "pay_query",
    "file",
)

_API = frozenset(ROUTES) - {"file"}
_SUBMIT = frozenset({"dashscope_submit", "photo_submit", "video_submit"})
_POLL = frozenset({"dashscope_task", "photo_task", "video_task"})
_GENERATE = frozenset({"chat", "chat_stream", "images"}) | _SUBMIT
_IMAGE_ORIGINS = frozenset({"images"}) | _SUBMIT
_TRANSPORT = _API | {"file"}

# Where a fault named in a header, a query parameter or a script step takes effect.
APPLIES: dict[str, frozenset[str]] = {
    "auth": _API,
    "permission": _API,
    "rate_limit": _API,
    "rate_limit_burst": _API,
    "retry_after_long": _API,
    "quota": _API,
    "server_error": _TRANSPORT,
    "bad_gateway_html": _TRANSPORT,
    "overloaded": _TRANSPORT,
    "content_policy": _GENERATE,
    "invalid_param": _GENERATE | {"pay"},
    "unknown_model": _GENERATE,
    "hang": _TRANSPORT,
    "slow": _TRANSPORT,
    "reset": _TRANSPORT,
    "stream_cut": frozenset({"chat_stream"}),
    "stream_no_done": frozenset({"chat_stream"}),
    "stream_error_event": frozenset({"chat_stream"}),
    "keepalive_noise": frozenset({"chat", "chat_stream"}),
    "empty_choices": frozenset({"chat", "chat_stream"}),
    "missing_fields": frozenset({"models", "chat", "images", "pay"}) | _SUBMIT | _POLL,
    "html_200": _API,
    "task_stuck": _SUBMIT | _POLL,
    "task_failed": _SUBMIT | _POLL,
    "task_unknown": _SUBMIT | _POLL,
    "partial_results": frozenset({"dashscope_submit", "dashscope_task"}),
    "poll_rate_limit": _POLL,
    "url_expired": frozenset({"file"}),
    "fake_image": frozenset({"file"}),
    "truncated_image": frozenset({"file"}),
}

# Faults named on a request that creates something later fetched (a task, an image URL)
# travel with it: image faults are written into the image URL (or applied to b64_json
# bytes), poll faults are kept by the task.
CARRIED: dict[str, frozenset[str]] = {
    "poll_rate_limit": _SUBMIT,
    "url_expired": _IMAGE_ORIGINS,
    "fake_image": _IMAGE_ORIGINS,
    "truncated_image": _IMAGE_ORIGINS,
}

_TASK_FAULTS = frozenset({"task_stuck", "task_failed", "task_unknown", "partial_results"})

# Where a seeded random profile draws each fault: like APPLIES, except that task faults
# are drawn once per task, at submit, never per poll.
PROFILE_APPLIES: dict[str, frozenset[str]] = {
    name: (routes - _POLL if name in _TASK_FAULTS else routes) for name, routes in APPLIES.items()
}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault requested for a request: its name, an optional argument and count."""

    name: str
    arg: str | None = None
    count: int | None = None

    def __str__(self) -> str:
        text = self.name if self.arg is None else f"{self.name}:{self.arg}"
        return text if self.count is None else f"{text}*{self.count}"

    def number(self, default: float) -> float:
        """The argument read as a number of seconds (``2``, ``2.5``, ``2s``, ``300ms``)."""
        if self.arg is None:
            return default
        try:
            return parse_seconds(self.arg)
        except ValueError:
            return default


def parse_seconds(text: str) -> float:
    """Read ``50ms``, ``1.5s``, ``2m`` or a bare number of seconds."""
    value = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], scale
            break
    else:
        number, factor = value, 1.0
    try:
        seconds = float(number) * factor
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 50ms, 1.5s or 2)") from None
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"a duration must be a non-negative number: {text!r}")
    return seconds


def parse_fault(text: str) -> FaultSpec:
    """Parse one ``name[:arg][*count]``; an unknown name is a ``ValueError`` naming the choices."""
    body, _, count_text = text.strip().partition("*")
    name, sep, arg = body.partition(":")
    name = name.strip()
    if name not in APPLIES:
        raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}")
    count: int | None = None
    if count_text:
        try:
            count = int(count_text)
        except ValueError:
            raise ValueError(f"fault count must be an integer: {text!r}") from None
        if count < 1:
            raise ValueError(f"fault count must be at least 1: {text!r}")
    return FaultSpec(name, arg.strip() if sep else None, count)


def parse_faults(text: str) -> tuple[FaultSpec, ...]:
    """Parse a comma-separated list of fault specs; ``""`` and ``"ok"`` mean no fault."""
    specs = []
    for part in text.split(","):
        stripped = part.strip()
        if stripped and stripped != "ok":
            specs.append(parse_fault(stripped))
    return tuple(specs)
