package sqlite_test

import (
	"testing"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// TestStoreSharesNoDatabase: one process owns a SQLite database, so the
// store offers the message bus no share of it, and a hub asked to keep its
// router in the store's database refuses to start rather than losing the
// outbox.
func TestStoreSharesNoDatabase(t *testing.T) {
	if _, ok := storetest.OpenSQLite(t).(store.SharedDatabase); ok {
		t.Fatal("the SQLite store implements store.SharedDatabase")
	}
}
