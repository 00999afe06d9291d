-- Migration 2: state written where it lives. Each event gets a row of its own (numbered
-- by run and seq), every step a row holding its state and checkpoint; the old tables are
-- rebuilt from what they held: step state is the table's, updated by the step events
-- written after its last projection, and a row that stood for two events becomes two.

ALTER TABLE runs RENAME TO runs_v1;
ALTER TABLE steps RENAME TO steps_v1;
ALTER TABLE items RENAME TO items_v1;
ALTER TABLE events RENAME TO events_v1;
ALTER TABLE artifact_refs RENAME TO artifact_refs_v1;
DROP INDEX runs_by_status;
DROP INDEX runs_by_created;
DROP INDEX artifact_refs_by_run;

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
    PRIMARY KEY (run, step, idx)
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (run, seq)
);

CREATE TABLE artifact_refs (
    sha256 TEXT NOT NULL REFERENCES artifacts (sha256) ON DELETE CASCADE,
    run INTEGER NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
    step TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (sha256, run, step, idx)
) WITHOUT ROWID;

CREATE INDEX artifact_refs_by_run ON artifact_refs (run);

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

INSERT INTO runs (key, id, flow, flow_ref, business_key, params, status, created_at,
                  updated_at, started_at, finished_at, lease_owner, lease_token,
                  lease_expires_at, cancel_requested, retry_count, auto_retries, max_retries,
                  retry_delay,
                  retry_at, executions, crashes, error, checkpoints_expired)
SELECT r.key, r.id, r.flow, r.flow_ref, r.business_key, r.params, r.status, r.created_at,
       r.updated_at, r.started_at, r.finished_at, r.lease_owner, r.lease_token,
       r.lease_expires_at, r.cancel_requested, r.retry_count, r.retry_count, r.max_retries,
       r.retry_delay,
       r.retry_at, r.executions, 0, r.error, r.checkpoints_expired
FROM runs_v1 AS r;

INSERT INTO events (run, seq, at, type, data)
SELECT run, seq, at, type, data FROM (
    SELECT e.id >> 32 AS run, e.id & 4294967295 AS seq, e.at, e.type, e.data
    FROM events_v1 AS e
    UNION ALL
    SELECT e.id >> 32, (e.id & 4294967295) + 1, e.at, 'step.started',
           json_object('step', json_extract(r.steps, '$[' || e.next || '][0]'),
                       'kind', json_extract(r.steps, '$[' || e.next || '][1]'))
    FROM events_v1 AS e JOIN runs_v1 AS r ON r.key = e.id >> 32
    WHERE e.next IS NOT NULL
)
ORDER BY run, seq;

WITH declared AS (
    SELECT r.key AS run, CAST(d.key AS INTEGER) AS position,
           json_extract(d.value, '$[0]') AS name, json_extract(d.value, '$[1]') AS kind
    FROM runs_v1 AS r, json_each(r.steps) AS d
),
moves AS (
    SELECT e.id >> 32 AS run, e.id & 4294967295 AS seq, e.position, e.state, e.output,
           e.error, e.at
    FROM events_v1 AS e JOIN runs_v1 AS r ON r.key = e.id >> 32
    WHERE e.position IS NOT NULL AND (e.id & 4294967295) > r.projected_seq
    UNION ALL
    SELECT e.id >> 32, (e.id & 4294967295) + 1, e.next, 'running', NULL, NULL, e.at
    FROM events_v1 AS e JOIN runs_v1 AS r ON r.key = e.id >> 32
    WHERE e.next IS NOT NULL AND (e.id & 4294967295) + 1 > r.projected_seq
),
last_move AS (
    SELECT m.* FROM moves AS m
    WHERE m.seq = (SELECT max(x.seq) FROM moves AS x
                   WHERE x.run = m.run AND x.position = m.position)
),
last_output AS (
    SELECT m.* FROM moves AS m
    WHERE m.seq = (SELECT max(x.seq) FROM moves AS x
                   WHERE x.run = m.run AND x.position = m.position AND x.output IS NOT NULL)
),
last_start AS (
    SELECT m.* FROM moves AS m
    WHERE m.seq = (SELECT max(x.seq) FROM moves AS x
                   WHERE x.run = m.run AND x.position = m.position AND x.state = 'running')
)
INSERT INTO steps (run, position, name, kind, status, output, error, attempts, generation,
                   refresh, started_at, finished_at, checkpointed_at)
SELECT d.run, d.position, d.name, d.kind,
       COALESCE(lm.state, s.status, 'pending'),
       COALESCE(lo.output, (SELECT o.output FROM events_v1 AS o
                            WHERE o.id = (d.run << 32) + s.output_seq)),
       CASE WHEN lm.state IS NULL THEN s.error WHEN lm.state = 'running' THEN NULL
            ELSE lm.error END,
       COALESCE(s.attempts, 0), COALESCE(s.generation, 0),
       CASE WHEN lm.state IN ('succeeded', 'partial') THEN 0 ELSE COALESCE(s.refresh, 0) END,
       COALESCE(ls.at, s.started_at),
       CASE WHEN lm.state IS NULL THEN s.finished_at WHEN lm.state = 'running' THEN NULL
            ELSE lm.at END,
       COALESCE(lo.at, s.checkpointed_at)
FROM declared AS d
LEFT JOIN steps_v1 AS s ON s.run = d.run AND s.position = d.position
LEFT JOIN last_move AS lm ON lm.run = d.run AND lm.position = d.position
LEFT JOIN last_output AS lo ON lo.run = d.run AND lo.position = d.position
LEFT JOIN last_start AS ls ON ls.run = d.run AND ls.position = d.position;

INSERT INTO items SELECT * FROM items_v1;
INSERT INTO artifact_refs SELECT * FROM artifact_refs_v1;

DROP TABLE artifact_refs_v1;
DROP TABLE items_v1;
DROP TABLE steps_v1;
DROP TABLE events_v1;
DROP TABLE runs_v1;
