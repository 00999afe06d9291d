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
    -- The name of the last commit made under a lease: a commit sent again after its
    -- answer was lost is recognised by it (see regen_commit).
    last_commit TEXT,
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
    -- The provider that served the item's last call, when it made one through regen's
    -- adapters (a fallback's name while the first provider was down).
    provider TEXT,
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

-- A run's writes applied by the server, so that committing them costs one round trip.
-- ``p_writes`` is a JSON array of objects, one per write, named by ``op`` with the write's
-- fields (regen.store._records: AddEvent, StartStep, EndStep, CountAttempt, StartItem,
-- EndItem, AddItems, OpenItems, SkipItems, PutCache, LinkArtifact, EndRun). The caller
-- holds the run's row lock (so the item ends of one run are counted against its step's
-- quota one after the other). Events are appended together at the end, numbered after
-- the run's last, under the advisory lock that hands out event ids in commit order (held
-- as briefly as possible), and a notification with the run's id goes to followers when
-- the transaction commits.
-- ``p_commit``, if given, is remembered as the run's last commit. Returns the run's last
-- event number.
CREATE FUNCTION regen_apply(
    p_run BIGINT, p_run_id TEXT, p_writes JSONB, p_commit TEXT DEFAULT NULL
) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    w RECORD;
    closing RECORD;
    v_seq INTEGER;
    v_ended TEXT;
    v_seqs INTEGER[] := '{}';
    v_ats DOUBLE PRECISION[] := '{}';
    v_types TEXT[] := '{}';
    v_datas TEXT[] := '{}';
