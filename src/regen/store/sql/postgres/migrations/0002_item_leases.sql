-- Migration 2: map-step items spread across workers. A map step records its quota and
-- its item count once its items are all in the items table; each item records the worker
-- that runs it and that worker's lease on it.

ALTER TABLE steps ADD COLUMN quota INTEGER;
ALTER TABLE steps ADD COLUMN items_total INTEGER;

ALTER TABLE items ADD COLUMN worker TEXT;
ALTER TABLE items ADD COLUMN lease_token TEXT;
ALTER TABLE items ADD COLUMN lease_expires_at DOUBLE PRECISION;

CREATE INDEX items_open ON items (run, step, idx) WHERE status IN ('pending', 'running');
CREATE INDEX items_leased ON items (worker) WHERE lease_token IS NOT NULL;
