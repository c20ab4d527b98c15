-- Transit: validators, the taps posted from them, the deny list's changes
-- and the fare engine's per-card state. Taps carry no foreign keys, like
-- transfers: the engine writes them in one transaction with the device
-- sequence numbers they advance.

-- +goose Up
-- key is the device's MAC key; only the engine's loads read it. last_seq
-- moves with every batch of taps: free space lets it stay on the page.
CREATE TABLE devices (
    id         text COLLATE "C" PRIMARY KEY,
    operator   text COLLATE "C" NOT NULL,
    mode       text COLLATE "C" NOT NULL,
    route      text COLLATE "C" NOT NULL DEFAULT '',
    key        bytea            NOT NULL,
    status     text COLLATE "C" NOT NULL CHECK (status IN ('active', 'retired')),
    last_seq   bigint           NOT NULL DEFAULT 0,
    created_at timestamptz      NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX devices_operator ON devices (operator);

-- The primary key is the tap's idempotency key and serves a device's
-- history in seq order.
CREATE TABLE taps (
    device      text COLLATE "C" NOT NULL,
    seq         bigint           NOT NULL,
    card        text COLLATE "C" NOT NULL,
    at          timestamptz      NOT NULL,
    kind        text COLLATE "C" NOT NULL DEFAULT '',
    route       text COLLATE "C" NOT NULL DEFAULT '',
    stop        text COLLATE "C" NOT NULL DEFAULT '',
    offline     boolean          NOT NULL DEFAULT false,
    status      text COLLATE "C" NOT NULL,
    reason      text COLLATE "C" NOT NULL DEFAULT '',
    fare        bigint           NOT NULL DEFAULT 0,
    balance     bigint           NOT NULL DEFAULT 0,
    transfer_id bigint           NOT NULL DEFAULT 0,
    batch       bigint           NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX taps_card ON taps (card);

-- One row per change, version 1, 2, 3… The (card, version) index finds
-- each card's latest change for the current list.
CREATE TABLE deny_changes (
    version bigint           PRIMARY KEY,
    card    text COLLATE "C" NOT NULL,
    added   boolean          NOT NULL,
    reason  text COLLATE "C" NOT NULL DEFAULT '',
    at      timestamptz      NOT NULL
);
CREATE INDEX deny_changes_card ON deny_changes (card, version);

CREATE TABLE rider_states (
    card       text COLLATE "C" PRIMARY KEY,
    state      bytea            ,
    updated_at timestamptz      NOT NULL
) WITH (fillfactor = 80);

-- +goose Down
DROP TABLE rider_states;
DROP TABLE deny_changes;
DROP TABLE taps;
DROP TABLE devices;
