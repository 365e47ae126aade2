package sql

import (
	"context"
	"sync"
	"time"

	"github.com/essc-project/essc/storage"
)

// newAuditBatcher group-commits audit entries appended outside a
// transaction (Store.AppendAudit): the entries of a group share one commit
// — one head update instead of one transaction each. On the QR login path
// (three audited transitions per login) this was the largest registry cost
// (docs/PERFORMANCE.md). The chain is computed in queue order, so it is the
// same chain one-by-one appends would have built.
//
// On PostgreSQL a group (up to rowsPerInsert entries at a time) is first
// tried as one statement (auditCAS): it moves the head from the value this
// committer last wrote, compare-and-set, and inserts the entries only if
// the head moved. Appends by another replica or inside a registry
// transaction in between make the compare fail; the entries are then
// committed in a transaction that locks the head (five round trips instead
// of one). On SQLite (one process, no round trips) a group is always such
// a transaction.
func newAuditBatcher(s *Store) *committer[storage.AuditEntry] {
	h := &s.auditCache
	return newCommitter("append audit", func(group []*groupReq[storage.AuditEntry]) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if s.dialect == postgres {
			h.commit(ctx, s, group)
			return
		}
		if err := s.appendAuditTx(ctx, group); err != nil {
			for _, r := range group {
				r.err = err
			}
		}
	})
}

// appendAuditTx commits a group in one transaction holding the head row.
func (s *Store) appendAuditTx(ctx context.Context, group []*groupReq[storage.AuditEntry]) error {
	n := len(group)
	return s.Tx(ctx, func(tx storage.RegistryTx) error {
		t := tx.(*q)
		var last int64
		var prev []byte
		if err := t.queryRow(ctx, `UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, chain`, n).Scan(&last, &prev); err != nil {
			return t.s.mapErr(err)
		}
		return t.insertAudit(ctx, chainGroup(s.secrets.AuditKey, last-int64(n), prev, group)...)
	})
}

// chainGroup numbers the group's entries after seq and chains them after
// prev, in place; it returns the entries.
func chainGroup(key []byte, seq int64, prev []byte, group []*groupReq[storage.AuditEntry]) []storage.AuditEntry {
	entries := make([]storage.AuditEntry, len(group))
	for i, r := range group {
		r.v.Seq, r.v.Prev = seq+int64(i+1), prev
		r.v.Chain = storage.AuditChain(key, prev, r.v)
		entries[i], prev = r.v, r.v.Chain
	}
	return entries
}

// auditHeadCache is the head as the PostgreSQL committer last wrote it
// (flush may run from more than one goroutine: mu serialises commits).
type auditHeadCache struct {
	mu     sync.Mutex
	known  bool
	seq    int64
	chain  []byte
	casOK  int // chunks committed by compare-and-set (tests)
	locked int // chunks committed in the locking transaction (tests)
}

// auditHead is the audit chain's head: the last entry's seq and chain.
type auditHead struct {
	seq   int64
	chain []byte
}

// committed records the head a registry transaction left when it committed
// its own appends, so the committer's next compare-and-set starts from it
// instead of failing and taking the locking transaction. It is a hint: a
// head that has moved on since (another replica, a later transaction) only
// fails that compare, as before. It never moves the cache back, and skips
// the update while a group is being committed (that commit sets the head).
func (h *auditHeadCache) committed(head auditHead) {
	if !h.mu.TryLock() {
		return
	}
	defer h.mu.Unlock()
	if !h.known || head.seq > h.seq {
		h.known, h.seq, h.chain = true, head.seq, head.chain
	}
}

func (h *auditHeadCache) commit(ctx context.Context, s *Store, group []*groupReq[storage.AuditEntry]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(group) > 0 {
		chunk := group[:min(len(group), rowsPerInsert)]
		group = group[len(chunk):]
		if err := h.commitChunk(ctx, s, chunk); err != nil {
			h.known = false
			for _, r := range append(chunk, group...) {
				r.err = err
			}
			return
		}
		last := chunk[len(chunk)-1].v
		h.known, h.seq, h.chain = true, last.Seq, last.Chain
	}
}

// commitChunk tries the compare-and-set once from the cached head; when the
// head is unknown or has moved it commits in the locking transaction, which
// always makes progress (a replica that kept losing compares to the others
// would otherwise starve).
func (h *auditHeadCache) commitChunk(ctx context.Context, s *Store, chunk []*groupReq[storage.AuditEntry]) error {
	if h.known {
		entries := chainGroup(s.secrets.AuditKey, h.seq, h.chain, chunk)
		last := entries[len(entries)-1]
		args := make([]any, 0, 4+9*len(entries))
		args = append(args, last.Seq, last.Chain, h.seq, h.chain)
		for _, e := range entries {
			args = append(args, e.Seq, micros(e.At), e.Actor, e.Act, e.Action, e.Target, []byte(e.Details), e.Prev, e.Chain)
		}
		res, err := s.q.exec(ctx, auditCAS[len(entries)-1], args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return s.mapErr(err)
		}
		if n == int64(len(entries)) {
			h.casOK++
			return nil
		}
	}
	h.locked++
	return s.appendAuditTx(ctx, chunk)
}

// auditCAS[i] moves the head from (seq, chain) = the 3rd and 4th arguments
// to the 1st and 2nd and, only if it moved, inserts i+1 entries (PostgreSQL:
// the INSERT reads the UPDATE's RETURNING, so both happen or neither).
var auditCAS = func() (qs [rowsPerInsert]string) {
	row := "(?::bigint, ?::bigint, ?::text, ?::text, ?::text, ?::text, ?::bytea, ?::bytea, ?::bytea)"
	rows := row
	for i := range qs {
		qs[i] = `WITH h AS (UPDATE audit_head SET seq = ?, chain = ? WHERE id = 1 AND seq = ? AND chain IS NOT DISTINCT FROM ?::bytea RETURNING 1) ` +
			`INSERT INTO audit_log (` + auditCols + `) SELECT * FROM (VALUES ` + rows + `) AS v WHERE EXISTS (SELECT 1 FROM h)`
		rows += ", " + row
	}
	return qs
}()
