package sql_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/registrytest"
	essql "github.com/essc-project/essc/storage/sql"
)

func testSecrets(t testing.TB) essql.Secrets {
	t.Helper()
	s, err := essql.LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openWith returns an opener for one database URL that closes what it opens.
func openWith(url string, secrets essql.Secrets) func(t *testing.T) storage.Registry {
	return func(t *testing.T) storage.Registry {
		t.Helper()
		s, err := essql.Open(context.Background(), essql.Config{URL: url, Secrets: secrets,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// NewSQLiteDB makes a fresh SQLite file per test.
func newSQLiteDB(t *testing.T) func(t *testing.T) storage.Registry {
	return openWith("sqlite://"+filepath.Join(t.TempDir(), "registry.db"), testSecrets(t))
}

func TestRegistrySQLite(t *testing.T) {
	registrytest.Run(t, newSQLiteDB)
}

// pgURL returns ESSC_TEST_DATABASE_URL or skips; set-but-unreachable fails.
func pgURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("ESSC_TEST_DATABASE_URL")
	if url == "" {
		t.Skip("ESSC_TEST_DATABASE_URL not set: PostgreSQL registry tests skipped")
	}
	return url
}

// newPGSchema is registrytest.PostgresSchema (a fresh schema per test).
func newPGSchema(t testing.TB, url string) string { return registrytest.PostgresSchema(t, url) }

func TestRegistryPostgres(t *testing.T) {
	url := pgURL(t)
	registrytest.Run(t, func(t *testing.T) func(t *testing.T) storage.Registry {
		return openWith(newPGSchema(t, url), testSecrets(t))
	})
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	secrets := testSecrets(t)
	for _, tc := range []struct {
		name string
		url  string
		sec  essql.Secrets
		want error
	}{
		{"fail/unreachable_postgres", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", secrets, storage.ErrUnavailable},
		{"fail/unknown_scheme", "mysql://localhost/x", secrets, storage.ErrInvalidRecord},
		{"fail/sqlite_memory", "sqlite://:memory:", secrets, storage.ErrInvalidRecord},
		{"fail/short_ssn_key", "sqlite://" + filepath.Join(t.TempDir(), "a.db"), essql.Secrets{SSNKey: []byte("short"), IndexKey: secrets.IndexKey, AuditKey: secrets.AuditKey}, storage.ErrInvalidRecord},
		{"fail/no_audit_key", "sqlite://" + filepath.Join(t.TempDir(), "b.db"), essql.Secrets{SSNKey: secrets.SSNKey, IndexKey: secrets.IndexKey}, storage.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := essql.Open(ctx, essql.Config{URL: tc.url, Secrets: tc.sec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("ok/injected_clock_and_file_url", func(t *testing.T) {
		at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CST", 8*3600))
		s, err := essql.Open(ctx, essql.Config{URL: "file:" + filepath.Join(t.TempDir(), "c.db"), Secrets: secrets,
			Now: func() time.Time { return at }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		e, err := s.AppendAudit(ctx, storage.AuditEntry{Actor: "a", Action: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if !e.At.Equal(at) || e.At.Location() != time.UTC {
			t.Fatalf("At = %v, want %v in UTC", e.At, at)
		}
	})
}

func TestMigrateIdempotent(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "m.db")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := essql.Migrate(context.Background(), url, logger)
	if err != nil || len(v) < 2 {
		t.Fatalf("first Migrate = %v, %v (want every embedded migration)", v, err)
	}
	for i, ver := range v {
		if ver != i+1 {
			t.Fatalf("first Migrate = %v: not 1..N in order", v)
		}
	}
	v, err = essql.Migrate(context.Background(), url, logger)
	if err != nil || len(v) != 0 {
		t.Fatalf("second Migrate = %v, %v", v, err)
	}
}

func TestSignIns(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	clock := func() time.Time { return now }
	s, err := essql.Open(context.Background(), essql.Config{URL: "sqlite://" + filepath.Join(t.TempDir(), "s.db"),
		Secrets: testSecrets(t), Now: func() time.Time { return clock() }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a := storage.SignIn{SID: "s1", HolderID: "h1", ClientID: "c", Profile: "gm", Subject: "sub", RequestID: "r1",
		ACR: "urn:essc:acr:pin", Browser: "本机 127.0.0.1", At: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.AddSignIn(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSignIn(ctx, a); !errors.Is(err, storage.ErrDuplicate) {
		t.Fatalf("fail/duplicate sid: %v", err)
	}
	if err := s.AddSignIn(ctx, storage.SignIn{SID: "x"}); !errors.Is(err, storage.ErrInvalidRecord) {
		t.Fatalf("fail/invalid: %v", err)
	}
	b := a
	b.SID, b.At, b.ExpiresAt = "s2", now.Add(time.Second), now.Add(time.Minute)
	s.AddSignIn(ctx, b)
	got, err := s.SignInsOf(ctx, "h1")
	if err != nil || len(got) != 2 || got[0].SID != "s2" || got[1] != a {
		t.Fatalf("SignInsOf = %+v, %v", got, err)
	}
	if si, err := s.SignIn(ctx, "s1"); err != nil || si != a {
		t.Fatalf("SignIn = %+v, %v", si, err)
	}
	now = now.Add(2 * time.Minute) // s2 expired
	if got, _ := s.SignInsOf(ctx, "h1"); len(got) != 1 {
		t.Fatalf("expired sign-in listed: %+v", got)
	}
	if _, err := s.SignIn(ctx, "s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired sign-in read: %v", err)
	}
	if n, err := s.PurgeExpiredSignIns(ctx); err != nil || n != 1 {
		t.Fatalf("purge: %d %v (want the expired s2 only)", n, err)
	}
	if got, _ := s.SignInsOf(ctx, "h1"); len(got) != 1 || got[0].SID != "s1" {
		t.Fatalf("after purge: %+v", got)
	}
	if n, err := s.PurgeExpiredSignIns(ctx); err != nil || n != 0 {
		t.Fatalf("second purge: %d %v", n, err)
	}
	if err := s.DropSignIn(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignIn(ctx, "s1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("dropped sign-in read: %v", err)
	}
}

// TestSignInGroupCommit: 20 sign-ins committed as one group (a 16-row and a
// 4-row INSERT) are all stored; a group holding a duplicate sid fails only
// that caller, the others are stored.
func TestSignInGroupCommit(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t).(*essql.Store)
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Microsecond)
			row := func(i int) storage.SignIn {
				return storage.SignIn{SID: fmt.Sprintf("sid-%02d", i), HolderID: "h1", ClientID: "c", Profile: "gm", Subject: "sub",
					RequestID: "r", ACR: "urn:essc:acr:pin", At: now.Add(time.Duration(i) * time.Second), ExpiresAt: now.Add(time.Hour)}
			}
			var rows []storage.SignIn
			for i := range 20 {
				rows = append(rows, row(i))
			}
			for i, err := range essql.FlushSignIns(s, rows) {
				if err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
			}
			mixed := []storage.SignIn{row(20), row(3), row(21)} // row 3 is stored already
			errs := essql.FlushSignIns(s, mixed)
			if errs[0] != nil || !errors.Is(errs[1], storage.ErrDuplicate) || errs[2] != nil {
				t.Fatalf("a group with one duplicate: %v (want nil, ErrDuplicate, nil)", errs)
			}
			got, err := s.SignInsOf(ctx, "h1")
			if err != nil || len(got) != 22 {
				t.Fatalf("SignInsOf: %d rows, %v (want 22)", len(got), err)
			}
		})
	}
}

// engines opens a fresh registry on SQLite and, when ESSC_TEST_DATABASE_URL
// is set, on PostgreSQL (a fresh schema).
func engines(t *testing.T) map[string]func(t *testing.T) storage.Registry {
	e := map[string]func(t *testing.T) storage.Registry{"sqlite": newSQLiteDB(t)}
	if url := os.Getenv("ESSC_TEST_DATABASE_URL"); url != "" {
		e["postgres"] = openWith(newPGSchema(t, url), testSecrets(t))
	}
	return e
}
