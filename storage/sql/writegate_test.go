package sql

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
)

func TestWriteGate(t *testing.T) {
	ctx := context.Background()
	var none writeGate // PostgreSQL: everyone passes
	for range 3 {
		if err := none.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
	none.leave()

	g := newWriteGate(sqliteDialect)
	if err := g.enter(ctx); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := g.enter(ended); !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("enter while held, context ended: %v", err)
	}
	g.leave()
	if err := g.enter(ended); err != nil { // free: the ended context does not matter
		t.Fatalf("enter when free: %v", err)
	}
	g.leave()
	if newWriteGate(postgres) != nil {
		t.Fatal("PostgreSQL writers must not share a gate")
	}
}

// TestWritersWaitAtTheGate: on SQLite a registry transaction, a sign-in
// group commit, a consumer's cursor write and the sign-in purge wait for the
// process's write gate instead of racing for the database lock (and sleeping
// on SQLite's busy handler); they run once it is free, and a transaction whose context ends while it waits fails as
// unavailable without running.
func TestWritersWaitAtTheGate(t *testing.T) {
	secrets, err := LoadOrCreateSecrets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: "sqlite://" + filepath.Join(t.TempDir(), "r.db"), Secrets: secrets, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if err := s.writes.enter(ctx); err != nil { // another writer holds the gate
		t.Fatal(err)
	}
	var ran atomic.Int32
	txDone, signInDone := make(chan error, 1), make(chan error, 1)
	cursorDone, purgeDone := make(chan error, 1), make(chan error, 1)
	go func() {
		txDone <- s.Tx(ctx, func(storage.RegistryTx) error { ran.Add(1); return nil })
	}()
	go func() {
		signInDone <- s.AddSignIn(ctx, storage.SignIn{SID: "s1", HolderID: "h1", ClientID: "c", Profile: "gm",
			Subject: "sub", RequestID: "r1", At: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	}()
	go func() { cursorDone <- s.AdvanceCursor(ctx, "consumer", 7) }()
	go func() { _, err := s.PurgeExpiredSignIns(ctx); purgeDone <- err }()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = s.Tx(short, func(storage.RegistryTx) error { ran.Add(100); return nil })
	if !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("transaction whose context ended at the gate: %v", err)
	}
	for name, ch := range map[string]chan error{"transaction": txDone, "sign-in": signInDone, "cursor write": cursorDone, "purge": purgeDone} {
		select {
		case err := <-ch:
			t.Fatalf("%s ran past a held gate: %v", name, err)
		default:
		}
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("transaction bodies ran while the gate was held: %d", n)
	}

	s.writes.leave()
	for name, ch := range map[string]chan error{"transaction": txDone, "sign-in": signInDone, "cursor write": cursorDone, "purge": purgeDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s after the gate opened: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waiting after the gate opened", name)
		}
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("transaction bodies run: %d, want the waiting one only", n)
	}
	if seq, err := s.Cursor(ctx, "consumer"); err != nil || seq != 7 {
		t.Fatalf("cursor after the gate opened: %d, %v", seq, err)
	}
	sis, err := s.SignInsOf(ctx, "h1")
	if err != nil || len(sis) != 1 {
		t.Fatalf("sign-ins after the gate opened: %v, %v", sis, err)
	}
}
