package main

import (
	"crypto/rand"
	dbsql "database/sql"
	"encoding/hex"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // test-only: "pgx" driver for schema setup
)

// benchPGSchema creates a fresh schema, returns a URL using it and drops it
// at cleanup.
func benchPGSchema(tb testing.TB, url string) string {
	tb.Helper()
	admin, err := dbsql.Open("pgx", url)
	if err != nil {
		tb.Fatalf("ESSC_TEST_DATABASE_URL: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "essc_import_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		tb.Fatalf("ESSC_TEST_DATABASE_URL is set but unusable: %v", err)
	}
	tb.Cleanup(func() {
		admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		admin.Close()
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}
