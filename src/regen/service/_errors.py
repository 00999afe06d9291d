"""regen's errors as HTTP answers: a missing run is 404, a forbidden transition 409, input
that does not fit 422; the message (secrets masked) says what to fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from regen.engine import (
    EngineError,
    FlowError,
    FlowNotFound,
    InvalidTransition,
    ParamsError,
    RunExists,
    RunNotFound,
)
from regen.foundation import RegenError, mask_secrets

#: Most specific first.
_STATUS: tuple[tuple[type[RegenError], int], ...] = (
    (RunNotFound, 404),
    (FlowNotFound, 404),
    (InvalidTransition, 409),
    (RunExists, 409),
    (ParamsError, 422),
    (FlowError, 422),
    (EngineError, 400),
)


def status_of(exc: RegenError) -> int:
    """The HTTP status for one of regen's errors (500 for one the service cannot blame on
    the request)."""
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return 500


def _problem(error: Mapping[str, Any]) -> str:
    """One of FastAPI's validation errors in words: where, then what (the input itself is
    left out: it may hold a secret)."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    if error.get("type") == "json_invalid":
        reason = error.get("ctx", {}).get("error", "")
        return f"body: not valid JSON ({reason})" if reason else "body: not valid JSON"
    return f"{where}: {error.get('msg', 'invalid')}"


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """FastAPI's validation errors as one message, like every other error's ``detail``."""
    return mask_secrets("; ".join(_problem(error) for error in errors) or "invalid request")


def install(app: FastAPI) -> None:
    """Answer regen's errors with their status and ``{"detail": message}``, and requests
    FastAPI refuses (a body, query or path value of the wrong shape) the same way, 422."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RegenError)
        return JSONResponse({"detail": mask_secrets(str(exc))}, status_code=status_of(exc))

    async def refuse(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)

    app.add_exception_handler(RegenError, handle)
    app.add_exception_handler(RequestValidationError, refuse)
