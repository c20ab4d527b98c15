package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
)

// maxLine bounds one buffered stderr line, so a plugin writing without
// newlines cannot grow the hub's memory.
const maxLine = 64 << 10

// lineLogger turns a plugin's stderr into hub log records, one per line,
// each with plugin=<name>. go-plugin writes a line and its newline in
// separate calls, hence the buffering.
type lineLogger struct {
	log *slog.Logger

	mu  sync.Mutex
	buf []byte
}

func newLineLogger(log *slog.Logger, plugin string) *lineLogger {
	return &lineLogger{log: log.With("plugin", plugin)}
}

// Write implements io.Writer.
func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit(w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// emit logs one line. Lines in hclog's JSON form (what sdk.Serve's own
// go-plugin logger writes) keep their level and message; anything else is
// logged at info as the plugin wrote it.
func (w *lineLogger) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	level, msg := slog.LevelInfo, string(line)
	if line[0] == '{' {
		var e struct {
			Level   string `json:"@level"`
			Message string `json:"@message"`
		}
		if json.Unmarshal(line, &e) == nil && e.Message != "" {
			msg = e.Message
			switch strings.ToLower(e.Level) {
			case "trace", "debug":
				level = slog.LevelDebug
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
		}
	}
	w.log.Log(context.Background(), level, msg, "stream", "stderr")
}

// flush logs a last line that had no newline, once the process is gone.
func (w *lineLogger) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
}
