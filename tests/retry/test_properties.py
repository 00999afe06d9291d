"""Properties of waits, deadlines and attempt counts, over many random policies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from regen import GiveUp, Policy, Retryable, test_mode

policies = st.builds(
    Policy,
    attempts=st.integers(1, 30),
    timeout=st.one_of(st.none(), st.floats(0.01, 100)),
    deadline=st.one_of(st.none(), st.floats(0.1, 500)),
    wait=st.floats(0, 10),
    multiplier=st.floats(1, 4),
    max_wait=st.floats(10, 60),
    jitter=st.floats(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    durations=st.lists(st.floats(0, 50), min_size=1, max_size=30),
    retry_afters=st.lists(st.one_of(st.none(), st.floats(0, 200)), min_size=1, max_size=30),
)
def test_waits_attempts_and_deadline_stay_within_the_policy(
    policy: Policy, durations: list[float], retry_afters: list[float | None]
) -> None:
    calls = 0
    with test_mode() as clock:
        start = clock.monotonic()

        def failing() -> None:
            nonlocal calls
            clock.advance(durations[calls % len(durations)])  # type: ignore[attr-defined]
            retry_after = retry_afters[calls % len(retry_afters)]
            calls += 1
            raise Retryable("flaky", kind="server_error", retry_after=retry_after)

        try:
            policy.call(failing)
        except GiveUp as error:
            attempts = error.attempts
        sleeps = clock.sleeps  # type: ignore[attr-defined]

    assert 1 <= calls == len(attempts) <= policy.attempts
    assert len(sleeps) == calls - 1
    assert all(s <= max(policy.max_wait, policy.retry_after_max) for s in sleeps)
    for attempt, retry_after in zip(attempts, retry_afters * 30, strict=False):
        if attempt.wait is not None and retry_after is None:
            assert attempt.wait <= policy.max_wait
    if policy.deadline is not None:
        assert sum(sleeps) <= policy.deadline
        # The call stops starting attempts once the deadline has passed.
        last_start = clock.now - attempts[-1].duration - start  # type: ignore[attr-defined]
        assert last_start < policy.deadline
