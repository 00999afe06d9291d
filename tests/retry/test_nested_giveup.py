"""A policy inside a policy: the inner GiveUp keeps its kind and is never retried again."""

from __future__ import annotations

import pytest

from regen.retry import GiveUp, Kind, Policy, Retryable, classify, test_mode


def test_a_nested_give_up_keeps_its_kind_and_is_not_retried() -> None:
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Retryable("503", kind=Kind.SERVER_ERROR, status=503)

    inner = Policy(attempts=2, timeout=None, wait=0)
    outer = Policy(attempts=3, timeout=None, wait=0, retry_unknown=True)
    with test_mode(), pytest.raises(GiveUp) as caught:
        outer.call(inner.call, flaky)
    assert calls == 2  # 2 inner attempts, not 2 x 3
    assert caught.value.kind is Kind.SERVER_ERROR
    assert len(caught.value.attempts) == 1
    failure = classify(caught.value.__cause__)  # type: ignore[arg-type]
    assert (failure.kind, failure.retry, failure.reason) == (Kind.SERVER_ERROR, False, "gave_up")
