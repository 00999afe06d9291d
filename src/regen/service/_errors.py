"""regen's errors as HTTP answers: a missing run is 404, a forbidden transition 409, input
that does not fit 422; the message (secrets masked) says what to fix."""

from __future__ import annotations

from fastapi import FastAPI, Request
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


def install(app: FastAPI) -> None:
    """Answer regen's errors with their status and ``{"detail": message}``."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RegenError)
        return JSONResponse({"detail": mask_secrets(str(exc))}, status_code=status_of(exc))

    app.add_exception_handler(RegenError, handle)
