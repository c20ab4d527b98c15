package postgres

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

// copyText streams rows already encoded in COPY's text format. The two hot
// tables (transfers and entries) are written this way: appending digits to
// one buffer costs far less than boxing every value for pgx's encoder, and
// the hub shares its cores with the database.
func copyText(ctx context.Context, tx pgx.Tx, table string, cols []string, rows int, data *bytes.Buffer) error {
	if rows == 0 {
		return nil
	}
	sql := "COPY " + table + " (" + strings.Join(cols, ", ") + ") FROM STDIN"
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, data, sql)
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	if tag.RowsAffected() != int64(rows) {
		return fmt.Errorf("%s: copied %d rows of %d", table, tag.RowsAffected(), rows)
	}
	return nil
}

// textWriter appends one row at a time in COPY text format.
type textWriter struct {
	buf   bytes.Buffer
	first bool
}

func (w *textWriter) sep() {
	if !w.first {
		w.buf.WriteByte('\t')
	}
	w.first = false
}

func (w *textWriter) int(v int64) {
	w.sep()
	w.buf.Write(strconv.AppendInt(w.buf.AvailableBuffer(), v, 10))
}

func (w *textWriter) bool(v bool) {
	w.sep()
	if v {
		w.buf.WriteByte('t')
	} else {
		w.buf.WriteByte('f')
	}
}

// text escapes what COPY's text format gives meaning to.
func (w *textWriter) text(s string) {
	w.sep()
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			w.buf.WriteString(`\\`)
		case '\t':
			w.buf.WriteString(`\t`)
		case '\n':
			w.buf.WriteString(`\n`)
		case '\r':
			w.buf.WriteString(`\r`)
		default:
			w.buf.WriteByte(c)
		}
	}
}

func (w *textWriter) time(t time.Time) {
	w.sep()
	w.buf.Write(t.UTC().AppendFormat(w.buf.AvailableBuffer(), "2006-01-02 15:04:05.999999Z07:00"))
}

func (w *textWriter) end() {
	w.buf.WriteByte('\n')
	w.first = true
}

// transferRows and entryRows encode a batch's transfers and entries.
func transferRows(ts []store.Transfer) *bytes.Buffer {
	w := &textWriter{first: true}
	w.buf.Grow(len(ts) * 96)
	for i := range ts {
		t := &ts[i]
		w.int(t.ID)
		w.int(t.Batch)
		w.text(t.Kind)
		w.text(t.Currency)
		w.text(t.Card)
		w.bool(t.Pending)
		w.int(t.Ref)
		w.int(t.Amount)
		w.text(t.Channel)
		w.text(t.Merchant)
		w.text(t.Terminal)
		w.text(t.Operator)
		w.text(t.Memo)
		w.time(t.At)
		w.end()
	}
	return &w.buf
}

func entryRows(ts []store.Transfer) (*bytes.Buffer, int) {
	w := &textWriter{first: true}
	w.buf.Grow(len(ts) * 64)
	n := 0
	for i := range ts {
		t := &ts[i]
		for j, e := range t.Entries {
			w.int(t.ID)
			w.int(int64(j))
			w.int(e.Account)
			w.int(e.Amount)
			w.end()
			n++
		}
	}
	return &w.buf, n
}
