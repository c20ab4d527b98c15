-- Sagas: payments with legs at partners (a bank, an insurer) beside the
-- ledger, and the bank cards holders link to pay what the city card cannot.

-- +goose Up
CREATE TABLE sagas (
    operator   TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('running', 'compensating', 'done', 'undone')),
    data       TEXT    NOT NULL CHECK (json_valid(data)),
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (operator, key)
) STRICT, WITHOUT ROWID;
-- Open sagas are found at start to be finished or undone.
CREATE INDEX sagas_open ON sagas (created_at) WHERE state IN ('running', 'compensating');
-- A day's sagas of a kind, for reconciliation with a partner.
CREATE INDEX sagas_kind_created ON sagas (kind, created_at);

CREATE TABLE linked_bank_cards (
    card       TEXT    PRIMARY KEY REFERENCES cards (number),
    token      TEXT    NOT NULL,
    masked_pan TEXT    NOT NULL,
    last4      TEXT    NOT NULL CHECK (length(last4) = 4),
    linked_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE linked_bank_cards;
DROP TABLE sagas;
