-- Named queries of the PostgreSQL store. Each block starts with "-- name: NAME" and runs as
-- one statement with named parameters (%(param)s, psycopg's style). Loaded by
-- regen.store._queries. Rows of a run in other tables are keyed by the run's number
-- (runs.key). Lists arrive as arrays (``flow = ANY(%(flows)s)``); NULL means "any".

-- name: schema_version
SELECT version FROM regen_schema;

-- name: set_schema_version
UPDATE regen_schema SET version = %(version)s;

-- name: init_schema_version
INSERT INTO regen_schema (version) VALUES (%(version)s);

-- name: regen_tables
-- The tables that tell a regen database, an empty one and another application's apart.
SELECT tablename FROM pg_catalog.pg_tables
WHERE schemaname = current_schema() AND tablename IN ('regen_schema', 'runs');

-- name: schema_lock
-- Held while the schema is created or upgraded, so two workers starting at once do it once.
SELECT pg_advisory_xact_lock(7233746113929900033);

-- name: table_columns
SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = current_schema()
ORDER BY table_name, ordinal_position;

-- name: create_run
-- A new run in one statement (see regen_create_run in the schema).
SELECT regen_create_run(%(id)s, %(flow)s, %(flow_ref)s, %(business_key)s, %(params)s,
                        %(now)s, %(max_retries)s, %(retry_delay)s, %(names)s::text[],
                        %(kinds)s::text[], %(writes)s::jsonb) AS run;

-- name: claim
-- A claim in one statement (see regen_claim in the schema).
SELECT regen_claim(%(owner)s, %(token)s, %(expires_at)s, %(now)s, %(run_id)s::text,
                   %(flows)s::text[]) AS run;

-- name: claimed_with
-- The run a claim took with this token, and its run.started event's data.
SELECT r.*, e.data AS started FROM runs AS r
LEFT JOIN events AS e ON e.run = r.key AND e.seq = r.last_seq
WHERE r.lease_token = %(token)s;

-- name: commit
-- A run's writes under its lease, in one statement (see regen_commit in the schema).
SELECT lease_held, cancel_asked
FROM regen_commit(%(run_id)s, %(token)s, %(commit)s, %(writes)s::jsonb);

-- name: apply
-- Writes to a run whose row this transaction has locked (see regen_apply in the schema).
SELECT regen_apply(%(run)s, %(run_id)s, %(writes)s::jsonb);

-- name: notify_run
-- Followers of the run wake (its own execution, waiting for items other workers hold).
SELECT pg_notify('regen_events', %(run_id)s);

-- name: notify_queue
-- Wakes idle workers: a run of this flow can be claimed.
SELECT pg_notify('regen_queue', %(flow)s);

-- name: get_run
SELECT * FROM runs WHERE id = %(id)s;

-- name: lock_run
-- The run's row, locked until the transaction ends: writes to one run are serialised.
SELECT * FROM runs WHERE id = %(id)s FOR UPDATE;

-- name: find_run
SELECT * FROM runs WHERE flow = %(flow)s AND business_key = %(business_key)s;

-- name: list_runs
SELECT * FROM runs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(flow)s::text IS NULL OR flow = %(flow)s::text)
  AND (%(id_prefix)s::text IS NULL OR starts_with(id, %(id_prefix)s::text))
  AND (%(before)s::float8 IS NULL OR created_at < %(before)s::float8)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: get_steps
SELECT * FROM steps WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s)
ORDER BY position;

-- name: get_items
SELECT * FROM items
WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s) AND step = %(step)s
  AND idx > %(after)s AND (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY idx
LIMIT %(limit)s;

-- name: item_states
SELECT idx, status FROM items
WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s) AND step = %(step)s
  AND idx > %(after)s
ORDER BY idx
LIMIT %(limit)s;

-- name: count_items
SELECT status, count(*) AS n FROM items
WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s) AND step = %(step)s
GROUP BY status;

