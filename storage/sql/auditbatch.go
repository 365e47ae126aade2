package sql

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/essc-project/essc/storage"
)

// maxAuditBatch bounds how many queued entries one transaction appends.
const maxAuditBatch = 256

// auditLinger is how long the batcher waits after the first entry of a
// batch for others to join it. Without it a batch held only what arrived
// during the previous commit (mostly one entry at a thousand logins a
// second on SQLite); with it each commit carries several, for at most this
// much added latency per audited step.
const auditLinger = time.Millisecond

// auditBatcher group-commits audit entries appended outside a transaction
// (Store.AppendAudit): every caller still returns only after its entry is
// committed, but entries that arrive while a commit is in flight share the
// next transaction — one head update and one commit for the batch instead
// of one transaction each. On the QR login path (three audited transitions
// per login) this was the largest registry cost (docs/PERFORMANCE.md).
// The chain is computed in queue order inside the transaction, so it is the
// same chain one-by-one appends would have built.
type auditBatcher struct {
	s    *Store
	mu   sync.Mutex
	q    []*auditReq
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type auditReq struct {
	e   storage.AuditEntry
	err error
	ok  chan struct{}
}

func newAuditBatcher(s *Store) *auditBatcher {
	return &auditBatcher{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// append queues e and waits until it is committed (or failed), or ctx ends
// (a context that ended before the call queues nothing; one that ends while
// waiting may still see its entry recorded).
func (b *auditBatcher) append(ctx context.Context, e storage.AuditEntry) (storage.AuditEntry, error) {
	if err := ctx.Err(); err != nil { // ended before the call: nothing is queued
		return storage.AuditEntry{}, fmt.Errorf("sql: append audit: %w", err)
	}
	b.once.Do(func() { go b.run() })
	req := &auditReq{e: e, ok: make(chan struct{})}
	b.mu.Lock()
	select {
	case <-b.stop:
		b.mu.Unlock()
		return storage.AuditEntry{}, fmt.Errorf("sql: append audit: registry closed: %w", storage.ErrUnavailable)
	default:
	}
	b.q = append(b.q, req)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	select {
	case <-req.ok:
		return req.e, req.err
	case <-ctx.Done():
		return storage.AuditEntry{}, fmt.Errorf("sql: append audit: %w", ctx.Err())
	}
}

func (b *auditBatcher) run() {
	defer close(b.done)
	for {
		select {
		case <-b.wake:
		case <-b.stop:
			b.flush() // callers queued before close still get their answer
			return
		}
		select {
		case <-time.After(auditLinger):
		case <-b.stop:
		}
		b.flush()
	}
}

// flush commits everything queued, in batches of at most maxAuditBatch.
func (b *auditBatcher) flush() {
	for {
		b.mu.Lock()
		n := min(len(b.q), maxAuditBatch)
		batch := b.q[:n:n]
		b.q = b.q[n:]
		b.mu.Unlock()
		if n == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.s.Tx(ctx, func(tx storage.RegistryTx) error {
			t := tx.(*q)
			var last int64
			var prev []byte
			if err := t.queryRow(ctx, `UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, chain`, n).Scan(&last, &prev); err != nil {
				return t.s.mapErr(err)
			}
			entries := make([]storage.AuditEntry, n)
			for i, r := range batch {
				r.e.Seq, r.e.Prev = last-int64(n-1-i), prev
				r.e.Chain = storage.AuditChain(t.s.secrets.AuditKey, prev, r.e)
				entries[i], prev = r.e, r.e.Chain
			}
			if err := t.insertAudit(ctx, entries...); err != nil {
				return err
			}
			_, err := t.exec(ctx, `UPDATE audit_head SET chain = ? WHERE id = 1`, prev)
			return err
		})
		cancel()
		for _, r := range batch {
			if err != nil {
				r.e, r.err = storage.AuditEntry{}, fmt.Errorf("sql: append audit: %w", err)
			}
			close(r.ok)
		}
	}
}

func (b *auditBatcher) close() {
	b.mu.Lock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.mu.Unlock()
	b.once.Do(func() { close(b.done) }) // never started
	<-b.done
}
