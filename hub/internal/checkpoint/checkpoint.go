// Package checkpoint anchors the ledger's hash chain outside the ledger's
// own tables. A serving hub signs checkpoints of the chain head (batch
// sequence and hash, time, and the audit head) with an Ed25519 key, as C2SP
// signed notes (golang.org/x/mod/sumdb/note), and appends them to an
// append-only log that the database's owner cannot quietly rewrite. Verify
// reads the log back and compares the store with every checkpoint in it.
//
// A checkpoint's note text follows the C2SP tlog checkpoint: the origin
// line, the batch sequence, the base64 batch hash, then extension lines:
//
//	citycard/ledger
//	4211
//	q0T5pJmXR0s1s7a0dQ0tZb8GkFq3Xw7cW4uJ0yTq7yE=
//	time 2026-12-07T21:49:22.123456Z
//	audit 981 3Xh0…=
package checkpoint

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultOrigin is the origin line of the hub's checkpoints.
const DefaultOrigin = "citycard/ledger"

// noHash stands for the hash of an empty ledger (no batch yet): a note's
// text may hold no empty line, so the hash line cannot be left empty.
var noHash = make([]byte, 32)

// Checkpoint is one signed statement of where the ledger stood.
type Checkpoint struct {
	Origin string
	Batch  int64  // the last committed batch's sequence number, 0 before the first
	Hash   []byte // that batch's chain hash, nil before the first
	Time   time.Time
	// Audit is the last audit row's id and AuditHash its chain hash; the
	// audit line is written only when AuditHash is set.
	Audit     int64
	AuditHash []byte
}

// Text is the checkpoint as the note text that is signed.
func (c Checkpoint) Text() string {
	var b strings.Builder
	h := c.Hash
	if h == nil {
		h = noHash
	}
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Batch, base64.StdEncoding.EncodeToString(h))
	if !c.Time.IsZero() {
		fmt.Fprintf(&b, "time %s\n", c.Time.UTC().Format(time.RFC3339Nano))
	}
	if c.AuditHash != nil {
		fmt.Fprintf(&b, "audit %d %s\n", c.Audit, base64.StdEncoding.EncodeToString(c.AuditHash))
	}
	return b.String()
}

// Parse reads a checkpoint from its note text. Unknown extension lines are
// skipped, as C2SP asks, so later hubs may add their own.
func Parse(text string) (Checkpoint, error) {
	var c Checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, errors.New("checkpoint: text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return c, fmt.Errorf("checkpoint: %d lines, want at least 3", len(lines))
	}
	c.Origin = lines[0]
	if c.Origin == "" {
		return c, errors.New("checkpoint: empty origin")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || lines[1] != strconv.FormatInt(n, 10) {
		return c, fmt.Errorf("checkpoint: batch %q is not a number", lines[1])
	}
	c.Batch = n
	if c.Hash, err = base64.StdEncoding.DecodeString(lines[2]); err != nil {
		return c, fmt.Errorf("checkpoint: hash: %w", err)
	}
	if len(c.Hash) == 0 || bytes.Equal(c.Hash, noHash) {
		c.Hash = nil
	}
	for _, l := range lines[3:] {
		key, val, _ := strings.Cut(l, " ")
		switch key {
		case "time":
			if c.Time, err = time.Parse(time.RFC3339Nano, val); err != nil {
				return c, fmt.Errorf("checkpoint: time: %w", err)
			}
		case "audit":
			id, h, ok := strings.Cut(val, " ")
			if c.Audit, err = strconv.ParseInt(id, 10, 64); err != nil || !ok {
				return c, fmt.Errorf("checkpoint: audit line %q", l)
			}
			if c.AuditHash, err = base64.StdEncoding.DecodeString(h); err != nil {
				return c, fmt.Errorf("checkpoint: audit hash: %w", err)
			}
		case "":
			return c, errors.New("checkpoint: empty line in the text")
		}
	}
	return c, nil
}