BEGIN
    SELECT last_seq INTO v_seq FROM runs WHERE key = p_run;
    FOR w IN
        SELECT * FROM jsonb_to_recordset(p_writes) AS x (
            op TEXT, type TEXT, data TEXT, at DOUBLE PRECISION, position INTEGER,
            status TEXT, output TEXT, error TEXT, attempts TEXT, step TEXT, idx INTEGER,
            key TEXT, input TEXT, errors TEXT, cached BOOLEAN, value TEXT,
            expires_at DOUBLE PRECISION, sha256 TEXT, retry_at DOUBLE PRECISION,
            close_steps BOOLEAN, token TEXT, event TEXT, "rows" JSONB, quota INTEGER,
            total INTEGER, provider TEXT
        )
    LOOP
        CASE w.op
        WHEN 'AddEvent' THEN
            v_seq := v_seq + 1;
            v_seqs := v_seqs || v_seq; v_ats := v_ats || w.at;
            v_types := v_types || w.type; v_datas := v_datas || w.data;
        WHEN 'StartStep' THEN
            -- A map step's items are closed to other workers until its executor opens
            -- them again (OpenItems).
            UPDATE steps
            SET status = 'running', started_at = w.at, finished_at = NULL, error = NULL,
                quota = NULL, items_total = NULL
            WHERE run = p_run AND position = w.position;
            v_seq := v_seq + 1;
            v_seqs := v_seqs || v_seq; v_ats := v_ats || w.at;
            v_types := v_types || 'step.started'::TEXT; v_datas := v_datas || w.data;
        WHEN 'EndStep' THEN
            -- A step's end; its checkpoint (output) is kept only when given.
            UPDATE steps
            SET status = w.status, finished_at = w.at, error = w.error, refresh = FALSE,
                output = COALESCE(w.output, output),
                checkpointed_at = CASE WHEN w.output IS NULL THEN checkpointed_at ELSE w.at END
            WHERE run = p_run AND position = w.position;
            v_seq := v_seq + 1;
            v_seqs := v_seqs || v_seq; v_ats := v_ats || w.at;
            v_types := v_types || ('step.' || w.status); v_datas := v_datas || w.data;
        WHEN 'CountAttempt' THEN
            UPDATE steps SET attempts = w.attempts::INTEGER
            WHERE run = p_run AND position = w.position;
        WHEN 'StartItem' THEN
            INSERT INTO items (run, step, idx, key, status, input, started_at)
            VALUES (p_run, w.step, w.idx, w.key, 'running', w.input, w.at)
            ON CONFLICT (run, step, idx) DO UPDATE
            SET status = 'running', key = excluded.key, input = excluded.input,
                started_at = excluded.started_at, finished_at = NULL;
        WHEN 'EndItem' THEN
          IF w.token IS NOT NULL THEN
            -- An item's end under its claim: nothing changes unless it still runs under
            -- that token (fencing). A success the step's quota no longer needs is
            -- recorded as skipped, its output dropped. Its event, if given, is appended
            -- only when the item's row changed, named by the status recorded.
            UPDATE items
            SET status = decided.status,
                output = CASE WHEN decided.status = 'skipped' THEN NULL ELSE w.output END,
                attempts = w.attempts, errors = w.errors, cached = w.cached,
                finished_at = w.at, lease_token = NULL, lease_expires_at = NULL,
                provider = CASE WHEN decided.status = 'succeeded' THEN w.provider END
            FROM (
                SELECT CASE
                    WHEN w.status <> 'succeeded' THEN w.status
                    WHEN s.quota IS NULL THEN 'succeeded'
                    WHEN (SELECT count(*) FROM items AS done
                          WHERE done.run = p_run AND done.step = w.step
                            AND done.status = 'succeeded') >= s.quota
                        THEN 'skipped'
                    ELSE 'succeeded'
                END AS status
                FROM (SELECT (SELECT quota FROM steps
                              WHERE run = p_run AND name = w.step) AS quota) AS s
            ) AS decided
            WHERE items.run = p_run AND items.step = w.step AND items.idx = w.idx
              AND items.lease_token = w.token AND items.status = 'running'
            RETURNING items.status INTO v_ended;
            IF FOUND AND w.event IS NOT NULL THEN
                v_seq := v_seq + 1;
                v_seqs := v_seqs || v_seq; v_ats := v_ats || w.at;
                v_types := v_types || ('item.' || v_ended);
                v_datas := v_datas || CASE
                    WHEN v_ended = w.status THEN w.event
                    ELSE jsonb_build_object('step', w.step, 'item', w.idx, 'key', w.key,
                                            'reason', 'quota met')::TEXT
                    END;
            END IF;
          ELSE
            INSERT INTO items (run, step, idx, key, status, input, output, attempts, errors,
                               cached, started_at, finished_at, provider)
            VALUES (p_run, w.step, w.idx, w.key, w.status, w.input, w.output, w.attempts,
                    w.errors, w.cached, w.at, w.at, w.provider)
            ON CONFLICT (run, step, idx) DO UPDATE
            SET status = excluded.status, output = excluded.output,
                attempts = excluded.attempts, errors = excluded.errors,
                cached = excluded.cached, finished_at = excluded.finished_at,
                provider = excluded.provider,
                key = COALESCE(excluded.key, items.key),
                input = COALESCE(excluded.input, items.input);
          END IF;
        WHEN 'AddItems' THEN
            -- A map step's items, pending; those an earlier execution recorded are kept.
            INSERT INTO items (run, step, idx, key, status, input)
            SELECT p_run, w.step, (r.value ->> 0)::INTEGER, r.value ->> 1, 'pending',
                   r.value ->> 2
            FROM jsonb_array_elements(w."rows") AS r
            ORDER BY 3
            ON CONFLICT (run, step, idx) DO NOTHING;
        WHEN 'OpenItems' THEN
            -- Every item is recorded: any worker may claim them now. Idle workers of the
            -- run's flow hear it on regen_queue and come to help.
            UPDATE steps SET quota = w.quota, items_total = w.total
            WHERE run = p_run AND position = w.position;
            PERFORM pg_notify('regen_queue', (SELECT flow FROM runs WHERE key = p_run));
        WHEN 'SkipItems' THEN
            -- The quota is met: items not started, and any a dead worker left running.
            UPDATE items
            SET status = 'skipped', finished_at = w.at, lease_token = NULL,
                lease_expires_at = NULL
            WHERE run = p_run AND step = w.step AND status IN ('pending', 'running');
        WHEN 'PutCache' THEN
            INSERT INTO cache (key, step, value, created_at, expires_at)
            VALUES (w.key, w.step, w.value, w.at, w.expires_at)
            ON CONFLICT (key) DO UPDATE
            SET step = excluded.step, value = excluded.value,
                created_at = excluded.created_at, expires_at = excluded.expires_at;
        WHEN 'LinkArtifact' THEN
            INSERT INTO artifact_refs (sha256, run, step, idx)
            VALUES (w.sha256, p_run, w.step, w.idx)
            ON CONFLICT DO NOTHING;
        WHEN 'EndRun' THEN
            IF w.close_steps THEN
                -- The log's record of what the cancellation closed: step.failed for a
                -- step it stopped (with the run's error), step.skipped for each one that
                -- never ran.
                FOR closing IN
                    SELECT name, status FROM steps
                    WHERE run = p_run AND status IN ('pending', 'running')
                    ORDER BY position
                LOOP
                    v_seq := v_seq + 1;
                    v_seqs := v_seqs || v_seq; v_ats := v_ats || w.at;
                    IF closing.status = 'running' THEN
                        v_types := v_types || 'step.failed'::TEXT;
                        v_datas := v_datas || CASE
                            WHEN w.error IS NULL OR w.error::JSONB = 'null'::JSONB
                            THEN jsonb_build_object('step', closing.name)::TEXT
                            ELSE jsonb_build_object('step', closing.name,
                                                    'error', w.error::JSONB)::TEXT
                            END;
                    ELSE
                        v_types := v_types || 'step.skipped'::TEXT;
                        v_datas := v_datas || jsonb_build_object('step', closing.name)::TEXT;
                    END IF;
                END LOOP;
                UPDATE steps SET status = 'failed', error = w.error, finished_at = w.at
                WHERE run = p_run AND status = 'running';
                UPDATE steps SET status = 'skipped' WHERE run = p_run AND status = 'pending';
            END IF;
            UPDATE runs
            SET status = w.status, error = w.error, finished_at = w.at, updated_at = w.at,
                retry_at = w.retry_at, lease_owner = NULL, lease_token = NULL,
                lease_expires_at = NULL, cancel_requested = FALSE
            WHERE key = p_run;
        ELSE
            RAISE EXCEPTION 'regen_apply: unknown write %', w.op;
        END CASE;
    END LOOP;
    IF cardinality(v_seqs) > 0 THEN
        PERFORM pg_advisory_xact_lock(7233746113929900034);
        INSERT INTO events (run, seq, at, type, data)
        SELECT p_run, e.seq, e.at, e.type, e.data
        FROM unnest(v_seqs, v_ats, v_types, v_datas) AS e (seq, at, type, data)
        ORDER BY e.seq;
        PERFORM pg_notify('regen_events', p_run_id);
    END IF;
    IF cardinality(v_seqs) > 0 OR p_commit IS NOT NULL THEN
        UPDATE runs SET last_seq = v_seq, last_commit = COALESCE(p_commit, last_commit)
        WHERE key = p_run;
    END IF;
    RETURN v_seq;
END;
$$;

-- A run's commit under its lease, in one statement: the run's row is locked, the lease
-- checked under that lock (fencing: a holder that lost its lease writes nothing), and the
-- writes applied. ``p_commit`` names the commit: sent again after a connection was lost
-- before its answer came, a commit that had landed is recognised by it and not applied
-- twice (a lease holder commits one at a time, so the last one's name is enough).
CREATE FUNCTION regen_commit(
    p_run_id TEXT, p_token TEXT, p_commit TEXT, p_writes JSONB,
    OUT lease_held BOOLEAN, OUT cancel_asked BOOLEAN
) LANGUAGE plpgsql AS $$
DECLARE
    v_run runs%ROWTYPE;
BEGIN
    SELECT * INTO v_run FROM runs WHERE id = p_run_id FOR UPDATE;
    IF FOUND AND v_run.last_commit = p_commit THEN
        lease_held := TRUE;  -- it landed before: its outcome
        cancel_asked := v_run.cancel_requested;
        RETURN;
    END IF;
    IF NOT FOUND OR v_run.lease_token IS DISTINCT FROM p_token
       OR v_run.status <> 'running' THEN
        lease_held := FALSE;
        cancel_asked := FALSE;
        RETURN;
    END IF;
    PERFORM regen_apply(v_run.key, p_run_id, p_writes, p_commit);
    lease_held := TRUE;
    cancel_asked := v_run.cancel_requested;
END;
$$;

-- A new queued run with its pending steps and its writes (its run.queued event), in one
-- statement; the run as JSON with ``created``. With the business key of the flow already
-- taken, nothing is created and that run is the answer. Sent again after its answer was
-- lost, it finds the run it made (``created`` still true). Idle workers hear of the new
-- run on the regen_queue channel (the payload: the flow's name).
CREATE FUNCTION regen_create_run(
    p_id TEXT, p_flow TEXT, p_flow_ref TEXT, p_business_key TEXT, p_params TEXT,
    p_now DOUBLE PRECISION, p_max_retries INTEGER, p_retry_delay DOUBLE PRECISION,
    p_names TEXT[], p_kinds TEXT[], p_writes JSONB
) RETURNS JSONB
LANGUAGE plpgsql AS $$
DECLARE
    v_key BIGINT;
    v_run runs%ROWTYPE;
BEGIN
    INSERT INTO runs (id, flow, flow_ref, business_key, params, status, created_at,
                      updated_at, max_retries, retry_delay)
    VALUES (p_id, p_flow, p_flow_ref, p_business_key, p_params, 'queued', p_now, p_now,
            p_max_retries, p_retry_delay)
    ON CONFLICT DO NOTHING
    RETURNING key INTO v_key;
    IF v_key IS NULL THEN
        SELECT * INTO v_run FROM runs
        WHERE id = p_id OR (flow = p_flow AND business_key = p_business_key)
        ORDER BY id = p_id DESC
        LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        RETURN to_jsonb(v_run) || jsonb_build_object('created', v_run.id = p_id);
    END IF;
    INSERT INTO steps (run, position, name, kind, status)
    SELECT v_key, s.position - 1, s.name, s.kind, 'pending'
    FROM unnest(p_names, p_kinds) WITH ORDINALITY AS s (name, kind, position);
    PERFORM regen_apply(v_key, p_id, p_writes);
    PERFORM pg_notify('regen_queue', p_flow);
    SELECT * INTO v_run FROM runs WHERE key = v_key;
    RETURN to_jsonb(v_run) || jsonb_build_object('created', TRUE);
END;
$$;

-- Take a queued run, or a running one whose lease expired, and lease it to ``p_owner``
-- with ``p_token``, in one statement; the run as JSON with ``taken_over`` (its previous
-- worker was lost), or NULL when there is none. Without ``p_run_id``: the oldest
-- candidate, rows another worker is claiming right now skipped, not waited for, so
-- workers claiming at once each take a different run. With it: that run, a transaction
-- writing to it now waited for (the conditions are then checked again on the row it
-- left), as a claim waits for the write lock in SQLite.
CREATE FUNCTION regen_claim(
    p_owner TEXT, p_token TEXT, p_expires_at DOUBLE PRECISION, p_now DOUBLE PRECISION,
    p_run_id TEXT, p_flows TEXT[]
) RETURNS JSONB
LANGUAGE plpgsql AS $$
DECLARE
    v_key BIGINT;
    v_before TEXT;
    v_run runs%ROWTYPE;
BEGIN
    IF p_run_id IS NULL THEN
        SELECT key, status INTO v_key, v_before FROM runs
        WHERE (p_flows IS NULL OR flow = ANY(p_flows))
          AND (status = 'queued' OR (status = 'running' AND lease_expires_at < p_now))
        ORDER BY created_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
    ELSE
        SELECT key, status INTO v_key, v_before FROM runs
        WHERE id = p_run_id AND (p_flows IS NULL OR flow = ANY(p_flows))
          AND (status = 'queued' OR (status = 'running' AND lease_expires_at < p_now))
        FOR UPDATE;
    END IF;
    IF v_key IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE runs
    SET status = 'running', lease_owner = p_owner, lease_token = p_token,
        lease_expires_at = p_expires_at, updated_at = p_now, executions = executions + 1,
        crashes = crashes + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
        started_at = CASE WHEN status = 'queued' THEN p_now ELSE started_at END
    WHERE key = v_key
    RETURNING * INTO v_run;
    PERFORM regen_apply(v_key, v_run.id, jsonb_build_array(jsonb_build_object(
        'op', 'AddEvent', 'type', 'run.started', 'at', p_now,
        'data', jsonb_build_object(
            'execution', v_run.executions, 'resumed', v_before = 'running'
        )::TEXT
    )));
    RETURN to_jsonb(v_run) || jsonb_build_object('taken_over', v_before = 'running');
END;
$$;

-- Writes of items a worker runs under its claims on a run's map step, in one statement:
-- the run's row is locked and, under that lock, the run must still run and the worker
-- hold the lease of some item of the step (each item's end is then fenced by its own
-- claim's token in regen_apply). Several workers commit to one run, so no commit name is
-- kept: the run's last event number before and after tells the caller afterwards whether
-- a commit whose answer was lost took effect.
CREATE FUNCTION regen_commit_items(
    p_run_id TEXT, p_step TEXT, p_owner TEXT, p_writes JSONB,
    OUT lease_held BOOLEAN, OUT cancel_asked BOOLEAN, OUT seq_before INTEGER,
    OUT seq_after INTEGER
) LANGUAGE plpgsql AS $$
DECLARE
    v_run runs%ROWTYPE;
BEGIN
    SELECT * INTO v_run FROM runs
    WHERE id = p_run_id AND status = 'running'
      AND EXISTS (
          SELECT 1 FROM items
          WHERE run = runs.key AND step = p_step AND worker = p_owner
            AND lease_token IS NOT NULL
      )
    FOR UPDATE;
    IF NOT FOUND THEN
        lease_held := FALSE;
        cancel_asked := FALSE;
        RETURN;
    END IF;
    seq_before := v_run.last_seq;
    seq_after := regen_apply(v_run.key, p_run_id, p_writes);
    lease_held := TRUE;
    cancel_asked := v_run.cancel_requested;
END;
$$;
