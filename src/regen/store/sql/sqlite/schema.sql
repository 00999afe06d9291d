-- regen's SQLite schema, current version. A new database is built from this file; an
-- older one is brought here by the files in migrations/ (a test checks both agree).

-- One row per run of a flow. The lease columns say which process runs it and until when.
-- ``key`` numbers the runs of this database; the rows of a run in other tables are keyed
-- by it, so a new run's events and items are appended at the end of their tables' b-trees
-- (a random text id would put them anywhere, splitting pages all over the file).
CREATE TABLE runs (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    flow TEXT NOT NULL,
    flow_ref TEXT,
    business_key TEXT,
    params TEXT NOT NULL,
    -- The declared steps, a JSON array of [name, kind] pairs in order.
    steps TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    retry_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 0,
    retry_delay REAL NOT NULL DEFAULT 0,
    retry_at REAL,
    executions INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    checkpoints_expired INTEGER NOT NULL DEFAULT 0,
    -- Step transitions up to this event are reflected in the steps table (see events).
    projected_seq INTEGER NOT NULL DEFAULT 0,
    -- One run per business key and flow, whatever the concurrency.
    UNIQUE (flow, business_key)
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_created ON runs (created_at);

-- The state of a run's steps, a projection of its step events (see events), kept here
-- only once a write needs it (a retry, a cancellation, a stream's attempt count): until
-- then a step has no row, its state is read from the events, and a run of quick steps
-- writes one table. output_seq points at the event that holds the step's checkpoint.
CREATE TABLE steps (
    run INTEGER NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    output_seq INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    refresh INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    checkpointed_at REAL,
    PRIMARY KEY (run, position)
) WITHOUT ROWID;

-- The items of map steps: one row per item started (or skipped), with its attempts.
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
    PRIMARY KEY (run, step, idx)
) WITHOUT ROWID;

-- The append-only event log, numbered per run. ``id`` packs the run's number and the
-- event's sequence number into one integer (run << 32 | seq), so the log is a rowid table
-- and a run's events are appended at the end of its b-tree, the cheapest insert SQLite
-- has (a run's events are the id range of its number). No foreign key: a cascade would
-- scan the log; the clean-up deletes a run's events by their range.
-- A step's transition is one event row that also carries the step's new state and, when
-- it succeeds, its checkpoint (output): a step's checkpoint and its event are written
-- together, touching a single table. When the same transition starts the next step
-- (``next``: its position), the row also stands for that step's ``step.started`` event,
-- number seq + 1, whose data (the step's name and kind) is read from the declared steps:
-- one row per step of a flow of quick steps.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    position INTEGER,
    state TEXT,
    output TEXT,
    error TEXT,
    next INTEGER
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
