package sql_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/essc-project/essc/storage"
	essql "github.com/essc-project/essc/storage/sql"
)

// TestAuditGroupCommit: one-entry appends from many goroutines share
// transactions but each caller gets its own committed seq, the chain is one
// chain, a cancelled caller does not break it, and appends after Close are
// refused as unavailable.
func TestAuditGroupCommit(t *testing.T) {
	r := newSQLiteDB(t)(t)
	ctx := context.Background()
	const n = 64
	seqs := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "qr.scanned", Target: fmt.Sprint(i)})
			if err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
			seqs[i] = e.Seq
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, s := range seqs {
		if s < 1 || s > n || seen[s] {
			t.Fatalf("caller %d got seq %d (duplicate or out of range)", i, s)
		}
		seen[s] = true
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := r.AppendAudit(cancelled, storage.AuditEntry{Actor: "t", Action: "late"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	if _, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "after"}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Entries != n+1 { // the cancelled append queued nothing
		t.Fatalf("chain after group commits: %+v %v", rep, err)
	}
	entries, err := r.AuditEntries(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Seq <= n && e.Target != "" && seqs[mustAtoi(t, e.Target)] != e.Seq {
			t.Fatalf("entry %s stored at seq %d, its caller was told %d", e.Target, e.Seq, seqs[mustAtoi(t, e.Target)])
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "closed"}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("append after Close: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	var i int
	if _, err := fmt.Sscan(s, &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// TestAuditBatchChunks: one group commit of 40 entries (three multi-row
// INSERTs: 16, 16, 8) on each engine gets consecutive seqs in queue order
// and one intact chain.
func TestAuditBatchChunks(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			r := open(t)
			ctx := context.Background()
			if _, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "first"}); err != nil {
				t.Fatal(err)
			}
			in := make([]storage.AuditEntry, 40)
			for i := range in {
				in[i] = storage.AuditEntry{Actor: "t", Action: "qr.scanned", Target: fmt.Sprint(i), Details: []byte(`{}`), At: time.Now()}
			}
			out, errs := essql.FlushAuditBatch(r.(*essql.Store), in)
			for i, e := range out {
				if errs[i] != nil || e.Seq != int64(i+2) {
					t.Fatalf("entry %d: seq %d, %v (want seq %d)", i, e.Seq, errs[i], i+2)
				}
			}
			rep, err := r.VerifyAudit(ctx)
			if err != nil || !rep.OK || rep.Entries != 41 {
				t.Fatalf("chain after a 40-entry batch: %+v %v", rep, err)
			}
			stored, err := r.AuditEntries(ctx, 1, 100)
			if err != nil || len(stored) != 40 || stored[39].Target != "39" || stored[16].Target != "16" {
				t.Fatalf("stored %d entries, %v", len(stored), err)
			}
		})
	}
}

// TestAuditAppendsAcrossReplicas: two registries on one PostgreSQL schema
// (two replicas) group-commit appends concurrently while a third writer
// appends inside registry transactions. Each committer's cached head goes
// stale under the others' appends; its compare-and-set must then re-read
// the head, never fork the chain: every entry is stored once, with a unique
// seq, and the chain verifies.
func TestAuditAppendsAcrossReplicas(t *testing.T) {
	url := newPGSchema(t, pgURL(t))
	secrets := testSecrets(t)
	a, b := openWith(url, secrets)(t), openWith(url, secrets)(t)
	ctx := context.Background()
	const perWriter, writers, txAppends = 40, 4, 30
	var wg sync.WaitGroup
	var failures sync.Map
	for _, r := range []storage.Registry{a, b} {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if _, err := r.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "qr.scanned", Target: fmt.Sprint(w, "-", i)}); err != nil {
						failures.Store(fmt.Sprint(w, "-", i), err)
					}
				}
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range txAppends {
			err := a.Tx(ctx, func(tx storage.RegistryTx) error {
				_, err := tx.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "card.lost", Target: fmt.Sprint("tx-", i)})
				return err
			})
			if err != nil {
				failures.Store(fmt.Sprint("tx-", i), err)
			}
		}
	}()
	wg.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("append %v: %v", k, v)
		return true
	})
	want := 2*writers*perWriter + txAppends
	rep, err := b.VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Entries != int64(want) {
		t.Fatalf("chain after concurrent replicas: %+v %v (want %d entries)", rep, err, want)
	}
	entries, err := a.AuditEntries(ctx, 0, 10000)
	if err != nil || len(entries) != want {
		t.Fatalf("%d entries stored, %v", len(entries), err)
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
}

// TestAuditCommitPaths: on PostgreSQL a replica that was the last to append
// commits a group in one compare-and-set statement, also after an append
// inside one of its own registry transactions (which hands the committer
// the head it left) but not after a rolled-back one's; an append by
// another replica moves the head behind the committer's back, so the next
// group fails the compare and commits in the locking transaction, and the
// one after that compares again.
func TestAuditCommitPaths(t *testing.T) {
	url, secrets := newPGSchema(t, pgURL(t)), testSecrets(t)
	r := openWith(url, secrets)(t).(*essql.Store)
	ctx := context.Background()
	group := func(tag string) {
		t.Helper()
		_, errs := essql.FlushAuditBatch(r, []storage.AuditEntry{{Actor: "t", Action: tag, Details: []byte(`{}`), At: time.Now()}, {Actor: "t", Action: tag, Details: []byte(`{}`), At: time.Now()}})
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	paths := func(wantCAS, wantLocked int) {
		t.Helper()
		if cas, locked := essql.AuditCommitPaths(r); cas != wantCAS || locked != wantLocked {
			t.Fatalf("commit paths: %d compare-and-set, %d locked; want %d, %d", cas, locked, wantCAS, wantLocked)
		}
	}
	group("first") // the head is not known yet
	paths(0, 1)
	group("second")
	group("third")
	paths(2, 1)
	if err := r.Tx(ctx, func(tx storage.RegistryTx) error {
		_, err := tx.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "in-tx"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	group("after the transaction")
	paths(3, 1)
	rolledBack := errors.New("rolled back")
	if err := r.Tx(ctx, func(tx storage.RegistryTx) error {
		if _, err := tx.AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "in-tx"}); err != nil {
			return err
		}
		return rolledBack
	}); !errors.Is(err, rolledBack) {
		t.Fatal(err)
	}
	group("after the rollback")
	paths(4, 1)
	if _, err := openWith(url, secrets)(t).AppendAudit(ctx, storage.AuditEntry{Actor: "t", Action: "other replica"}); err != nil {
		t.Fatal(err)
	}
	group("after another replica's append")
	paths(4, 2)
	group("again")
	paths(5, 2)
	rep, err := r.VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Entries != 16 {
		t.Fatalf("chain: %+v %v", rep, err)
	}
}
