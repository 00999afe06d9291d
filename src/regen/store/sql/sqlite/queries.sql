-- Named queries of the SQLite store. Each block starts with "-- name: NAME" and runs as one
-- statement with named parameters (:param). Loaded by regen.store._queries. Rows of a run
-- in other tables are keyed by the run's number (runs.key).

-- name: insert_run
INSERT INTO runs (id, flow, flow_ref, business_key, params, status, created_at, updated_at,
                  max_retries, retry_delay)
VALUES (:id, :flow, :flow_ref, :business_key, :params, 'queued', :now, :now, :max_retries,
        :retry_delay)
ON CONFLICT (flow, business_key) DO NOTHING;

-- name: insert_step
INSERT INTO steps (run, position, name, kind, status)
VALUES (:run, :position, :name, :kind, 'pending');

-- name: get_run
SELECT * FROM runs WHERE id = :id;

-- name: find_run
SELECT * FROM runs WHERE flow = :flow AND business_key = :business_key;

-- name: list_runs
SELECT * FROM runs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:flow IS NULL OR flow = :flow)
  AND (:id_prefix IS NULL OR substr(id, 1, length(:id_prefix)) = :id_prefix)
  AND (:before IS NULL OR created_at < :before)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: get_steps
SELECT * FROM steps WHERE run = :run ORDER BY position;

-- name: get_items
SELECT * FROM items
WHERE run = :run AND step = :step AND idx > :after AND (:status IS NULL OR status = :status)
ORDER BY idx
LIMIT :limit;

-- name: item_states
SELECT idx, status FROM items
WHERE run = :run AND step = :step AND idx > :after
ORDER BY idx
LIMIT :limit;

-- name: count_items
SELECT status, count(*) AS n FROM items WHERE run = :run AND step = :step GROUP BY status;

-- name: claim_candidate
SELECT id FROM runs
WHERE (:flows IS NULL OR flow IN (SELECT value FROM json_each(:flows)))
  AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now))
ORDER BY created_at, id
LIMIT 1;

-- name: claim_named
SELECT id FROM runs
WHERE id = :run_id AND (:flows IS NULL OR flow IN (SELECT value FROM json_each(:flows)))
  AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now));

-- name: claim_run
UPDATE runs
SET status = 'running', lease_owner = :owner, lease_token = :token,
    lease_expires_at = :expires_at, updated_at = :now, executions = executions + 1,
    crashes = crashes + (status = 'running'),
    started_at = CASE WHEN status = 'queued' THEN :now ELSE started_at END
WHERE key = :run;

-- name: heartbeat
UPDATE runs SET lease_expires_at = :expires_at
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING cancel_requested;

-- name: check_lease
SELECT key, flow, cancel_requested,
       (SELECT COALESCE(max(seq), 0) FROM events WHERE run = runs.key) AS last_seq
FROM runs
WHERE id = :run_id AND lease_token = :token AND status = 'running';

-- name: last_seq
-- The run's last event number (the next one is last_seq + 1).
SELECT COALESCE(max(seq), 0) FROM events WHERE run = :run;

-- name: insert_event
INSERT INTO events (run, seq, at, type, data) VALUES (:run, :seq, :at, :type, :data);

-- name: read_events
SELECT id, seq, at, type, data FROM events
WHERE run = (SELECT key FROM runs WHERE id = :run_id) AND seq > :after
ORDER BY seq
LIMIT :limit;

-- name: start_step
-- A map step's items are closed to other workers until its executor opens them again.
UPDATE steps
SET status = 'running', started_at = :at, finished_at = NULL, error = NULL, quota = NULL,
    items_total = NULL
WHERE run = :run AND position = :position;

-- name: end_step
-- A step's end; its checkpoint (output) is kept only when given.
UPDATE steps
SET status = :status, finished_at = :at, error = :error, refresh = 0,
    output = COALESCE(:output, output),
    checkpointed_at = CASE WHEN :output IS NULL THEN checkpointed_at ELSE :at END
WHERE run = :run AND position = :position;

-- name: step_attempts
UPDATE steps SET attempts = :attempts WHERE run = :run AND position = :position;

-- name: item_start
INSERT INTO items (run, step, idx, key, status, input, started_at)
VALUES (:run, :step, :idx, :key, 'running', :input, :at)
ON CONFLICT (run, step, idx) DO UPDATE
SET status = 'running', key = excluded.key, input = excluded.input,
    started_at = excluded.started_at, finished_at = NULL;

-- name: item_end
INSERT INTO items (run, step, idx, key, status, input, output, attempts, errors, cached,
                   started_at, finished_at, provider)
VALUES (:run, :step, :idx, :key, :status, :input, :output, :attempts, :errors, :cached,
        :at, :at, :provider)
ON CONFLICT (run, step, idx) DO UPDATE
SET status = excluded.status, output = excluded.output, attempts = excluded.attempts,
    errors = excluded.errors, cached = excluded.cached, finished_at = excluded.finished_at,
    provider = excluded.provider,
    key = COALESCE(excluded.key, items.key), input = COALESCE(excluded.input, items.input);

