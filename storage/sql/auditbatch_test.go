package sql_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/essc-project/essc/storage"
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
