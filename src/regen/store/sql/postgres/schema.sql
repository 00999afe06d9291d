-- regen's PostgreSQL schema, current version. A new database is built from this file; an
-- older one is brought here by the files in migrations/ (a test checks both agree).
--
-- The same tables as the SQLite store's, so both behave alike: state is written where it
-- lives (a run's row holds its status and lease, a step's row its status and checkpoint,
-- an item's row its outcome), and the event log records what happened, one row per event.
-- JSON is kept as text: the engine encodes it, and the store gives back exactly what it
-- was given. Times are seconds since the epoch (double precision), as in SQLite.

-- The schema version this database is at (one row).
CREATE TABLE regen_schema (
    version INTEGER NOT NULL
);

-- One row per run of a flow. The lease columns say which worker runs it and until when;
-- every write of a run checks its lease token in the transaction that writes (fencing).
CREATE TABLE runs (
    key BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    flow TEXT NOT NULL,
    flow_ref TEXT,
    business_key TEXT,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- Retries of the run (manual and automatic), and of those the automatic ones, which
    -- alone count against max_retries.
    retry_count INTEGER NOT NULL DEFAULT 0,
    auto_retries INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 0,
    retry_delay DOUBLE PRECISION NOT NULL DEFAULT 0,
    retry_at DOUBLE PRECISION,
    executions INTEGER NOT NULL DEFAULT 0,
    -- Executions that ended with their worker lost (a lease that expired mid-run).
    crashes INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    checkpoints_expired BOOLEAN NOT NULL DEFAULT FALSE,
    -- The sequence number of the run's last event (the next one is last_seq + 1).
    last_seq INTEGER NOT NULL DEFAULT 0,
    -- One run per business key and flow, whatever the concurrency.
    CONSTRAINT runs_flow_business_key UNIQUE (flow, business_key)
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_created ON runs (created_at);

-- The steps of a run, all of them written when the run is created (pending), each with
-- its state and, once it has succeeded, its checkpoint (``output``, JSON).
CREATE TABLE steps (
    run BIGINT NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    refresh BOOLEAN NOT NULL DEFAULT FALSE,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    checkpointed_at DOUBLE PRECISION,
    -- A map step's quota (need K successes) and how many items it has, written once its
    -- items are all recorded: from then on any worker may claim them.
    quota INTEGER,
    items_total INTEGER,
    PRIMARY KEY (run, position)
);

-- The items of map steps: one row per item, recorded with its input when the step starts,
-- with its status, outcome and attempts.
CREATE TABLE items (
    run BIGINT NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    step TEXT NOT NULL,
    idx INTEGER NOT NULL,
    key TEXT,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    attempts TEXT,
    errors TEXT,
    cached BOOLEAN NOT NULL DEFAULT FALSE,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    -- The worker that runs (or ran) the item, and its lease while it runs: a worker that
    -- dies loses its items when the lease expires; a write names the token (fencing).
    worker TEXT,
    lease_token TEXT,
    lease_expires_at DOUBLE PRECISION,
    PRIMARY KEY (run, step, idx)
);
-- Items still to finish, in order: what a claim scans.
CREATE INDEX items_open ON items (run, step, idx) WHERE status IN ('pending', 'running');
-- Items under a lease, by worker: what a heartbeat extends.
CREATE INDEX items_leased ON items (worker) WHERE lease_token IS NOT NULL;

-- The append-only event log: one row per event, numbered per run (``seq`` from 1).
-- ``id`` orders every event of the database, a cursor for readers that follow all runs.
-- Transactions that append events take one advisory lock just before they do, so ids are
-- handed out in commit order and a reader never sees a later id before an earlier one.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    run BIGINT NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    CONSTRAINT events_run_seq UNIQUE (run, seq)
);

-- Metadata of content-addressed binary outputs (the bytes live in files named by sha256,
-- in a folder every worker shares).
CREATE TABLE artifacts (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    created_at DOUBLE PRECISION NOT NULL
);

-- Which runs use which artifacts; an artifact nobody refers to can be collected.
CREATE TABLE artifact_refs (
    sha256 TEXT NOT NULL REFERENCES artifacts (sha256) ON DELETE CASCADE,
    run BIGINT NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    step TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (sha256, run, step, idx)
);
CREATE INDEX artifact_refs_by_run ON artifact_refs (run);

-- Results reused for identical inputs, keyed by a hash of step identity and inputs.
CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION
);

-- The provider health monitor's checks (the last ones per provider; older ones are
-- pruned by the clean-up).
CREATE TABLE health_checks (
    id BIGSERIAL PRIMARY KEY,
    provider TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    latency_ms DOUBLE PRECISION,
    error TEXT,
    quota_remaining DOUBLE PRECISION
);
CREATE INDEX health_checks_by_provider ON health_checks (provider, id);

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
