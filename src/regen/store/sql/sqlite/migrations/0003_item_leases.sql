-- Migration 3: map-step items spread across workers. A map step records its quota and
-- its item count once its items are all in the items table; each item records the worker
-- that runs it and that worker's lease on it. The two tables are rebuilt (SQLite adds a
-- column only at the end of a table's text, after its key), their rows copied.

ALTER TABLE steps RENAME TO steps_v2;
ALTER TABLE items RENAME TO items_v2;

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
    PRIMARY KEY (run, step, idx)
) WITHOUT ROWID;

INSERT INTO steps (run, position, name, kind, status, output, error, attempts, generation, refresh, started_at, finished_at, checkpointed_at)
SELECT run, position, name, kind, status, output, error, attempts, generation, refresh, started_at, finished_at, checkpointed_at FROM steps_v2;

INSERT INTO items (run, step, idx, key, status, input, output, attempts, errors, cached, started_at, finished_at)
SELECT run, step, idx, key, status, input, output, attempts, errors, cached, started_at, finished_at FROM items_v2;

DROP TABLE steps_v2;
DROP TABLE items_v2;

CREATE INDEX items_open ON items (run, step, idx) WHERE status IN ('pending', 'running');

CREATE INDEX items_leased ON items (worker) WHERE lease_token IS NOT NULL;