-- name: item_add
INSERT INTO items (run, step, idx, key, status, input)
VALUES (:run, :step, :idx, :key, 'pending', :input)
ON CONFLICT (run, step, idx) DO NOTHING;

-- name: open_items
UPDATE steps SET quota = :quota, items_total = :total
WHERE run = :run AND position = :position;

-- name: skip_pending_items
-- The quota is met: items not started, and any a dead worker left running, are skipped.
UPDATE items
SET status = 'skipped', finished_at = :at, lease_token = NULL, lease_expires_at = NULL
WHERE run = :run AND step = :step AND status IN ('pending', 'running');

-- name: item_finish
-- An item's end under its claim: nothing changes unless it still runs under that token.
UPDATE items
SET status = :status, output = :output, attempts = :attempts, errors = :errors,
    cached = :cached, finished_at = :at, lease_token = NULL, lease_expires_at = NULL,
    provider = :provider
WHERE run = :run AND step = :step AND idx = :idx AND lease_token = :token
  AND status = 'running';

-- name: step_quota
SELECT quota FROM steps WHERE run = :run AND name = :step;

-- name: items_succeeded
SELECT count(*) FROM items WHERE run = :run AND step = :step AND status = 'succeeded';

-- name: items_running_leased
-- Items running under a lease that still holds (a claim leaves them to their worker).
SELECT count(*) FROM items
WHERE run = :run AND step = :step AND status IN ('pending', 'running')
  AND status = 'running' AND lease_expires_at >= :now;

-- name: open_map_step
-- The oldest running run's map step whose items are open and claimable, for a worker with
-- room to help: runs it holds the lease of, and steps it already runs items of, are left
-- to it.
SELECT r.id AS run_id, s.name AS step FROM runs AS r
JOIN steps AS s ON s.run = r.key
WHERE r.status = 'running' AND r.cancel_requested = 0
  AND (r.lease_owner IS NULL OR r.lease_owner <> :owner)
  AND (:flows IS NULL OR r.flow IN (SELECT value FROM json_each(:flows)))
  AND s.kind = 'map' AND s.status = 'running' AND s.items_total IS NOT NULL
  AND EXISTS (
      SELECT 1 FROM items AS i
      WHERE i.run = r.key AND i.step = s.name AND i.status IN ('pending', 'running')
        AND (i.status = 'pending' OR i.lease_expires_at IS NULL OR i.lease_expires_at < :now)
  )
  AND NOT EXISTS (
      SELECT 1 FROM items AS mine
      WHERE mine.worker = :owner AND mine.lease_token IS NOT NULL AND mine.run = r.key
        AND mine.step = s.name
  )
ORDER BY r.created_at, r.id, s.position
LIMIT 1;

-- name: step_named
SELECT * FROM steps WHERE run = :run AND name = :step;

-- name: lease_items
-- Pending items, and running ones whose worker's lease expired, in order.
UPDATE items
SET status = 'running', worker = :owner, lease_token = :token, lease_expires_at = :expires_at,
    started_at = :now, finished_at = NULL
WHERE run = :run AND step = :step AND idx IN (
    SELECT idx FROM items
    WHERE run = :run AND step = :step AND status IN ('pending', 'running')
      AND (status = 'pending' OR lease_expires_at IS NULL OR lease_expires_at < :now)
    ORDER BY idx
    LIMIT :limit
)
RETURNING *;

-- name: release_items
-- Items claimed under a token and not ended go back to pending, for any worker to claim.
UPDATE items
SET status = 'pending', worker = NULL, lease_token = NULL, lease_expires_at = NULL,
    started_at = NULL
WHERE run = (SELECT key FROM runs WHERE id = :run_id) AND step = :step
  AND lease_token = :token AND status = 'running';

-- name: heartbeat_items
UPDATE items SET lease_expires_at = :expires_at
WHERE worker = :owner AND lease_token IN (SELECT value FROM json_each(:tokens));

-- name: check_item_lease
-- The run, while it runs and the worker still holds the lease of some item of the step.
SELECT key, cancel_requested,
       (SELECT COALESCE(max(seq), 0) FROM events WHERE run = runs.key) AS last_seq
FROM runs
WHERE id = :run_id AND status = 'running'
  AND EXISTS (
      SELECT 1 FROM items
      WHERE run = runs.key AND step = :step AND worker = :owner AND lease_token IS NOT NULL
  );

-- name: finish_run
UPDATE runs
SET status = :status, error = :error, finished_at = :at, updated_at = :at,
    retry_at = :retry_at, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    cancel_requested = 0
WHERE key = :run;

-- name: open_steps
SELECT name, status FROM steps
WHERE run = :run AND status IN ('pending', 'running')
ORDER BY position;

-- name: skip_pending_steps
UPDATE steps SET status = 'skipped' WHERE run = :run AND status = 'pending';

