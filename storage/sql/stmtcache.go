package sql

import (
	"context"
	dbsql "database/sql"
	"sync"
)

// maxCachedStmts bounds the statement cache: the registry's queries are a
// few dozen fixed texts; queries built with a variable number of
// placeholders (batch lookups) beyond the bound are simply not cached.
const maxCachedStmts = 256

// stmtCache keeps one prepared statement per query text. SQLite (modernc)
// parses and plans a statement on every un-prepared call, which was the
// largest registry cost on the login path (docs/PERFORMANCE.md); a
// *sql.Stmt is prepared once per pooled connection and reused.
// PostgreSQL's pgx driver caches statements per connection by itself, so
// the cache is only used for SQLite.
type stmtCache struct {
	db *dbsql.DB
	mu sync.RWMutex
	m  map[string]*dbsql.Stmt
}

func newStmtCache(db *dbsql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*dbsql.Stmt)}
}

// get returns the prepared statement for query, or nil when it cannot be
// prepared or the cache is full (the caller then runs the query directly,
// which reports any error the preparation met).
func (c *stmtCache) get(ctx context.Context, query string) *dbsql.Stmt {
	c.mu.RLock()
	st := c.m[query]
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st = c.m[query]; st != nil {
		return st
	}
	if len(c.m) >= maxCachedStmts {
		return nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.m[query] = st
	return st
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, st := range c.m {
		_ = st.Close()
		delete(c.m, k)
	}
}

// cachedQuerier runs the pool's queries through the statement cache.
// Transactions run their queries directly (Store.querier): with
// tx.StmtContext re-using the pool's statements, 16 concurrent outlet
// transactions on SQLite sometimes waited out the 10 s busy timeout
// (registry suite, concurrent update card), and the hot path — status reads
// on every login step — runs outside transactions anyway.
type cachedQuerier struct {
	c  *stmtCache
	db *dbsql.DB
}

func (q cachedQuerier) ExecContext(ctx context.Context, query string, args ...any) (dbsql.Result, error) {
	if st := q.c.get(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.db.ExecContext(ctx, query, args...)
}

func (q cachedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*dbsql.Rows, error) {
	if st := q.c.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.db.QueryContext(ctx, query, args...)
}

func (q cachedQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *dbsql.Row {
	if st := q.c.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return q.db.QueryRowContext(ctx, query, args...)
}

// inTransaction reports whether r runs inside a transaction (Tx) rather
// than on the pool (the Store).
func (r *q) inTransaction() bool {
	_, tx := r.db.(*dbsql.Tx)
	return tx
}
