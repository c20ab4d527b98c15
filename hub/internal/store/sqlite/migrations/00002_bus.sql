-- Durable state of the message bus: its dead letters and its
-- de-duplication keys, so both survive a restart.

-- +goose Up
-- AUTOINCREMENT: an ID is never reused, even after letters are deleted by
-- hand, so a cursor or an operator's note never points at another letter.
-- Pages are read by ID either way, which the primary key serves.
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    handler      TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    message_uuid TEXT    NOT NULL,
    payload      BLOB,
    metadata     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    reason       TEXT    NOT NULL DEFAULT '',
    code         TEXT    NOT NULL DEFAULT '',
    attempts     INTEGER NOT NULL DEFAULT 0,
    failed_at    INTEGER NOT NULL,
    replayed_at  INTEGER,
    replays      INTEGER NOT NULL DEFAULT 0
) STRICT;
-- A letter is delivered at least once; it is stored once per handler.
CREATE UNIQUE INDEX dead_letters_message ON dead_letters (handler, message_uuid);

-- One row per key while claimed or completed; expires_at is when it lapses
-- (the claim's lease, or the completion's window).
CREATE TABLE bus_dedup (
    key        TEXT    PRIMARY KEY,
    state      TEXT    NOT NULL CHECK (state IN ('claimed', 'completed')),
    holder     TEXT    NOT NULL DEFAULT '',
    claimed_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX bus_dedup_expires ON bus_dedup (expires_at);

-- +goose Down
DROP TABLE bus_dedup;
DROP TABLE dead_letters;