-- name: fail_running_steps
UPDATE steps SET status = 'failed', error = :error, finished_at = :at
WHERE run = :run AND status = 'running';

-- name: requeue_run
UPDATE runs
SET status = 'queued', retry_count = retry_count + 1, auto_retries = auto_retries + :auto,
    retry_at = NULL, error = NULL,
    finished_at = NULL, updated_at = :now, cancel_requested = 0, lease_owner = NULL,
    lease_token = NULL, lease_expires_at = NULL
WHERE key = :run;

-- name: release_run
UPDATE runs
SET status = 'queued', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = :now
WHERE key = :run;

-- name: reopen_step
UPDATE steps SET status = 'pending', error = NULL, output = NULL, finished_at = NULL
WHERE run = :run AND position = :position;

-- name: reopen_items
UPDATE items SET status = 'pending', lease_token = NULL, lease_expires_at = NULL
WHERE run = :run AND step = :step AND status IN ('given_up', 'running');

-- name: invalidate_steps
UPDATE steps
SET status = 'pending', output = NULL, error = NULL, started_at = NULL, finished_at = NULL,
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
ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at;

-- name: artifact_ref
INSERT INTO artifact_refs (sha256, run, step, idx)
VALUES (:sha256, :run, :step, :idx)
ON CONFLICT DO NOTHING;

-- name: get_artifact
SELECT * FROM artifacts WHERE sha256 = :sha256;

-- name: expire_checkpoints
-- Runs finished long ago that can no longer be retried lose their checkpoints.
UPDATE runs SET checkpoints_expired = 1
WHERE status IN ('failed', 'partial', 'cancelled') AND retry_at IS NULL
  AND checkpoints_expired = 0 AND finished_at < :before
RETURNING key;

-- name: expire_step_outputs
UPDATE steps SET output = NULL WHERE run = :run AND output IS NOT NULL;

-- name: expire_items
DELETE FROM items WHERE run = :run;

-- name: delete_old_runs
-- Rows of other tables go with the run (ON DELETE CASCADE).
DELETE FROM runs
WHERE status IN ('succeeded', 'partial', 'failed', 'cancelled') AND retry_at IS NULL
  AND finished_at < :before;

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

-- name: run_key
SELECT key FROM runs WHERE id = :run_id;

-- name: add_health_check
INSERT INTO health_checks (provider, at, status, latency_ms, error, quota_remaining)
VALUES (:provider, :at, :status, :latency_ms, :error, :quota_remaining);

-- name: health_history
SELECT * FROM health_checks WHERE provider = :provider ORDER BY id DESC LIMIT :limit;

-- name: latest_health
SELECT * FROM health_checks
WHERE id IN (SELECT max(id) FROM health_checks GROUP BY provider)
ORDER BY provider;

-- name: prune_health_checks
-- Keep the newest :keep checks of each provider.
DELETE FROM health_checks
WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY provider ORDER BY id DESC) AS newer
        FROM health_checks
    )
    WHERE newer > :keep
);

-- name: read_all_events
-- Events of every run after a cursor, oldest first (types starting with :prefix only).
SELECT e.id, e.seq, e.at, e.type, e.data, r.id AS run_id FROM events AS e
JOIN runs AS r ON r.key = e.run
WHERE e.id > :after AND (:prefix IS NULL OR substr(e.type, 1, length(:prefix)) = :prefix)
ORDER BY e.id
LIMIT :limit;

-- name: newest_event
SELECT COALESCE(max(id), 0) FROM events;

-- name: drop_event_placeholders
DELETE FROM events WHERE run IS NULL AND id < :id;

-- name: keep_event_number
-- A placeholder holding the newest event number after the events that had it were
-- deleted: the next event is numbered after it, so no reader's cursor meets a number twice.
INSERT INTO events (id, run, seq, at, type, data)
VALUES (:id, NULL, 0, 0, 'cursor.kept', '{}');

-- name: delete_run
-- Rows of other tables go with the run (ON DELETE CASCADE).
DELETE FROM runs WHERE key = :run;

-- name: state_get
SELECT value FROM shared_state WHERE key = :key;

-- name: state_put
INSERT INTO shared_state (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: state_delete
DELETE FROM shared_state WHERE key = :key;

-- name: state_read
-- Every value whose key starts with :prefix.
SELECT key, value FROM shared_state
WHERE substr(key, 1, length(:prefix)) = :prefix
ORDER BY key;

-- name: add_count
INSERT INTO provider_counts (bucket, provider, kind, name, n)
VALUES (:bucket, :provider, :kind, :name, :n)
ON CONFLICT (bucket, provider, kind, name) DO UPDATE SET n = n + excluded.n;

-- name: read_counts
-- Totals over the buckets starting at or after :since (all when it is NULL).
SELECT provider, kind, name, sum(n) AS n FROM provider_counts
WHERE :since IS NULL OR bucket >= :since
GROUP BY provider, kind, name
ORDER BY provider, kind, name;

-- name: prune_counts
DELETE FROM provider_counts WHERE bucket < :before;
