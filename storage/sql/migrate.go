package sql

import (
	"context"
	dbsql "database/sql"
	"embed"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered file of migrations/: NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order, with the dialect
// tokens ({{BLOB}}) substituted.
func migrations(d dialect) ([]migration, error) {
	entries, err := migrationFS.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	blob := "BLOB"
	if d == postgres {
		blob = "BYTEA"
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sql: migration file %q is not NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: strings.ReplaceAll(string(b), "{{BLOB}}", blob)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("sql: duplicate migration version %d", out[i].version)
		}
	}
	return out, nil
}

// migrate applies every embedded migration not yet recorded in
// schema_migrations, each in its own transaction together with its record.
// PostgreSQL serialises concurrent migrators with a transaction-scoped advisory
// lock; SQLite with BEGIN IMMEDIATE.
func migrate(ctx context.Context, db *dbsql.DB, d dialect, log *slog.Logger) ([]int, error) {
	ms, err := migrations(d)
	if err != nil {
		return nil, err
	}
	st := &Store{db: db, dialect: d}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("sql: create schema_migrations: %w", st.mapErr(err))
	}
	var applied []int
	for _, m := range ms {
		did, err := applyOne(ctx, db, st, m)
		if err != nil {
			return applied, fmt.Errorf("sql: migration %s: %w", m.name, st.mapErr(err))
		}
		if did {
			log.InfoContext(ctx, "registry migration applied", "version", m.version, "name", m.name)
			applied = append(applied, m.version)
		}
	}
	return applied, nil
}

func applyOne(ctx context.Context, db *dbsql.DB, st *Store, m migration) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if st.dialect == postgres {
		// Any constant key: only migrators contend for it.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7243001)`); err != nil {
			return false, err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, st.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), m.version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, st.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
		m.version, m.name, time.Now().UTC().UnixMicro()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
