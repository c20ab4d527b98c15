-- Durable state of the message bus: its dead letters and its
-- de-duplication keys, so both survive a restart and are shared by the hub
-- nodes of one database.

-- +goose Up
-- Pages are read by ID either way, which the primary key serves. Metadata
-- is json, not jsonb: it keeps any string a header held (jsonb refuses
-- \u0000) and comes back as it was put.
CREATE TABLE dead_letters (
    id           bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handler      text COLLATE "C" NOT NULL,
    topic        text COLLATE "C" NOT NULL,
    message_uuid text COLLATE "C" NOT NULL,
    payload      bytea            ,
    metadata     json             NOT NULL DEFAULT '{}',
    reason       text COLLATE "C" NOT NULL DEFAULT '',
    code         text COLLATE "C" NOT NULL DEFAULT '',
    attempts     integer          NOT NULL DEFAULT 0,
    failed_at    timestamptz      NOT NULL,
    replayed_at  timestamptz      ,
    replays      integer          NOT NULL DEFAULT 0
);
-- A letter is delivered at least once; it is stored once per handler.
CREATE UNIQUE INDEX dead_letters_message ON dead_letters (handler, message_uuid);

-- One row per key while claimed or completed; expires_at is when it lapses
-- (the claim's lease, or the completion's window).
CREATE TABLE bus_dedup (
    key        text COLLATE "C" PRIMARY KEY,
    state      text COLLATE "C" NOT NULL CHECK (state IN ('claimed', 'completed')),
    holder     text COLLATE "C" NOT NULL DEFAULT '',
    claimed_at timestamptz      NOT NULL,
    expires_at timestamptz      NOT NULL
);
CREATE INDEX bus_dedup_expires ON bus_dedup (expires_at);

-- +goose Down
DROP TABLE bus_dedup;
DROP TABLE dead_letters;
