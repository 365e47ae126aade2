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
