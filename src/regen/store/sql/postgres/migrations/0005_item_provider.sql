-- Migration 5: the provider that served each item (a fallback's name while the first
-- provider was down), kept on the item instead of only in its event; regen_apply records it.

ALTER TABLE items ADD COLUMN provider TEXT;

CREATE OR REPLACE FUNCTION regen_apply(
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
