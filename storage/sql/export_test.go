package sql

import "github.com/essc-project/essc/storage"

// FlushAuditBatch queues entries as concurrent appends would and commits
// them as one group (tests: a batch larger than one multi-row INSERT).
func FlushAuditBatch(s *Store, entries []storage.AuditEntry) ([]storage.AuditEntry, []error) {
	reqs := make([]*auditReq, len(entries))
	s.audit.mu.Lock()
	for i, e := range entries {
		reqs[i] = &auditReq{e: e, ok: make(chan struct{})}
		s.audit.q = append(s.audit.q, reqs[i])
	}
	s.audit.mu.Unlock()
	s.audit.flush()
	out, errs := make([]storage.AuditEntry, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		<-r.ok
		out[i], errs[i] = r.e, r.err
	}
	return out, errs
}
