package sql

import (
	"context"
	dbsql "database/sql"
	"fmt"
	"time"

	"github.com/essc-project/essc/storage"
)

// sqliteBusyTimeout is the busy_timeout every SQLite connection is opened
// with; the write gate waits no longer.
const sqliteBusyTimeout = 10 * time.Second

// writeGate lets one of this process's SQLite writers at a time try for the
// database's write lock. SQLite admits one writer; the others retry on its
// busy handler, which sleeps 1, 2, 5, 10 … ms between tries, so two group
// commits (audit, sign-ins) and a consent grant colliding cost the loser
// whole milliseconds after a write that took 150 µs. Waiting here instead
// hands the lock over as soon as it is free. It is an optimisation only:
// writers that bypass it (another process, rare autocommit writes) still
// queue on the busy handler, and a wait that outlasts the busy timeout
// fails as the busy handler would. nil (PostgreSQL) admits everyone.
type writeGate chan struct{}

func newWriteGate(d dialect) writeGate {
	if d != sqliteDialect {
		return nil
	}
	return make(writeGate, 1)
}

// enter waits for the gate; the caller must call leave once its write has
// committed or rolled back.
func (g writeGate) enter(ctx context.Context) error {
	if g == nil {
		return nil
	}
	select {
	case g <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(sqliteBusyTimeout)
	defer t.Stop()
	select {
	case g <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sql: waiting to write: %w: %w", storage.ErrUnavailable, ctx.Err())
	case <-t.C:
		return fmt.Errorf("sql: waiting to write: another writer held the database for %s: %w", sqliteBusyTimeout, storage.ErrUnavailable)
	}
}

func (g writeGate) leave() {
	if g != nil {
		<-g
	}
}

// gatedExec runs one write statement: outside a transaction it waits at the
// write gate first (a transaction already holds it). Not for the group
// committers, which hold the gate around their statements.
func (r *q) gatedExec(ctx context.Context, query string, args ...any) (dbsql.Result, error) {
	if !r.inTransaction() {
		if err := r.s.writes.enter(ctx); err != nil {
			return nil, err
		}
		defer r.s.writes.leave()
	}
	return r.exec(ctx, query, args...)
}
