-- Migration 3: state shared by every worker (breakers, limits) and per-minute counters
-- of provider calls.

-- Small JSON values every worker shares, under string keys (circuit breakers, rate
-- limits); each is changed by a compare-and-set on its text.
CREATE TABLE shared_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Per-minute counters of provider calls (attempts, retries, give-ups, calls saved...),
-- by provider, failure kind ('' when not per kind) and name; buckets past the retention
-- window are deleted by the clean-up.
CREATE TABLE provider_counts (
    bucket DOUBLE PRECISION NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (bucket, provider, kind, name)
);
