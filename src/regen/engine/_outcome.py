"""What running one step produced, and how a failure is recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from regen.engine._json import encode
from regen.engine._traceback import exception_line, user_frames
from regen.foundation import mask_data
from regen.retry import GiveUp, Kind, classify
from regen.store import StepStatus, Write


class Outcome(NamedTuple):
    """A finished step: its status, result (decoded JSON), checkpoint text and extras.
    (A named tuple: one is made per step, on the hot path.)"""

    status: StepStatus
    value: Any = None
    output: str | None = None
    error: dict[str, Any] | None = None
    data: Mapping[str, Any] | None = None
    writes: Sequence[Write] = ()


class Stop(BaseException):
    """Raised inside a run at a safe point when cancellation was asked."""


def error_of(exc: BaseException) -> dict[str, Any]:
    """A JSON record of a failure: type, message, kind, attempts, last errors — every
    secret in them masked (it is kept in the store and shown by every reader).

    A bug (kind ``unknown``: an exception regen does not classify) also records where it
    is: ``exception`` (the line Python prints, ``ZeroDivisionError: division by zero``) and
    ``frames``, the traceback's frames in the user's code (``file``, ``line``,
    ``function``, ``code``), rendered back by :func:`format_error`.
    """
    cause = exc.__cause__ if isinstance(exc, GiveUp) and exc.__cause__ is not None else exc
    record: dict[str, Any] = {
        "type": type(cause).__name__,
        "message": str(exc) or type(exc).__name__,
    }
    if not isinstance(exc, GiveUp):
        record["kind"] = str(classify(exc).kind)
    else:
        record["kind"] = str(exc.kind) if exc.kind is not None else None
        record["attempts"] = [a.to_dict() for a in exc.attempts]
        record["errors"] = exc.errors
    if record["kind"] == Kind.UNKNOWN:
        record["exception"] = exception_line(cause)
        record["frames"] = user_frames(cause)
    masked: dict[str, Any] = mask_data(record)
    return masked


def cache_key(flow: str, step: str, version: int, inputs: Any) -> str:
    """The result cache's key: a hash of the step's identity, version and inputs."""
    text = encode(
        {"flow": flow, "step": step, "version": version, "inputs": inputs},
        f"cache key of step {step!r}",
    )
    canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
