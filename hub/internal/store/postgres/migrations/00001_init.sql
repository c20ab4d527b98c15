-- Initial CityCard schema for PostgreSQL.
--
-- Times are timestamptz (microseconds, UTC). Text sorts and compares
-- bytewise (COLLATE "C"), as in SQLite, whatever the database's locale. Unqualified names land in the
-- connection's search_path schema, so one database can hold several
-- isolated ledgers (the tests use this).
-- The hot ledger tables (transfers, entries) carry no foreign keys: the engine
-- writes them in one transaction with the accounts they touch, and verify
-- checks them; a per-row check would cost commit throughput.

-- +goose Up
-- Account rows are rewritten by every batch that touches them; free space on
-- each page lets those updates stay on the page (HOT) without index churn.
CREATE TABLE accounts (
    id              bigint           PRIMARY KEY,
    code            text COLLATE "C" NOT NULL UNIQUE,
    kind            text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    card            text COLLATE "C" NOT NULL DEFAULT '',
    purse           text COLLATE "C" NOT NULL DEFAULT '',
    constrained     boolean          NOT NULL DEFAULT false,
    negative_limit  bigint           NOT NULL DEFAULT 0,
    debits_posted   bigint           NOT NULL DEFAULT 0,
    credits_posted  bigint           NOT NULL DEFAULT 0,
    debits_pending  bigint           NOT NULL DEFAULT 0,
    credits_pending bigint           NOT NULL DEFAULT 0,
    created_at      timestamptz      NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX accounts_card ON accounts (card);

CREATE TABLE transfers (
    id       bigint           PRIMARY KEY,
    batch    bigint           NOT NULL,
    kind     text COLLATE "C" NOT NULL,
    currency text COLLATE "C" NOT NULL,
    card     text COLLATE "C" NOT NULL DEFAULT '',
    pending  boolean          NOT NULL DEFAULT false,
    ref      bigint           NOT NULL DEFAULT 0,
    amount   bigint           NOT NULL,
    channel  text COLLATE "C" NOT NULL DEFAULT '',
    merchant text COLLATE "C" NOT NULL DEFAULT '',
    terminal text COLLATE "C" NOT NULL DEFAULT '',
    operator text COLLATE "C" NOT NULL DEFAULT '',
    memo     text COLLATE "C" NOT NULL DEFAULT '',
    at       timestamptz      NOT NULL
);
CREATE INDEX transfers_batch ON transfers (batch);
-- Only corrections carry a ref; most transfers have ref = 0 and stay out
-- of this index (queries must say ref <> 0 to use it).
CREATE INDEX transfers_ref ON transfers (ref) WHERE ref <> 0;
-- No index on card: a card's history is found through its accounts
-- (accounts.card, entries.account_id); one index fewer per transfer is worth
-- more to the write path.

-- n is the entry's position in its transfer; the primary key doubles as the
-- transfer_id index and gives entries a stable order.
CREATE TABLE entries (
    transfer_id bigint   NOT NULL,
    n           smallint NOT NULL,
    account_id  bigint   NOT NULL,
    amount      bigint   NOT NULL,
    PRIMARY KEY (transfer_id, n)
);
CREATE INDEX entries_account ON entries (account_id);

CREATE TABLE cards (
    number      text COLLATE "C" PRIMARY KEY,
    product     text COLLATE "C" NOT NULL,
    status      text COLLATE "C" NOT NULL,
    holder_name text COLLATE "C" NOT NULL DEFAULT '',
    id_type     text COLLATE "C" NOT NULL DEFAULT '',
    id_number   text COLLATE "C" NOT NULL DEFAULT '',
    phone       text COLLATE "C" NOT NULL DEFAULT '',
    pin_hash    text COLLATE "C" NOT NULL DEFAULT '',
    pin_tries   integer          NOT NULL DEFAULT 0,
    deposit     bigint           NOT NULL DEFAULT 0,
    currency    text COLLATE "C" NOT NULL,
    replaced_by text COLLATE "C" NOT NULL DEFAULT '',
    replaces    text COLLATE "C" NOT NULL DEFAULT '',
    issued_at   timestamptz      NOT NULL,
    updated_at  timestamptz      NOT NULL
);

CREATE TABLE holds (
    id         bigint           PRIMARY KEY,
    card       text COLLATE "C" NOT NULL,
    merchant   text COLLATE "C" NOT NULL DEFAULT '',
    amount     bigint           NOT NULL,
    currency   text COLLATE "C" NOT NULL,
    captured   bigint           NOT NULL DEFAULT 0,
    status     text COLLATE "C" NOT NULL,
    expires_at timestamptz      NOT NULL,
    updated_at timestamptz      NOT NULL
);
CREATE INDEX holds_status_expires ON holds (status, expires_at);

CREATE TABLE batches (
    seq       bigint      PRIMARY KEY,
    prev_hash bytea       ,
    hash      bytea       NOT NULL,
    transfers integer     NOT NULL,
    at        timestamptz NOT NULL
);

CREATE TABLE idempotency (
    operator     text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    request_hash text COLLATE "C" NOT NULL,
    status       integer          NOT NULL,
    response     bytea            ,
    at           timestamptz      NOT NULL,
    PRIMARY KEY (operator, key)
);

CREATE TABLE audit_log (
    id       bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz      NOT NULL,
    operator text COLLATE "C" NOT NULL DEFAULT '',
    role     text COLLATE "C" NOT NULL DEFAULT '',
    action   text COLLATE "C" NOT NULL,
    target   text COLLATE "C" NOT NULL DEFAULT '',
    remote   text COLLATE "C" NOT NULL DEFAULT '',
    outcome  text COLLATE "C" NOT NULL DEFAULT '',
    detail   text COLLATE "C" NOT NULL DEFAULT ''
);

-- +goose StatementBegin
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
-- +goose StatementEnd

-- Statement-level, so even an UPDATE or DELETE that matches no row is
-- refused, and TRUNCATE (which fires no row triggers) is covered too.
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- token_hash is NULL for an operator without a token, so that several such
-- operators do not collide on the unique index.
CREATE TABLE operators (
    id         text COLLATE "C" PRIMARY KEY,
    name       text COLLATE "C" NOT NULL UNIQUE,
    role       text COLLATE "C" NOT NULL,
    token_hash text COLLATE "C" UNIQUE,
    disabled   boolean          NOT NULL DEFAULT false,
    created_at timestamptz      NOT NULL
);

CREATE TABLE merchants (
    id                 text COLLATE "C" PRIMARY KEY,
    name               text COLLATE "C" NOT NULL,
    mcc                text COLLATE "C" NOT NULL DEFAULT '',
    fee_rate_bps       bigint           NOT NULL DEFAULT 0,
    settlement_account text COLLATE "C" NOT NULL DEFAULT '',
    created_at         timestamptz      NOT NULL
);

CREATE TABLE terminals (
    id         text COLLATE "C" PRIMARY KEY,
    merchant   text COLLATE "C" NOT NULL REFERENCES merchants (id),
    created_at timestamptz      NOT NULL
);
CREATE INDEX terminals_merchant ON terminals (merchant);

-- json, not jsonb: validated, and returned byte for byte as it was put.
CREATE TABLE products (
    code       text COLLATE "C" PRIMARY KEY,
    definition json             NOT NULL,
    created_at timestamptz      NOT NULL
);

CREATE TABLE meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text COLLATE "C" NOT NULL
);

-- +goose Down
DROP TABLE meta;
DROP TABLE products;
DROP TABLE terminals;
DROP TABLE merchants;
DROP TABLE operators;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE idempotency;
DROP TABLE batches;
DROP TABLE holds;
DROP TABLE cards;
DROP TABLE entries;
DROP TABLE transfers;
DROP TABLE accounts;
