-- Named queries of the SQLite store. Each block starts with "-- name: NAME" and runs as one
-- statement with named parameters (:param), or positional ones (?) on the hot path of
-- commits. Loaded by regen.store._queries. Rows of a run in other tables are keyed by the
-- run's number (runs.key); queries that start from a run's id look it up first.

-- name: insert_run
INSERT INTO runs (id, flow, flow_ref, business_key, params, steps, status, created_at,
                  updated_at, max_retries, retry_delay)
VALUES (:id, :flow, :flow_ref, :business_key, :params, :steps, 'queued', :now, :now,
        :max_retries, :retry_delay)
ON CONFLICT (flow, business_key) DO NOTHING;

-- name: materialize_steps
-- Give every declared step of the run its row (pending), before the projection or a
-- retry writes step state; existing rows are kept.
INSERT INTO steps (run, position, name, kind, status)
SELECT ?1, key, value ->> 0, value ->> 1, 'pending'
FROM json_each((SELECT steps FROM runs WHERE key = ?1)) WHERE true
ON CONFLICT (run, position) DO NOTHING;

-- Runs are read with the columns in the order regen.store._sqlite_rows.run expects (the
-- declared steps are left out: get_steps reads them).

-- name: get_run
SELECT id, flow, flow_ref, business_key, params, status, created_at, updated_at, started_at,
       finished_at, lease_owner, lease_expires_at, cancel_requested, retry_count,
       max_retries, retry_delay, retry_at, executions, error, checkpoints_expired, key
FROM runs WHERE id = :id;

-- name: run_key
SELECT key FROM runs WHERE id = ?;

-- name: find_run
SELECT id, flow, flow_ref, business_key, params, status, created_at, updated_at, started_at,
       finished_at, lease_owner, lease_expires_at, cancel_requested, retry_count,
       max_retries, retry_delay, retry_at, executions, error, checkpoints_expired, key
FROM runs WHERE flow = :flow AND business_key = :business_key;

-- name: list_runs
SELECT id, flow, flow_ref, business_key, params, status, created_at, updated_at, started_at,
       finished_at, lease_owner, lease_expires_at, cancel_requested, retry_count,
       max_retries, retry_delay, retry_at, executions, error, checkpoints_expired, key
FROM runs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:flow IS NULL OR flow = :flow)
  AND (:before IS NULL OR created_at < :before)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: get_steps
-- The declared steps with the state kept in the table (none: pending).
SELECT ?1, d.key, d.value ->> 0, d.value ->> 1, COALESCE(s.status, 'pending'), e.output,
       s.error, COALESCE(s.attempts, 0), COALESCE(s.generation, 0), COALESCE(s.refresh, 0),
       s.started_at, s.finished_at, s.checkpointed_at
FROM json_each((SELECT steps FROM runs WHERE key = ?2)) AS d
LEFT JOIN steps AS s ON s.run = ?2 AND s.position = d.key
LEFT JOIN events AS e ON e.id = (?2 << 32) + s.output_seq
ORDER BY d.key;

-- name: step_names
SELECT steps FROM runs WHERE key = ?;

-- name: unprojected
-- (A run's events are the ids from run << 32; its sequence numbers the low 32 bits.)
SELECT id & 4294967295, at, position, state, output IS NOT NULL, error, next FROM events
WHERE id > (?1 << 32) + (SELECT projected_seq FROM runs WHERE key = ?1)
  AND id < (?1 + 1) << 32 AND position IS NOT NULL
ORDER BY id;

-- name: unprojected_rows
SELECT id & 4294967295 AS seq, at, position, state, output, error, next FROM events
WHERE id > (?1 << 32) + (SELECT projected_seq FROM runs WHERE key = ?1)
  AND id < (?1 + 1) << 32 AND position IS NOT NULL
ORDER BY id;

-- name: mark_projected
UPDATE runs
SET projected_seq = COALESCE((SELECT (id & 4294967295) + (next IS NOT NULL) FROM events
                              WHERE id >= ?1 << 32 AND id < (?1 + 1) << 32
                              ORDER BY id DESC LIMIT 1), 0)
WHERE key = ?1;

-- name: step_event
INSERT INTO events (id, at, type, data, position, state, output, error, next)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: step_event_guarded
-- A step transition committed on its own (autocommit: one statement, one transaction),
-- written only while the lease ?11 holds and no cancellation is pending; otherwise no row.
INSERT INTO events (id, at, type, data, position, state, output, error, next)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM runs
WHERE key = ?10 AND lease_token = ?11 AND status = 'running' AND cancel_requested = 0;

-- name: get_items
SELECT :run_id AS run_id, * FROM items
WHERE run = (SELECT key FROM runs WHERE id = :run_id) AND step = :step AND idx > :after
  AND (:status IS NULL OR status = :status)
ORDER BY idx
LIMIT :limit;

-- name: item_states
SELECT idx, status FROM items
WHERE run = (SELECT key FROM runs WHERE id = :run_id) AND step = :step AND idx > :after
ORDER BY idx
LIMIT :limit;

-- name: count_items
SELECT status, count(*) AS n FROM items
WHERE run = (SELECT key FROM runs WHERE id = :run_id) AND step = :step
GROUP BY status;

-- name: claim_candidate
SELECT id, status FROM runs
WHERE (:run_id IS NULL OR id = :run_id)
  AND (:flows IS NULL OR flow IN (SELECT value FROM json_each(:flows)))
  AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now))
