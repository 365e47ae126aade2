package sql

import (
	"context"
	"time"

	"github.com/essc-project/essc/storage"
)

// newAuditBatcher group-commits audit entries appended outside a
// transaction (Store.AppendAudit): the entries of a group share one
// transaction — one head update and one commit instead of one transaction
// each. On the QR login path (three audited transitions per login) this was
// the largest registry cost (docs/PERFORMANCE.md). The chain is computed in
// queue order inside the transaction, so it is the same chain one-by-one
// appends would have built.
func newAuditBatcher(s *Store) *committer[storage.AuditEntry] {
	return newCommitter("append audit", func(group []*groupReq[storage.AuditEntry]) {
		n := len(group)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := s.Tx(ctx, func(tx storage.RegistryTx) error {
			t := tx.(*q)
			var last int64
			var prev []byte
			if err := t.queryRow(ctx, `UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, chain`, n).Scan(&last, &prev); err != nil {
				return t.s.mapErr(err)
			}
			entries := make([]storage.AuditEntry, n)
			for i, r := range group {
				r.v.Seq, r.v.Prev = last-int64(n-1-i), prev
				r.v.Chain = storage.AuditChain(t.s.secrets.AuditKey, prev, r.v)
				entries[i], prev = r.v, r.v.Chain
			}
			if err := t.insertAudit(ctx, entries...); err != nil {
				return err
			}
			_, err := t.exec(ctx, `UPDATE audit_head SET chain = ? WHERE id = 1`, prev)
			return err
		})
		if err != nil {
			for _, r := range group {
				r.err = err
			}
		}
	})
}