-- name: heartbeat
UPDATE runs SET lease_expires_at = %(expires_at)s
FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS lease (id, token)
WHERE runs.id = lease.id AND runs.lease_token = lease.token AND runs.status = 'running'
RETURNING runs.id, runs.cancel_requested;

-- name: check_lease
-- The lease holder's row, locked: the lease is checked in the transaction that writes.
SELECT key, flow FROM runs
WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running'
FOR UPDATE;

-- name: read_events
SELECT id, seq, at, type, data FROM events
WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s) AND seq > %(after)s
ORDER BY seq
LIMIT %(limit)s;

-- name: items_succeeded
SELECT count(*) AS n FROM items
WHERE run = %(run)s AND step = %(step)s AND status = 'succeeded';

-- name: items_running_leased
-- Items running under a lease that still holds (a claim leaves them to their worker).
SELECT count(*) AS n FROM items
WHERE run = %(run)s AND step = %(step)s AND status IN ('pending', 'running')
  AND status = 'running' AND lease_expires_at >= %(now)s;

-- name: open_map_step
-- The oldest running run's map step whose items are open and claimable, for a worker with
-- room to help: runs it holds the lease of, and steps it already runs items of, are left
-- to it.
SELECT r.id AS run_id, s.name AS step FROM runs AS r
JOIN steps AS s ON s.run = r.key
WHERE r.status = 'running' AND NOT r.cancel_requested
  AND r.lease_owner IS DISTINCT FROM %(owner)s
  AND (%(flows)s::text[] IS NULL OR r.flow = ANY(%(flows)s::text[]))
  AND s.kind = 'map' AND s.status = 'running' AND s.items_total IS NOT NULL
  AND EXISTS (
      SELECT 1 FROM items AS i
      WHERE i.run = r.key AND i.step = s.name AND i.status IN ('pending', 'running')
        AND (i.status = 'pending' OR i.lease_expires_at IS NULL
             OR i.lease_expires_at < %(now)s)
  )
  AND NOT EXISTS (
      SELECT 1 FROM items AS mine
      WHERE mine.worker = %(owner)s AND mine.lease_token IS NOT NULL AND mine.run = r.key
        AND mine.step = s.name
  )
ORDER BY r.created_at, r.id, s.position
LIMIT 1;

-- name: claim_lightly
-- A claim of map items need not wait for the disk: lost, it leaves its items pending.
SET LOCAL synchronous_commit TO OFF;

-- name: lock_step
-- Claims of a step with a quota count one at a time.
SELECT position FROM steps WHERE run = %(run)s AND name = %(step)s FOR UPDATE;

-- name: step_named
SELECT * FROM steps
WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s) AND name = %(step)s;

-- name: release_items
-- Items claimed under a token and not ended go back to pending, for any worker to claim.
UPDATE items
SET status = 'pending', worker = NULL, lease_token = NULL, lease_expires_at = NULL,
    started_at = NULL
WHERE run = (SELECT key FROM runs WHERE id = %(run_id)s) AND step = %(step)s
  AND lease_token = %(token)s AND status = 'running'
RETURNING (SELECT flow FROM runs WHERE id = %(run_id)s) AS flow;

-- name: claimed_items
-- The items a claim leased under this token that still run (the token is the claim's
-- own), with their run's id: what a claim whose answer was lost took.
SELECT r.id AS run_id, i.* FROM items AS i
JOIN runs AS r ON r.key = i.run
WHERE i.worker = %(owner)s AND i.lease_token = %(token)s AND i.status = 'running'
ORDER BY i.idx;

