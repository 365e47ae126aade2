package sql

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
)

// TestStmtCacheInTransactions: transactions use the statement cache, and a
// cold cache never makes a transaction wait for a connection. Eight
// concurrent transactions on a pool of two each run a query nobody has
// prepared yet; preparing it on the pool needs a free connection, which a
// transaction waiting for it (holding SQLite's write lock) would never get.
func TestStmtCacheInTransactions(t *testing.T) {
	secrets, err := LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Config{URL: "sqlite://" + filepath.Join(t.TempDir(), "r.db"), Secrets: secrets,
		MaxOpenConns: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			errs <- s.Tx(ctx, func(tx storage.RegistryTx) error {
				_, err := tx.CardByNumber(ctx, "X00000000")
				if !errors.Is(err, storage.ErrNotFound) {
					return err
				}
				time.Sleep(20 * time.Millisecond) // hold the connection and the write lock
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("transaction on a cold statement cache: %v", err)
		}
	}
	// The statement was prepared in the background, for the next transactions.
	deadline := time.Now().Add(5 * time.Second)
	for !cached(s, "number = ?") {
		if time.Now().After(deadline) {
			t.Fatal("the transactions' query was not prepared in the background")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cached reports whether a prepared statement whose text contains part is in
// s's statement cache.
func cached(s *Store, part string) bool {
	s.stmts.mu.RLock()
	defer s.stmts.mu.RUnlock()
	for q, st := range s.stmts.m {
		if st != nil && strings.Contains(q, part) {
			return true
		}
	}
	return false
}
