package sql_test

import (
	"context"
	"crypto/rand"
	dbsql "database/sql"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

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

// newPGSchema creates schema essc_test_<random>, returns a URL whose sessions
// use it, and drops it at cleanup.
func newPGSchema(t testing.TB, url string) string {
	t.Helper()
	admin, err := dbsql.Open("pgx", url)
	if err != nil {
		t.Fatalf("ESSC_TEST_DATABASE_URL: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "essc_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatalf("ESSC_TEST_DATABASE_URL is set but unusable: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		admin.Close()
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}

func TestRegistryPostgres(t *testing.T) {
	url := pgURL(t)
	registrytest.Run(t, func(t *testing.T) func(t *testing.T) storage.Registry {
		return openWith(newPGSchema(t, url), testSecrets(t))
	})
}

var _ = stdlib.GetDefaultDriver