ORDER BY created_at, id
LIMIT 1;

-- name: claim_named
SELECT id, status FROM runs
WHERE id = :run_id AND (:flows IS NULL OR flow IN (SELECT value FROM json_each(:flows)))
  AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now));

-- name: claim_run
UPDATE runs
SET status = 'running', lease_owner = :owner, lease_token = :token,
    lease_expires_at = :expires_at, updated_at = :now, executions = executions + 1,
    started_at = CASE WHEN status = 'queued' THEN :now ELSE started_at END
WHERE id = :id;

-- name: heartbeat
UPDATE runs SET lease_expires_at = :expires_at
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING cancel_requested;

-- name: check_lease
SELECT key, cancel_requested FROM runs
WHERE id = ? AND lease_token = ? AND status = 'running';

-- name: check_lease_key
SELECT cancel_requested FROM runs
WHERE key = ? AND lease_token = ? AND status = 'running';

-- name: insert_event
INSERT INTO events (id, at, type, data)
VALUES (COALESCE((SELECT id + (next IS NOT NULL) FROM events
                  WHERE id >= :run << 32 AND id < (:run + 1) << 32
                  ORDER BY id DESC LIMIT 1), :run << 32) + 1, :at, :type, :data);

-- name: append_event
INSERT INTO events (id, at, type, data) VALUES (?, ?, ?, ?);

-- name: read_events
SELECT e.id & 4294967295, e.at, e.type, e.data, e.next
FROM runs AS r JOIN events AS e ON e.id >= (r.key << 32) + :after AND e.id < (r.key + 1) << 32
WHERE r.id = :run_id
ORDER BY e.id LIMIT :limit;

-- name: last_seq
SELECT (id & 4294967295) + (next IS NOT NULL) FROM events
WHERE id >= ?1 << 32 AND id < (?1 + 1) << 32 ORDER BY id DESC LIMIT 1;

-- name: project_step
UPDATE steps
SET status = ?3, started_at = COALESCE(?4, started_at), finished_at = ?5, error = ?6,
    output_seq = COALESCE(?7, output_seq), checkpointed_at = COALESCE(?8, checkpointed_at),
    refresh = CASE WHEN ?9 THEN 0 ELSE refresh END
WHERE run = ?1 AND position = ?2;

-- name: step_attempts
UPDATE steps SET attempts = ? WHERE run = ? AND position = ?;

-- name: item_start
INSERT INTO items (run, step, idx, key, status, input, started_at)
VALUES (?, ?, ?, ?, 'running', ?, ?)
ON CONFLICT (run, step, idx) DO UPDATE
SET status = 'running', key = excluded.key, input = excluded.input,
    started_at = excluded.started_at, finished_at = NULL;

