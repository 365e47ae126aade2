// Package registrytest is the conformance suite of storage.Registry. Every
// registry backend runs it in a few lines (see storage/sql's tests):
//
//	registrytest.Run(t, func(t *testing.T) func(t *testing.T) storage.Registry { … })
//
// It covers CRUD and not-found semantics, unique rules (second live e-card),
// optimistic concurrency (16 concurrent UpdateCard → exactly one wins), atomic
// PIN counters surviving a restart, outbox ordering and cursors, audit chain
// verification and tampering through raw SQL, SSN encryption at rest and
// import idempotence. It imports only storage and the standard library, never
// a concrete backend.
package registrytest
