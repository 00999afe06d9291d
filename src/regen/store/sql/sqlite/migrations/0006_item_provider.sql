-- Migration 6: the provider that served each item (a fallback's name while the first
-- provider was down), kept on the item instead of only in its event.

ALTER TABLE items ADD COLUMN provider TEXT;