-- name: lease_items
-- Pending items, and running ones whose worker's lease expired, in order; rows another
-- transaction holds are skipped, not waited for. The rows picked (and locked) are updated
-- by their physical address: a plan that cannot scan the step's other items, whatever the
-- statistics of a table that just grew say.
WITH picked AS (
    SELECT ctid FROM items
    WHERE run = %(run)s AND step = %(step)s AND status IN ('pending', 'running')
      AND (status = 'pending' OR lease_expires_at IS NULL OR lease_expires_at < %(now)s)
    ORDER BY idx
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE items
SET status = 'running', worker = %(owner)s, lease_token = %(token)s,
    lease_expires_at = %(expires_at)s, started_at = %(now)s, finished_at = NULL
WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
RETURNING *;

-- name: heartbeat_items
UPDATE items SET lease_expires_at = %(expires_at)s
WHERE worker = %(owner)s AND lease_token = ANY(%(tokens)s::text[]);

-- name: commit_items
-- Writes of items run under a claim, in one statement (see regen_commit_items in the
-- schema).
SELECT lease_held, cancel_asked, seq_before, seq_after
FROM regen_commit_items(%(run_id)s, %(step)s, %(owner)s, %(writes)s::jsonb);

-- name: fail_running_steps
UPDATE steps SET status = 'failed', error = %(error)s, finished_at = %(at)s
WHERE run = %(run)s AND status = 'running';

-- name: requeue_run
UPDATE runs
SET status = 'queued', retry_count = retry_count + 1, auto_retries = auto_retries + %(auto)s,
    retry_at = NULL, error = NULL,
    finished_at = NULL, updated_at = %(now)s, cancel_requested = FALSE, lease_owner = NULL,
    lease_token = NULL, lease_expires_at = NULL
WHERE key = %(run)s;

-- name: release_run
UPDATE runs
SET status = 'queued', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = %(now)s
WHERE key = %(run)s;

-- name: reopen_step
UPDATE steps SET status = 'pending', error = NULL, output = NULL, finished_at = NULL
WHERE run = %(run)s AND position = %(position)s;

-- name: reopen_items
UPDATE items SET status = 'pending', lease_token = NULL, lease_expires_at = NULL
WHERE run = %(run)s AND step = %(step)s AND status IN ('given_up', 'running');

-- name: invalidate_steps
UPDATE steps
SET status = 'pending', output = NULL, error = NULL, started_at = NULL, finished_at = NULL,
    checkpointed_at = NULL, attempts = 0,
    generation = generation + CASE WHEN checkpointed_at IS NOT NULL OR position = %(named)s
                                   THEN 1 ELSE 0 END,
    refresh = TRUE
WHERE run = %(run)s AND position >= %(position)s;

-- name: delete_items_from
DELETE FROM items
WHERE run = %(run)s
  AND step IN (SELECT name FROM steps WHERE run = %(run)s AND position >= %(position)s);

-- name: request_cancel
UPDATE runs SET cancel_requested = TRUE, updated_at = %(now)s WHERE key = %(run)s;

-- name: cache_get
SELECT value FROM cache
WHERE key = %(key)s AND (expires_at IS NULL OR expires_at > %(now)s);

-- name: artifact_put
INSERT INTO artifacts (sha256, size, content_type, width, height, created_at)
VALUES (%(sha256)s, %(size)s, %(content_type)s, %(width)s, %(height)s, %(now)s)
ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at;

-- name: get_artifact
SELECT * FROM artifacts WHERE sha256 = %(sha256)s;

-- name: expire_checkpoints
-- Runs finished long ago that can no longer be retried lose their checkpoints.
UPDATE runs SET checkpoints_expired = TRUE
WHERE status IN ('failed', 'partial', 'cancelled') AND retry_at IS NULL
  AND NOT checkpoints_expired AND finished_at < %(before)s
RETURNING key;

-- name: expire_step_outputs
UPDATE steps SET output = NULL WHERE run = ANY(%(runs)s::bigint[]) AND output IS NOT NULL;

-- name: expire_items
DELETE FROM items WHERE run = ANY(%(runs)s::bigint[]);

-- name: delete_old_runs
-- Rows of other tables go with the run (ON DELETE CASCADE).
DELETE FROM runs
WHERE status IN ('succeeded', 'partial', 'failed', 'cancelled') AND retry_at IS NULL
  AND finished_at < %(before)s;

-- name: unreferenced_artifacts
SELECT sha256 FROM artifacts AS a
WHERE a.created_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM artifact_refs AS r WHERE r.sha256 = a.sha256)
  AND NOT EXISTS (SELECT 1 FROM cache AS c WHERE strpos(c.value, a.sha256) > 0)