-- name: item_end
INSERT INTO items (run, step, idx, key, status, input, output, attempts, errors, cached,
                   started_at, finished_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
ON CONFLICT (run, step, idx) DO UPDATE
SET status = excluded.status, output = excluded.output, attempts = excluded.attempts,
    errors = excluded.errors, cached = excluded.cached, finished_at = excluded.finished_at,
    key = COALESCE(excluded.key, items.key), input = COALESCE(excluded.input, items.input);

-- name: finish_run
UPDATE runs
SET status = :status, error = :error, finished_at = :at, updated_at = :at,
    retry_at = :retry_at, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    cancel_requested = 0
WHERE key = :run;

-- name: open_steps
-- The steps a cancellation closes (the table brought up to date first), in order.
SELECT name, status FROM steps
WHERE run = ? AND status IN ('pending', 'running')
ORDER BY position;

-- name: skip_pending_steps
UPDATE steps SET status = 'skipped' WHERE run = :run AND status = 'pending';

-- name: fail_running_steps
UPDATE steps SET status = 'failed', error = :error, finished_at = :at
WHERE run = :run AND status = 'running';

-- name: requeue_run
UPDATE runs
SET status = 'queued', retry_count = retry_count + 1, retry_at = NULL, error = NULL,
    finished_at = NULL, updated_at = :now, cancel_requested = 0
WHERE key = :run;

-- name: release_run
UPDATE runs
SET status = 'queued', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = :now
WHERE id = :run_id AND lease_token = :token AND status = 'running';

-- name: reopen_step
UPDATE steps SET status = 'pending', error = NULL, output_seq = NULL, finished_at = NULL
WHERE run = :run AND position = :position;

-- name: reopen_items
UPDATE items SET status = 'pending'
WHERE run = :run AND step = :step AND status IN ('given_up', 'running');

-- name: invalidate_steps
UPDATE steps
SET status = 'pending', output_seq = NULL, error = NULL, started_at = NULL, finished_at = NULL,
    checkpointed_at = NULL, attempts = 0,
    generation = generation + CASE WHEN checkpointed_at IS NOT NULL OR position = :named
                                   THEN 1 ELSE 0 END,
    refresh = 1
WHERE run = :run AND position >= :position;

-- name: delete_items_from
DELETE FROM items
WHERE run = :run
  AND step IN (SELECT name FROM steps WHERE run = :run AND position >= :position);

-- name: request_cancel
UPDATE runs SET cancel_requested = 1, updated_at = :now WHERE key = :run;

-- name: cache_get
SELECT value FROM cache WHERE key = :key AND (expires_at IS NULL OR expires_at > :now);

-- name: cache_put
INSERT INTO cache (key, step, value, created_at, expires_at)
VALUES (:key, :step, :value, :at, :expires_at)
ON CONFLICT (key) DO UPDATE
SET step = excluded.step, value = excluded.value, created_at = excluded.created_at,
    expires_at = excluded.expires_at;

-- name: artifact_put
INSERT INTO artifacts (sha256, size, content_type, width, height, created_at)
VALUES (:sha256, :size, :content_type, :width, :height, :now)
ON CONFLICT (sha256) DO NOTHING;

-- name: artifact_ref
INSERT INTO artifact_refs (sha256, run, step, idx)
VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: get_artifact
SELECT * FROM artifacts WHERE sha256 = :sha256;

-- name: expiring_runs
SELECT key FROM runs
WHERE status IN ('failed', 'partial', 'cancelled') AND retry_at IS NULL
  AND checkpoints_expired = 0 AND finished_at < :before;

-- name: expire_step_outputs
UPDATE events SET output = NULL
WHERE id >= ?1 << 32 AND id < (?1 + 1) << 32 AND output IS NOT NULL;

-- name: expire_items
DELETE FROM items
WHERE run IN (SELECT key FROM runs
                 WHERE status IN ('failed', 'partial', 'cancelled') AND retry_at IS NULL
                   AND checkpoints_expired = 0 AND finished_at < :before);

-- name: expire_runs
UPDATE runs SET checkpoints_expired = 1
WHERE status IN ('failed', 'partial', 'cancelled') AND retry_at IS NULL
  AND checkpoints_expired = 0 AND finished_at < :before;

-- name: old_runs
SELECT key FROM runs
WHERE status IN ('succeeded', 'partial', 'failed', 'cancelled') AND retry_at IS NULL
  AND finished_at < :before;

-- name: delete_events
DELETE FROM events WHERE id >= ?1 << 32 AND id < (?1 + 1) << 32;

-- name: delete_run
DELETE FROM runs WHERE key = ?;

-- name: unreferenced_artifacts
SELECT sha256 FROM artifacts AS a
WHERE a.created_at < :before
  AND NOT EXISTS (SELECT 1 FROM artifact_refs AS r WHERE r.sha256 = a.sha256)
  AND NOT EXISTS (SELECT 1 FROM cache AS c WHERE instr(c.value, a.sha256) > 0)
LIMIT :limit;

-- name: delete_artifact
DELETE FROM artifacts
WHERE sha256 = :sha256
  AND NOT EXISTS (SELECT 1 FROM artifact_refs AS r WHERE r.sha256 = :sha256);

-- name: purge_cache
DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at < :now;

-- name: due_retries
SELECT id FROM runs
WHERE status = 'failed' AND retry_at IS NOT NULL AND retry_at <= :now
  AND (:flows IS NULL OR flow IN (SELECT value FROM json_each(:flows)))
ORDER BY retry_at
LIMIT :limit;

-- name: next_retry_at
SELECT MIN(retry_at) FROM runs
WHERE status = 'failed' AND retry_at IS NOT NULL
  AND (:flows IS NULL OR flow IN (SELECT value FROM json_each(:flows)));
