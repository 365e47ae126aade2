package sql

import "github.com/essc-project/essc/storage"

// FlushAuditBatch queues entries as concurrent appends would and commits
// them as one group (tests: a group larger than one multi-row INSERT).
func FlushAuditBatch(s *Store, entries []storage.AuditEntry) ([]storage.AuditEntry, []error) {
	return flushGroup(s.audit, entries)
}

// FlushSignIns queues sign-ins as concurrent logins would and commits them
// as one group.
func FlushSignIns(s *Store, rows []storage.SignIn) []error {
	_, errs := flushGroup(s.signIns, rows)
	return errs
}

func flushGroup[T any](c *committer[T], vs []T) ([]T, []error) {
	reqs := make([]*groupReq[T], len(vs))
	c.mu.Lock()
	for i, v := range vs {
		reqs[i] = &groupReq[T]{v: v, ok: make(chan struct{})}
		c.q = append(c.q, reqs[i])
	}
	c.mu.Unlock()
	c.flush()
	out, errs := make([]T, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		<-r.ok
		out[i], errs[i] = r.v, r.err
	}
	return out, errs
}

// AuditCommitPaths returns how many audit chunks the PostgreSQL committer
// committed by compare-and-set and in the locking transaction.
func AuditCommitPaths(s *Store) (cas, locked int) {
	s.auditCache.mu.Lock()
	defer s.auditCache.mu.Unlock()
	return s.auditCache.casOK, s.auditCache.locked
}
