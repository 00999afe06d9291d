"""regen: make AI content generation survive flaky AI APIs.

The retry core's public names are importable from here::

    import regen

    @regen.retrying(attempts=2, timeout=30, wait=1, max_wait=5)
    async def generate_art_photo(prompt: str) -> str: ...
"""

from __future__ import annotations

import logging

from regen.retry import (
    Attempt,
    AttemptTimeout,
    ConfigError,
    Failure,
    GiveUp,
    Kind,
    Permanent,
    Policy,
    RegenError,
    Retryable,
    acall,
    by_message,
    call,
    classify,
    phase_timeout,
    remaining,
    retrying,
    test_mode,
)

__version__ = "0.1.0"

# A library leaves log output to the application: no handler of its own, no last-resort noise.
logging.getLogger("regen").addHandler(logging.NullHandler())

__all__ = [
    "Attempt",
    "AttemptTimeout",
    "ConfigError",
    "Failure",
    "GiveUp",
    "Kind",
    "Permanent",
    "Policy",
    "RegenError",
    "Retryable",
    "__version__",
    "acall",
    "by_message",
    "call",
    "classify",
    "phase_timeout",
    "remaining",
    "retrying",
    "test_mode",
]
