"""The retry core: policies, the failure taxonomy, and sync/async retrying. Pure Python."""

from __future__ import annotations

from regen.foundation import ConfigError, RegenError, mask, mask_secrets
from regen.retry._attempts import Attempt
from regen.retry._budget import attempt_number, idempotency_key, phase_timeout, remaining
from regen.retry._classify import (
    Classifier,
    by_message,
    chain,
    classify,
    classify_response,
    kind_of_code,
    kind_of_status,
    on_types,
)
from regen.retry._clock import Clock, FakeClock
from regen.retry._errors import (
    AttemptTimeout,
    AwaitableInSyncCall,
    GiveUp,
    Permanent,
    Retryable,
)
from regen.retry._kinds import TRANSIENT, Failure, Kind
from regen.retry._policy import Policy
from regen.retry._retry_after import parse_retry_after
from regen.retry._run import acall, call, retrying
from regen.retry._state import current_clock
from regen.retry._testing import test_mode

__all__ = [
    "TRANSIENT",
    "Attempt",
    "AttemptTimeout",
    "AwaitableInSyncCall",
    "Classifier",
    "Clock",
    "ConfigError",
    "Failure",
    "FakeClock",
    "GiveUp",
    "Kind",
    "Permanent",
    "Policy",
    "RegenError",
    "Retryable",
    "acall",
    "attempt_number",
    "by_message",
    "call",
    "chain",
    "classify",
    "classify_response",
    "current_clock",
    "idempotency_key",
    "kind_of_code",
    "kind_of_status",
    "mask",
    "mask_secrets",
    "on_types",
    "parse_retry_after",
    "phase_timeout",
    "remaining",
    "retrying",
    "test_mode",
]
