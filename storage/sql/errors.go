package sql

import (
	"context"
	dbsql "database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/essc-project/essc/storage"
)

// mapErr translates driver errors into the storage sentinels, keeping the
// original error in the chain (for logs) and never adding PII: driver messages
// name constraints and columns, not values.
func (s *Store) mapErr(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrDuplicate),
		errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, storage.ErrInvalidRecord), errors.Is(err, storage.ErrPINLocked):
		return err
	case errors.Is(err, dbsql.ErrNoRows):
		return fmt.Errorf("%w", storage.ErrNotFound)
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, syscall.ENOSPC):
		return s.diskFull(err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, dbsql.ErrConnDone),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%w: %s", storage.ErrDuplicate, pgErr.ConstraintName)
		case pgErr.Code == "23503":
			return fmt.Errorf("%w: referenced record (%s)", storage.ErrNotFound, pgErr.ConstraintName)
		case pgErr.Code == "23514", pgErr.Code == "23502", pgErr.Code == "22P02", pgErr.Code == "22021":
			return fmt.Errorf("%w: %s", storage.ErrInvalidRecord, pgErr.Code)
		case pgErr.Code == "40001", pgErr.Code == "40P01":
			return fmt.Errorf("%w: %s", storage.ErrConflict, pgErr.Code)
		case len(pgErr.Code) >= 2 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:2] == "57"):
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		return fmt.Errorf("sql: %w", err)
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	var retryable interface{ SafeToRetry() bool } // pgconn's connection-level errors ("conn closed", write failures)
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.Timeout(err) || errors.As(err, &retryable) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		code := sqErr.Code()
		switch {
		case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", storage.ErrDuplicate, err)
		case code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: referenced record", storage.ErrNotFound)
		case code&0xff == sqlite3.SQLITE_CONSTRAINT:
			return fmt.Errorf("%w: %w", storage.ErrInvalidRecord, err)
		case code&0xff == sqlite3.SQLITE_FULL:
			return s.diskFull(err)
		case code&0xff == sqlite3.SQLITE_BUSY, code&0xff == sqlite3.SQLITE_LOCKED,
			code&0xff == sqlite3.SQLITE_CANTOPEN, code&0xff == sqlite3.SQLITE_IOERR,
			code&0xff == sqlite3.SQLITE_READONLY:
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		return fmt.Errorf("sql: %w", err)
	}
	if err.Error() == "sql: database is closed" {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return fmt.Errorf("sql: %w", err)
}

// diskFull is the unavailability of a registry that cannot grow, named so an
// operator reading the log knows what to free (SQLITE_FULL or ENOSPC).
func (s *Store) diskFull(err error) error {
	where := "the registry database"
	if s.file != "" {
		where = fmt.Sprintf("the SQLite registry %s (data directory %s)", s.file, filepath.Dir(s.file))
	}
	return fmt.Errorf("%w: disk full: no space left for %s; free space and retry: %w", storage.ErrUnavailable, where, err)
}

// sqliteFile is the database file of a sqlite:// or file: URL.
func sqliteFile(raw string) string {
	path, _ := sqlitePath(raw)
	return path
}

// sqlitePath splits a sqlite:// or file: URL into the file path and the query.
func sqlitePath(raw string) (path, query string) {
	path, query, _ = strings.Cut(raw, "?")
	if p, ok := strings.CutPrefix(path, "sqlite://"); ok {
		return p, query
	}
	return strings.TrimPrefix(path, "file:"), query
}