LIMIT %(limit)s;

-- name: delete_artifact
DELETE FROM artifacts
WHERE sha256 = %(sha256)s
  AND NOT EXISTS (SELECT 1 FROM artifact_refs AS r WHERE r.sha256 = %(sha256)s);

-- name: purge_cache
DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at < %(now)s;

-- name: due_retries
SELECT id FROM runs
WHERE status = 'failed' AND retry_at IS NOT NULL AND retry_at <= %(now)s
  AND (%(flows)s::text[] IS NULL OR flow = ANY(%(flows)s::text[]))
ORDER BY retry_at
LIMIT %(limit)s;

-- name: next_retry_at
SELECT min(retry_at) FROM runs
WHERE status = 'failed' AND retry_at IS NOT NULL
  AND (%(flows)s::text[] IS NULL OR flow = ANY(%(flows)s::text[]));

-- name: add_health_check
INSERT INTO health_checks (provider, at, status, latency_ms, error, quota_remaining)
VALUES (%(provider)s, %(at)s, %(status)s, %(latency_ms)s, %(error)s, %(quota_remaining)s);

-- name: health_history
SELECT * FROM health_checks WHERE provider = %(provider)s ORDER BY id DESC LIMIT %(limit)s;

-- name: latest_health
SELECT * FROM health_checks
WHERE id IN (SELECT max(id) FROM health_checks GROUP BY provider)
ORDER BY provider;

-- name: prune_health_checks
-- Keep the newest %(keep)s checks of each provider.
DELETE FROM health_checks
WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY provider ORDER BY id DESC) AS newer
        FROM health_checks
    ) AS ranked
    WHERE newer > %(keep)s
);

-- name: read_all_events
-- Events of every run after a cursor, oldest first (types starting with %(prefix)s only).
SELECT e.id, e.seq, e.at, e.type, e.data, r.id AS run_id FROM events AS e
JOIN runs AS r ON r.key = e.run
WHERE e.id > %(after)s AND (%(prefix)s::text IS NULL OR starts_with(e.type, %(prefix)s::text))
ORDER BY e.id
LIMIT %(limit)s;

-- name: delete_run
-- Rows of other tables go with the run (ON DELETE CASCADE).
DELETE FROM runs WHERE key = %(run)s;

-- name: state_get
SELECT value FROM shared_state WHERE key = %(key)s;

-- name: state_insert
-- Compare-and-set from "absent": no row when another transaction put one first.
INSERT INTO shared_state (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO NOTHING;

-- name: state_swap
-- Compare-and-set: no row when the value is no longer the one read.
UPDATE shared_state SET value = %(value)s WHERE key = %(key)s AND value = %(old)s;

-- name: state_remove
DELETE FROM shared_state WHERE key = %(key)s AND value = %(old)s;

-- name: state_read
-- Every value whose key starts with %(prefix)s.
SELECT key, value FROM shared_state WHERE starts_with(key, %(prefix)s::text) ORDER BY key;

-- name: add_count
INSERT INTO provider_counts (bucket, provider, kind, name, n)
VALUES (%(bucket)s, %(provider)s, %(kind)s, %(name)s, %(n)s)
ON CONFLICT (bucket, provider, kind, name)
DO UPDATE SET n = provider_counts.n + excluded.n;

-- name: read_counts
-- Totals over the buckets starting at or after %(since)s (all when it is NULL).
SELECT provider, kind, name, sum(n)::bigint AS n FROM provider_counts
WHERE %(since)s::double precision IS NULL OR bucket >= %(since)s::double precision
GROUP BY provider, kind, name
ORDER BY provider, kind, name;

-- name: prune_counts
DELETE FROM provider_counts WHERE bucket < %(before)s;
