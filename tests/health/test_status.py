"""Reading quota from rate-limit headers and errors in a few words."""

from __future__ import annotations

import pytest

from regen.foundation import ConfigError
from regen.health import ProviderHealth, quota_remaining, short_error
from regen.providers import APIError, BadResponse
from regen.retry import Failure, Kind


def test_quota_is_the_tightest_family_in_percent() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "500",
        "X-RateLimit-Remaining-Requests": "499",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "12000",
    }
    assert quota_remaining(headers) == 40.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-ratelimit-remaining-requests": "5"},  # no limit to compare with
        {"x-ratelimit-limit-requests": "0", "x-ratelimit-remaining-requests": "0"},
        {"x-ratelimit-limit-requests": "ten", "x-ratelimit-remaining-requests": "5"},
    ],
)
def test_no_quota_without_a_usable_family(headers: dict[str, str]) -> None:
    assert quota_remaining(headers) is None


def _api_error(status: int, kind: Kind, code: str = "") -> APIError:
    return APIError("x", Failure.of(kind, code or f"http_{status}", status=status))


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (_api_error(401, Kind.AUTH), "401"),
        (_api_error(403, Kind.AUTH), "403"),
        (_api_error(429, Kind.RATE_LIMITED), "rate limited"),
        (_api_error(429, Kind.QUOTA_EXHAUSTED, "insufficient_quota"), "quota exhausted"),
        (_api_error(503, Kind.SERVER_ERROR), "503"),
        (BadResponse("x", "html_200", status=200), "bad response"),
        (TimeoutError(), "timeout"),
        (ConfigError("provider 'x' has no API key"), "no key"),
        (RuntimeError("sk-secret-in-a-message-1234"), "error"),
    ],
)
def test_errors_read_in_a_few_words_never_the_message(error: BaseException, words: str) -> None:
    assert short_error(error) == words


def test_a_status_becomes_a_stored_check_and_back() -> None:
    status = ProviderHealth(
        "openai", "unhealthy", 12.5, "rate limited", 1000.0, None, 1030.0, "openai", "environment"
    )
    record = status.record()
    assert (record.provider, record.at, record.status, record.error) == (
        "openai",
        1000.0,
        "unhealthy",
        "rate limited",
    )
    assert status.to_dict()["next_check"] == 1030.0
