package sql

import (
	"context"
	dbsql "database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"

	"github.com/essc-project/essc/storage"
)

// Config configures Open.
type Config struct {
	// URL selects the engine: postgres://… or postgresql://… (pgx; extra query
	// parameters such as search_path become session parameters), sqlite:///abs/path,
	// sqlite://rel/path or file:path (modernc.org/sqlite, WAL).
	URL string
	// Secrets holds the SSN, blind-index and audit keys (see LoadOrCreateSecrets).
	Secrets Secrets
	// Now is the clock for every stored timestamp; time.Now if nil.
	Now func() time.Time
	// Logger receives operational messages (never PII or keys); slog.Default if nil.
	Logger *slog.Logger
	// MaxOpenConns bounds the connection pool; 0 means 16.
	MaxOpenConns int
}

type dialect int

const (
	postgres dialect = iota + 1
	sqliteDialect
)

// Store is the SQL registry. Create it with Open.
type Store struct {
	q
	db         *dbsql.DB
	dialect    dialect
	secrets    Secrets
	now        func() time.Time
	log        *slog.Logger
	stmts      *stmtCache // SQLite only; nil on PostgreSQL
	file       string     // the SQLite database file, named in disk-full errors
	writes     writeGate  // SQLite: one of this process's writers at a time (writegate.go)
	audit      *committer[storage.AuditEntry]
	auditCache auditHeadCache // the PostgreSQL audit committer's head (auditbatch.go)
	signIns    *committer[storage.SignIn]
}

var _ storage.Registry = (*Store)(nil)

// Open connects to the database named by cfg.URL, applies pending migrations
// and returns the registry. The caller must Close it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Secrets.validate(); err != nil {
		return nil, err
	}
	db, d, err := openDB(cfg.URL, cfg.MaxOpenConns)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, dialect: d, secrets: cfg.Secrets, now: cfg.Now, log: cfg.Logger, writes: newWriteGate(d)}
	if d == sqliteDialect {
		s.file = sqliteFile(cfg.URL)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if _, err := migrate(ctx, db, d, s.log); err != nil {
		db.Close()
		return nil, err
	}
	if d == sqliteDialect {
		s.stmts = newStmtCache(db)
	}
	s.q = q{s: s, db: s.querier(nil)}
	s.audit = newAuditBatcher(s)
	s.signIns = newSignInBatcher(s)
	return s, nil
}

// Migrate applies pending migrations to the database at url without needing
// the secrets (for `esscctl migrate`) and returns the versions it applied.
// Concurrent callers are safe: PostgreSQL takes an advisory lock, SQLite an
// immediate transaction.
func Migrate(ctx context.Context, url string, logger *slog.Logger) ([]int, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, d, err := openDB(url, 1)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return migrate(ctx, db, d, logger)
}

// openDB parses the URL and opens the pool without touching the schema.
func openDB(rawURL string, maxOpen int) (*dbsql.DB, dialect, error) {
	if maxOpen <= 0 {
		maxOpen = 16
	}
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		cc, err := pgx.ParseConfig(rawURL)
		if err != nil {
			return nil, 0, fmt.Errorf("sql: parse database url: %w", redactErr(err))
		}
		db := stdlib.OpenDB(*cc)
		db.SetMaxOpenConns(maxOpen)
		db.SetMaxIdleConns(maxOpen)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return db, postgres, nil
	case strings.HasPrefix(rawURL, "sqlite://"), strings.HasPrefix(rawURL, "file:"):
		dsn, err := sqliteDSN(rawURL)
		if err != nil {
			return nil, 0, err
		}
		db := dbsql.OpenDB(sqliteConnector{dsn: dsn})
		db.SetMaxOpenConns(maxOpen)
		db.SetMaxIdleConns(maxOpen)
		return db, sqliteDialect, nil
	default:
		return nil, 0, fmt.Errorf("sql: unsupported database url scheme (want postgres://, sqlite:// or file:): %w", storage.ErrInvalidRecord)
	}
}

// redactErr drops the error text of URL parsing, which may echo a password.
func redactErr(err error) error {
	return errors.New(strings.SplitN(err.Error(), ":", 2)[0])
}

// sqliteDSN turns sqlite:///path or file:path into a modernc DSN with WAL,
// a busy timeout, foreign keys and BEGIN IMMEDIATE for every transaction (so
// concurrent writers queue on the busy handler instead of deadlocking on a
// read-to-write lock upgrade).
func sqliteDSN(raw string) (string, error) {
	path, query := sqlitePath(raw)
	if path == "" || strings.Contains(path, ":memory:") || strings.Contains(query, "mode=memory") {
		return "", fmt.Errorf("sql: sqlite needs a file path (in-memory databases are not shared across connections): %w", storage.ErrInvalidRecord)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("sql: sqlite directory: %w", err)
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("sql: sqlite url query: %w", err)
	}
	v.Set("_txlock", "immediate")
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(NORMAL)")
	return "file:" + path + "?" + v.Encode(), nil
}

// sqliteConnector opens modernc connections without the global driver registry.
type sqliteConnector struct{ dsn string }

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	return (&sqlite.Driver{}).Open(c.dsn)
}
func (c sqliteConnector) Driver() driver.Driver { return &sqlite.Driver{} }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.mapErr(s.db.PingContext(ctx))
}

// Close closes the pool.
func (s *Store) Close() error {
	s.audit.close()
	s.signIns.close()
	if s.stmts != nil {
		s.stmts.close()
	}
	return s.db.Close()
}

// querier runs the registry's queries on the pool (tx nil) or in tx,
// through the statement cache where there is one.
func (s *Store) querier(tx *dbsql.Tx) querier {
	switch {
	case s.stmts != nil:
		return cachedQuerier{c: s.stmts, db: s.db, tx: tx}
	case tx != nil:
		return tx
	default:
		return s.db
	}
}

// DB exposes the pool for tests and tooling (raw SQL in the conformance
// suite's tamper tests); production code never uses it.
func (s *Store) DB() *dbsql.DB { return s.db }

// Rebind rewrites ? placeholders for the engine ($1… on PostgreSQL); exported
// for the conformance suite's raw SQL.
func (s *Store) Rebind(query string) string { return s.rebind(query) }

// Tx runs fn in one transaction (BEGIN IMMEDIATE on SQLite).
func (s *Store) Tx(ctx context.Context, fn func(tx storage.RegistryTx) error) (err error) {
	if err := s.writes.enter(ctx); err != nil {
		return err
	}
	defer s.writes.leave()
	sqltx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sql: begin: %w", s.mapErr(err))
	}
	done := false
	defer func() {
		if !done {
			_ = sqltx.Rollback()
		}
	}()
	t := &q{s: s, db: s.querier(sqltx)}
	if err := fn(t); err != nil {
		return err
	}
	done = true
	if err := sqltx.Commit(); err != nil {
		return fmt.Errorf("sql: commit: %w", s.mapErr(err))
	}
	if t.audit.seq != 0 && s.dialect == postgres {
		s.auditCache.committed(t.audit)
	}
	return nil
}

func (s *Store) rebind(query string) string {
	if s.dialect != postgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}
