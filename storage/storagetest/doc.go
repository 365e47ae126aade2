// Package storagetest is the conformance suite of storage.Sessions: every
// backend runs Run in a few lines (storage/memory always, storage/redis when
// ESSC_TEST_REDIS_URL is set). It proves the semantics fosite relies on
// (not-found, invalidated codes, refresh rotation with grace and reuse
// detection, revocation by request id and by subject), expiry with an
// injected clock, the QR/SSO/replay/rate/once contracts, and that single-use
// artefacts have exactly one winner among 16 concurrent callers.
//
// It imports testing, fosite and storage only; never a backend.
package storagetest
