-- Transit: validators, the taps posted from them, the deny list's changes
-- and the fare engine's per-card state. Taps carry no foreign keys, like
-- transfers: the engine writes them in one transaction with the device
-- sequence numbers they advance.

-- +goose Up
-- key is the device's MAC key; only the engine's loads read it.
CREATE TABLE devices (
    id         TEXT    PRIMARY KEY,
    operator   TEXT    NOT NULL,
    mode       TEXT    NOT NULL,
    route      TEXT    NOT NULL DEFAULT '',
    key        BLOB    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('active', 'retired')),
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX devices_operator ON devices (operator);

-- The primary key is the tap's idempotency key and serves a device's
-- history in seq order; WITHOUT ROWID keeps the rows in that one b-tree.
CREATE TABLE taps (
    device      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    card        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL DEFAULT '',
    route       TEXT    NOT NULL DEFAULT '',
    stop        TEXT    NOT NULL DEFAULT '',
    offline     INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    fare        INTEGER NOT NULL DEFAULT 0,
    balance     INTEGER NOT NULL DEFAULT 0,
    transfer_id INTEGER NOT NULL DEFAULT 0,
    batch       INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX taps_card ON taps (card);

-- One row per change, version 1, 2, 3… The (card, version) index finds
-- each card's latest change for the current list.
CREATE TABLE deny_changes (
    version INTEGER PRIMARY KEY,
    card    TEXT    NOT NULL,
    added   INTEGER NOT NULL,
    reason  TEXT    NOT NULL DEFAULT '',
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX deny_changes_card ON deny_changes (card, version);

CREATE TABLE rider_states (
    card       TEXT    PRIMARY KEY,
    state      BLOB,
    updated_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE rider_states;
DROP TABLE deny_changes;
DROP TABLE taps;
DROP TABLE devices;
