-- The audit log becomes a hash chain (store.AuditHash): each row keeps the
-- hash of the row before it and its own, so an edited, deleted or inserted
-- row is found by verify. Rows written before this migration keep NULL
-- hashes; the chain starts after them.

-- +goose Up
ALTER TABLE audit_log ADD COLUMN prev_hash BLOB;
ALTER TABLE audit_log ADD COLUMN hash BLOB;

-- The head of the chain: the last row's id and hash. Appends read and move
-- it in their own transaction, so ids follow each other without gaps, and
-- verify compares it with the last row, so a deleted tail is seen.
CREATE TABLE audit_head (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    hash    BLOB
) STRICT;
INSERT INTO audit_head (one, last_id, hash) SELECT 1, coalesce(max(id), 0), NULL FROM audit_log;

-- +goose Down
DROP TABLE audit_head;
ALTER TABLE audit_log DROP COLUMN hash;
ALTER TABLE audit_log DROP COLUMN prev_hash;
