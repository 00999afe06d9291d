-- regen's SQLite schema, current version. A new database is built from this file; an
-- older one is brought here by the files in migrations/ (a test checks both agree).
--
-- State is written where it lives: a run's row holds its status and lease, a step's row
-- its status and checkpoint, an item's row its outcome; the event log records what
-- happened, one row per event. A step's or an item's change and its event are written in
-- the same transaction.

-- One row per run of a flow. The lease columns say which process runs it and until when.
-- ``key`` numbers the runs of this database; the rows of a run in other tables are keyed
-- by it, so a new run's rows are appended at the end of their tables' b-trees (a random
-- text id would put them anywhere, splitting pages all over the file).
CREATE TABLE runs (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    flow TEXT NOT NULL,
    flow_ref TEXT,
    business_key TEXT,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- Retries of the run (manual and automatic), and of those the automatic ones, which
    -- alone count against max_retries.
    retry_count INTEGER NOT NULL DEFAULT 0,
    auto_retries INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 0,
    retry_delay REAL NOT NULL DEFAULT 0,
    retry_at REAL,
    executions INTEGER NOT NULL DEFAULT 0,
    -- Executions that ended with their process lost (a lease that expired mid-run).
    crashes INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    checkpoints_expired INTEGER NOT NULL DEFAULT 0,
    -- One run per business key and flow, whatever the concurrency.
    UNIQUE (flow, business_key)
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_created ON runs (created_at);

-- The steps of a run, all of them written when the run is created (pending), each with
-- its state and, once it has succeeded, its checkpoint (``output``, JSON).
CREATE TABLE steps (
    run INTEGER NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    refresh INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    checkpointed_at REAL,
    -- A map step's quota (need K successes) and how many items it has, written once its
    -- items are all recorded: from then on any worker may claim them.
    quota INTEGER,
    items_total INTEGER,
    PRIMARY KEY (run, position)
) WITHOUT ROWID;

-- The items of map steps: one row per item, recorded with its input when the step starts,
-- with its status, outcome and attempts.
CREATE TABLE items (
    run INTEGER NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    step TEXT NOT NULL,
    idx INTEGER NOT NULL,
    key TEXT,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    attempts TEXT,
    errors TEXT,
    cached INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    -- The worker that runs (or ran) the item, and its lease while it runs: a worker that
    -- dies loses its items when the lease expires; a write names the token (fencing).
    worker TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    -- The provider that served the item's last call, when it made one through regen's
    -- adapters (a fallback's name while the first provider was down).
    provider TEXT,
    PRIMARY KEY (run, step, idx)
) WITHOUT ROWID;
-- Items still to finish, in order: what a claim scans.
CREATE INDEX items_open ON items (run, step, idx) WHERE status IN ('pending', 'running');
-- Items under a lease, by worker: what a heartbeat extends.
CREATE INDEX items_leased ON items (worker) WHERE lease_token IS NOT NULL;

-- The append-only event log: one row per event, numbered per run (``seq`` from 1).
-- ``id`` orders every event of the database, a cursor for readers that follow all runs at
-- once; it is never reused: a clean-up that deletes the newest events leaves a
-- placeholder row (no run) holding the newest number, and new events are numbered after
-- it. (AUTOINCREMENT would guarantee the same at the cost of a write to sqlite_sequence
-- with every event.)
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run INTEGER REFERENCES runs (key) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (run, seq)
);

-- Content-addressed binary outputs (the bytes live in files named by sha256).
CREATE TABLE artifacts (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    created_at REAL NOT NULL
) WITHOUT ROWID;

-- Which runs use which artifacts; an artifact nobody refers to can be collected.
CREATE TABLE artifact_refs (
    sha256 TEXT NOT NULL REFERENCES artifacts (sha256) ON DELETE CASCADE,
    run INTEGER NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    step TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (sha256, run, step, idx)
) WITHOUT ROWID;
CREATE INDEX artifact_refs_by_run ON artifact_refs (run);

-- Results reused for identical inputs, keyed by a hash of step identity and inputs.
CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
) WITHOUT ROWID;

-- The provider health monitor's checks (the last ones per provider; older ones are
-- pruned by the clean-up).
CREATE TABLE health_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    latency_ms REAL,
    error TEXT,
    quota_remaining REAL
);
CREATE INDEX health_checks_by_provider ON health_checks (provider, id);

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
