-- Initial CityCard schema for SQLite.
--
-- Times are INTEGER unix microseconds, UTC: the same precision PostgreSQL's
-- timestamptz keeps, so both drivers round-trip the same values.
-- Tables are STRICT so a wrongly typed value fails instead of being stored.
-- The hot ledger tables (transfers, entries) carry no foreign keys: the engine
-- writes them in one transaction with the accounts they touch, and verify
-- checks them; a per-row lookup would cost commit throughput.

-- +goose Up
CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    code            TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    currency        TEXT    NOT NULL,
    card            TEXT    NOT NULL DEFAULT '',
    purse           TEXT    NOT NULL DEFAULT '',
    constrained     INTEGER NOT NULL DEFAULT 0,
    negative_limit  INTEGER NOT NULL DEFAULT 0,
    debits_posted   INTEGER NOT NULL DEFAULT 0,
    credits_posted  INTEGER NOT NULL DEFAULT 0,
    debits_pending  INTEGER NOT NULL DEFAULT 0,
    credits_pending INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX accounts_card ON accounts (card);

CREATE TABLE transfers (
    id       INTEGER PRIMARY KEY,
    batch    INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    currency TEXT    NOT NULL,
    card     TEXT    NOT NULL DEFAULT '',
    pending  INTEGER NOT NULL DEFAULT 0,
    ref      INTEGER NOT NULL DEFAULT 0,
    amount   INTEGER NOT NULL,
    channel  TEXT    NOT NULL DEFAULT '',
    merchant TEXT    NOT NULL DEFAULT '',
    terminal TEXT    NOT NULL DEFAULT '',
    operator TEXT    NOT NULL DEFAULT '',
    memo     TEXT    NOT NULL DEFAULT '',
    at       INTEGER NOT NULL
) STRICT;
CREATE INDEX transfers_batch ON transfers (batch);
-- Only corrections carry a ref; most transfers have ref = 0 and stay out
-- of this index (queries must say ref <> 0 to use it).
CREATE INDEX transfers_ref ON transfers (ref) WHERE ref <> 0;
-- No index on card: a card's history is found through its accounts
-- (accounts.card, entries.account_id); one index fewer per transfer is worth
-- more to the write path.

-- n is the entry's position in its transfer. The primary key doubles as the
-- transfer_id index and keeps entries in insert order; WITHOUT ROWID keeps
-- the narrow rows in one b-tree.
CREATE TABLE entries (
    transfer_id INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    account_id  INTEGER NOT NULL,
    amount      INTEGER NOT NULL,
    PRIMARY KEY (transfer_id, n)
) STRICT, WITHOUT ROWID;
CREATE INDEX entries_account ON entries (account_id);

CREATE TABLE cards (
    number      TEXT    PRIMARY KEY,
    product     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    holder_name TEXT    NOT NULL DEFAULT '',
    id_type     TEXT    NOT NULL DEFAULT '',
    id_number   TEXT    NOT NULL DEFAULT '',
    phone       TEXT    NOT NULL DEFAULT '',
    pin_hash    TEXT    NOT NULL DEFAULT '',
    pin_tries   INTEGER NOT NULL DEFAULT 0,
    deposit     INTEGER NOT NULL DEFAULT 0,
    currency    TEXT    NOT NULL,
    replaced_by TEXT    NOT NULL DEFAULT '',
    replaces    TEXT    NOT NULL DEFAULT '',
    issued_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE holds (
    id         INTEGER PRIMARY KEY,
    card       TEXT    NOT NULL,
    merchant   TEXT    NOT NULL DEFAULT '',
    amount     INTEGER NOT NULL,
    currency   TEXT    NOT NULL,
    captured   INTEGER NOT NULL DEFAULT 0,
    status     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX holds_status_expires ON holds (status, expires_at);

CREATE TABLE batches (
    seq       INTEGER PRIMARY KEY,
    prev_hash BLOB,
    hash      BLOB    NOT NULL,
    transfers INTEGER NOT NULL,
    at        INTEGER NOT NULL
) STRICT;

CREATE TABLE idempotency (
    operator     TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    response     BLOB,
    at           INTEGER NOT NULL,
    PRIMARY KEY (operator, key)
) STRICT;

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    operator TEXT    NOT NULL DEFAULT '',
    role     TEXT    NOT NULL DEFAULT '',
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL DEFAULT '',
    remote   TEXT    NOT NULL DEFAULT '',
    outcome  TEXT    NOT NULL DEFAULT '',
    detail   TEXT    NOT NULL DEFAULT ''
) STRICT;

-- +goose StatementBegin
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd

-- token_hash is NULL for an operator without a token, so that several such
-- operators do not collide on the unique index.
CREATE TABLE operators (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    token_hash TEXT    UNIQUE,
    disabled   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE merchants (
    id                 TEXT    PRIMARY KEY,
    name               TEXT    NOT NULL,
    mcc                TEXT    NOT NULL DEFAULT '',
    fee_rate_bps       INTEGER NOT NULL DEFAULT 0,
    settlement_account TEXT    NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE terminals (
    id         TEXT    PRIMARY KEY,
    merchant   TEXT    NOT NULL REFERENCES merchants (id),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX terminals_merchant ON terminals (merchant);

CREATE TABLE products (
    code       TEXT    PRIMARY KEY,
    definition TEXT    NOT NULL CHECK (json_valid(definition)),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE meta;
DROP TABLE products;
DROP TABLE terminals;
DROP TABLE merchants;
DROP TABLE operators;
DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_log;
DROP TABLE idempotency;
DROP TABLE batches;
DROP TABLE holds;
DROP TABLE cards;
DROP TABLE entries;
DROP TABLE transfers;
DROP TABLE accounts;
