package sql

import (
	"context"
	dbsql "database/sql"
	"sync"
	"time"
)

// maxCachedStmts bounds the statement cache: the registry's queries are a
// few dozen fixed texts, and the group commits' multi-row inserts one text
// per batch size; texts beyond the bound are simply not cached.
const maxCachedStmts = 256

// stmtCache keeps one prepared statement per query text. SQLite (modernc)
// parses and plans a statement on every un-prepared call, which was the
// largest registry cost on the login path (docs/PERFORMANCE.md); a
// *sql.Stmt is prepared once per pooled connection and reused, inside
// transactions too (tx.StmtContext).
// PostgreSQL's pgx driver caches statements per connection by itself, so
// the cache is only used for SQLite.
//
// A statement is prepared on the pool in the background, never by a caller
// that waits for it: preparing needs a free connection, and a transaction
// that waited for one while holding SQLite's write lock (BEGIN IMMEDIATE)
// stalled every other writer until the busy timeout (16 concurrent outlet
// transactions, registry suite). Until the statement is ready, callers run
// the query unprepared.
type stmtCache struct {
	db     *dbsql.DB
	mu     sync.RWMutex
	m      map[string]*dbsql.Stmt // nil: being prepared
	closed bool
	wg     sync.WaitGroup
}

func newStmtCache(db *dbsql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*dbsql.Stmt)}
}

// get returns the prepared statement for query, or nil when it is not
// prepared yet (it is then prepared in the background), the cache is full
// or the text cannot be prepared (the caller runs the query directly, which
// reports the error).
func (c *stmtCache) get(query string) *dbsql.Stmt {
	c.mu.RLock()
	st, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[query]; ok || c.closed || len(c.m) >= maxCachedStmts {
		return nil
	}
	c.m[query] = nil
	c.wg.Add(1)
	go c.prepare(query)
	return nil
}

func (c *stmtCache) prepare(query string) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.db.PrepareContext(ctx, query)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil:
		delete(c.m, query) // tried again by a later call
	case c.closed:
		_ = st.Close()
	default:
		c.m[query] = st
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, st := range c.m {
		if st != nil {
			_ = st.Close()
		}
		delete(c.m, k)
	}
}

// cachedQuerier runs the queries of the pool (tx nil) or of one transaction
// through the statement cache.
type cachedQuerier struct {
	c  *stmtCache
	db *dbsql.DB
	tx *dbsql.Tx
}

// stmt is the cached statement for query, bound to the transaction if
// there is one; nil when there is none yet.
func (q cachedQuerier) stmt(ctx context.Context, query string) *dbsql.Stmt {
	st := q.c.get(query)
	if st != nil && q.tx != nil {
		return q.tx.StmtContext(ctx, st)
	}
	return st
}

func (q cachedQuerier) ExecContext(ctx context.Context, query string, args ...any) (dbsql.Result, error) {
	if st := q.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	return q.db.ExecContext(ctx, query, args...)
}

func (q cachedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*dbsql.Rows, error) {
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryContext(ctx, query, args...)
	}
	return q.db.QueryContext(ctx, query, args...)
}

func (q cachedQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *dbsql.Row {
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryRowContext(ctx, query, args...)
	}
	return q.db.QueryRowContext(ctx, query, args...)
}

// inTransaction reports whether r runs inside a transaction (Tx) rather
// than on the pool (the Store).
func (r *q) inTransaction() bool {
	switch d := r.db.(type) {
	case *dbsql.Tx:
		return true
	case cachedQuerier:
		return d.tx != nil
	}
	return false
}
