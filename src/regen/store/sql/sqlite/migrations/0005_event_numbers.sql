-- Migration 5: the event log without AUTOINCREMENT. Event numbers stay never reused, kept
-- by a placeholder row (no run) when a clean-up deletes the newest events; the number
-- AUTOINCREMENT had reached becomes that placeholder, so no number is handed out again.

ALTER TABLE events RENAME TO events_v4;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run INTEGER REFERENCES runs (key) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (run, seq)
);

INSERT INTO events (id, run, seq, at, type, data)
SELECT id, run, seq, at, type, data FROM events_v4 ORDER BY id;

INSERT INTO events (id, run, seq, at, type, data)
SELECT seq, NULL, 0, 0, 'cursor.kept', '{}' FROM sqlite_sequence
WHERE name = 'events_v4' AND seq > (SELECT COALESCE(max(id), 0) FROM events);

DROP TABLE events_v4;
