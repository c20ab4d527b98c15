package sqlite

import "context"

// WritePragma reads a PRAGMA on the write connection.
func (s *Store) WritePragma(ctx context.Context, name string) (string, error) {
	var v string
	err := s.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// ReadExec runs a statement on the read pool.
func (s *Store) ReadExec(ctx context.Context, query string) error {
	_, err := s.r.ExecContext(ctx, query)
	return err
}
