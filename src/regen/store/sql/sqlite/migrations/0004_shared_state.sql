-- Migration 4: state shared by every worker (breakers, limits) and per-minute counters
-- of provider calls.

-- Small JSON values every worker shares, under string keys (circuit breakers, rate
-- limits); each is changed by one read-modify-write transaction.
CREATE TABLE shared_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Per-minute counters of provider calls (attempts, retries, give-ups, calls saved...),
-- by provider, failure kind ('' when not per kind) and name; buckets past the retention
-- window are deleted by the clean-up.
CREATE TABLE provider_counts (
    bucket REAL NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (bucket, provider, kind, name)
) WITHOUT ROWID;
