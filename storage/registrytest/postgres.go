package registrytest

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgresSchema creates schema essc_test_<random> on the database at url,
// returns a URL whose sessions use it, and drops it at cleanup. A set but
// unusable url fails the test (CI must never silently skip PostgreSQL).
func PostgresSchema(t testing.TB, url string) string {
	t.Helper()
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("ESSC_TEST_DATABASE_URL: %v", err)
	}
	admin := stdlib.OpenDB(*cc)
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
