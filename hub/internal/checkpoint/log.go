package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/mod/sumdb/note"
)

// Sink is where a hub appends its signed checkpoints. The file log is the
// one built in; a NATS JetStream stream or a database of another owner fit
// the same two methods.
type Sink interface {
	// Append stores one signed note durably before it returns.
	Append(ctx context.Context, signed []byte) error
	Close() error
}

// FileLog is a Sink appending to one file. Each record is a signed note
// followed by a blank line, so a note cut short by a crash is seen as such.
type FileLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenFileLog opens the log at path for appending, creating it (and its
// directory) if needed.
func OpenFileLog(path string) (*FileLog, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open log: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A new file's name is durable only once its directory is synced.
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return &FileLog{path: path, f: f}, nil
}

// Path is the log's file name.
func (l *FileLog) Path() string { return l.path }

// Append writes signed and a blank line in one write, and syncs the file.
func (l *FileLog) Append(_ context.Context, signed []byte) error {
	if !bytes.HasSuffix(signed, []byte("\n")) {
		return errors.New("checkpoint: a signed note ends in a newline")
	}
	rec := append(bytes.Clone(signed), '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(rec); err != nil {
		return fmt.Errorf("checkpoint: append: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("checkpoint: sync: %w", err)
	}
	return nil
}

// Close closes the file.
func (l *FileLog) Close() error { return l.f.Close() }

// What is wrong with a checkpoint log, as LogError.Kind.
const (
	LogMissing   = "missing"   // there is no log where one was looked for
	LogTruncated = "truncated" // the last record is cut short
	LogForeign   = "foreign"   // a record is signed by another key
	LogBadSig    = "bad-sig"   // a record's signature does not verify: it was edited
	LogMalformed = "malformed" // a record is not a checkpoint
	LogOrigin    = "origin"    // a record names another ledger
	LogBackwards = "backwards" // a checkpoint names an earlier batch than the one before
)

// LogError says what is wrong with a checkpoint log and where.
type LogError struct {
	Kind   string
	Path   string
	Record int // 1-based record number, 0 for the whole log
	Err    error
}

func (e *LogError) Error() string {
	where := e.Path
	if e.Record > 0 {
		where = fmt.Sprintf("%s: record %d", e.Path, e.Record)
	}
	return fmt.Sprintf("checkpoint log %s: %s: %v", where, e.Kind, e.Err)
}

func (e *LogError) Unwrap() error { return e.Err }

// Entry is one checkpoint read back from a log.
type Entry struct {
	Checkpoint
	Record int // 1-based position in the log
}

// ReadFile reads and checks the log at path with v: see Read.
func ReadFile(path string, v note.Verifier, origin string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &LogError{Kind: LogMissing, Path: path, Err: errors.New("no such file")}
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return Read(path, data, v, origin)
}

// Read splits a log into its records and opens each with v. It returns the
// checkpoints read up to the first bad record, and a *LogError naming it;
// a partial record at the end is LogTruncated.
func Read(name string, data []byte, v note.Verifier, origin string) ([]Entry, error) {
	var out []Entry
	for n := 1; len(data) > 0; n++ {
		// A record is the note text, a blank line, the signature lines and
		// a blank line; checkpoint texts hold no blank line of their own.
		text := bytes.Index(data, []byte("\n\n"))
		end := -1
		if text >= 0 {
			if e := bytes.Index(data[text+2:], []byte("\n\n")); e >= 0 {
				end = text + 2 + e + 1
			}
		}
		if end < 0 {
			return out, &LogError{Kind: LogTruncated, Path: name, Record: n,
				Err: fmt.Errorf("the last %d bytes are a partial note", len(data))}
		}
		msg := data[:end]
		data = data[end+1:]
		nt, err := note.Open(msg, note.VerifierList(v))
		if err != nil {
			kind := LogMalformed
			if _, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
				kind = LogForeign
				err = fmt.Errorf("not signed by %s (%w)", v.Name(), err)
			} else if _, ok := errors.AsType[*note.InvalidSignatureError](err); ok {
				kind = LogBadSig
			}
			return out, &LogError{Kind: kind, Path: name, Record: n, Err: err}
		}
		c, err := Parse(nt.Text)
		if err != nil {
			return out, &LogError{Kind: LogMalformed, Path: name, Record: n, Err: err}
		}
		if origin != "" && c.Origin != origin {
			return out, &LogError{Kind: LogOrigin, Path: name, Record: n,
				Err: fmt.Errorf("origin %q, want %q", c.Origin, origin)}
		}
		if len(out) > 0 && c.Batch < out[len(out)-1].Batch {
			return out, &LogError{Kind: LogBackwards, Path: name, Record: n,
				Err: fmt.Errorf("batch %d after batch %d", c.Batch, out[len(out)-1].Batch)}
		}
		out = append(out, Entry{Checkpoint: c, Record: n})
	}
	return out, nil
}

// LastBatch returns the batch of the last complete record of the log at
// path, reading only its tail, or -1 when it holds none. The signature is
// not checked: a hub uses it only to skip a checkpoint of an unmoved head.
func LastBatch(path string) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return -1, err
	}
	const tail = 8 << 10
	off := max(0, fi.Size()-tail)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return -1, err
	}
	// A log ends in "signature\n\n". Before its signatures is the last
	// record's blank line, and before its text the previous record's end;
	// no checkpoint text holds a blank line.
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	i := bytes.LastIndex(buf, []byte("\n\n"))
	if i < 0 || !bytes.HasSuffix(buf, []byte("\n")) {
		return -1, nil
	}
	var text []byte
	switch k := bytes.LastIndex(buf[:i], []byte("\n\n")); {
	case k >= 0:
		text = buf[k+2 : i+1]
	case off == 0:
		text = buf[:i+1]
	default:
		return -1, nil
	}
	c, err := Parse(string(text))
	if err != nil {
		return -1, nil
	}
	return c.Batch, nil
}
