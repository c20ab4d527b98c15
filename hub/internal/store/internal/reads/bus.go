package reads

import (
	"context"

	"github.com/citycard/citycard/hub/internal/store"
)

const deadLetterCols = `id, handler, topic, message_uuid, payload, CAST(metadata AS text), reason, code, attempts,
	failed_at, replayed_at, replays`

func scanDeadLetter(sc scanner) (store.DeadLetter, error) {
	var (
		l  store.DeadLetter
		md string
	)
	if err := sc.Scan(&l.ID, &l.Handler, &l.Topic, &l.MessageUUID, &l.Payload, &md, &l.Reason, &l.Code,
		&l.Attempts, Time(&l.FailedAt), nullTime{&l.ReplayedAt}, &l.Replays); err != nil {
		return l, err
	}
	var err error
	l.Metadata, err = store.DecodeMetadata(md)
	return l, err
}

// ListDeadLetters returns a page of letters in ID order.
func (r *Reader) ListDeadLetters(ctx context.Context, p store.DeadLetterPage) ([]store.DeadLetter, error) {
	q, args := `SELECT `+deadLetterCols+` FROM dead_letters`, []any{}
	switch {
	case p.NewestFirst && p.Cursor > 0:
		q, args = q+` WHERE id < ?`, append(args, p.Cursor)
	case !p.NewestFirst:
		q, args = q+` WHERE id > ?`, append(args, p.Cursor)
	}
	if p.NewestFirst {
		q += ` ORDER BY id DESC`
	} else {
		q += ` ORDER BY id`
	}
	out, err := collect(ctx, r, scanDeadLetter, q+` LIMIT ?`, append(args, limit(p.Limit))...)
	if err != nil {
		return nil, r.errorf("list dead letters: %w", err)
	}
	return out, nil
}

// GetDeadLetter returns one letter or an error wrapping store.ErrNotFound.
func (r *Reader) GetDeadLetter(ctx context.Context, id int64) (store.DeadLetter, error) {
	l, err := get(ctx, r, scanDeadLetter, `SELECT `+deadLetterCols+` FROM dead_letters WHERE id = ?`, id)
	if err != nil {
		return store.DeadLetter{}, r.errorf("dead letter %d: %w", id, err)
	}
	return l, nil
}
