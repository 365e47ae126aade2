package sql

import "github.com/essc-project/essc/storage"

// FlushAuditBatch queues entries as concurrent appends would and commits
// them as one group (tests: a batch larger than one multi-row INSERT).
func FlushAuditBatch(s *Store, entries []storage.AuditEntry) ([]storage.AuditEntry, []error) {
	reqs := make([]*groupReq[storage.AuditEntry], len(entries))
	s.audit.mu.Lock()
	for i, e := range entries {
		reqs[i] = &groupReq[storage.AuditEntry]{v: e, ok: make(chan struct{})}
		s.audit.q = append(s.audit.q, reqs[i])
	}
	s.audit.mu.Unlock()
	s.audit.flush()
	out, errs := make([]storage.AuditEntry, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		<-r.ok
		out[i], errs[i] = r.v, r.err
	}
	return out, errs
}

// FlushSignIns queues sign-ins as concurrent logins would and commits them
// as one group.
func FlushSignIns(s *Store, rows []storage.SignIn) []error {
	reqs := make([]*groupReq[storage.SignIn], len(rows))
	s.signIns.mu.Lock()
	for i, si := range rows {
		reqs[i] = &groupReq[storage.SignIn]{v: si, ok: make(chan struct{})}
		s.signIns.q = append(s.signIns.q, reqs[i])
	}
	s.signIns.mu.Unlock()
	s.signIns.flush()
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		<-r.ok
		errs[i] = r.err
	}
	return errs
}
