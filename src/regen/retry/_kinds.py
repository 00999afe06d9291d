"""The failure taxonomy's vocabulary: what kind a failure is and whether it is worth a retry."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    """What went wrong, in words that hold across providers and transports."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"
    BAD_CONTENT = "bad_content"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTENT_POLICY = "content_policy"
    QUOTA_EXHAUSTED = "quota_exhausted"
    #: Refused without a request: the provider's circuit breaker is open after an outage.
    #: ``retry_after`` is the time until it lets calls through again.
    UNAVAILABLE = "unavailable"
    CONFIG = "config"
    UNKNOWN = "unknown"


#: The kinds worth another attempt by default: weather, not bugs.
TRANSIENT: frozenset[Kind] = frozenset(
    {
        Kind.TIMEOUT,
        Kind.CONNECTION,
        Kind.RATE_LIMITED,
        Kind.SERVER_ERROR,
        Kind.BAD_RESPONSE,
        Kind.BAD_CONTENT,
        Kind.UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure: its kind, the verdict, and what the classifier learned.

    ``retry`` is the verdict. ``reason`` is a short machine-readable code
    (``"http_429"``, ``"insufficient_quota"``, ``"ECONNRESET"``, …). ``retry_after`` is the
    wait in seconds the server asked for. ``sent`` is ``False`` only when the request
    provably never reached the server (connection refused, DNS failure, connect timeout),
    which is what makes retrying a non-idempotent call safe.
    """

    kind: Kind
    retry: bool
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None
    sent: bool = True

    @classmethod
    def of(
        cls,
        kind: Kind,
        reason: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ) -> Failure:
        """A failure whose verdict follows from its kind (transient kinds retry)."""
        return cls(kind, kind in TRANSIENT, reason, status, retry_after, sent)
