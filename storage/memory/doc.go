// Package memory is the in-process implementation of storage.Sessions: the
// embedded default (one replica) and the fast test double. One mutex guards
// all state; expiry is decided with the injected clock on every read, and
// each write drops a bounded number of entries that have expired, found by
// the second they expire in (expiries), so the cost of forgetting does not
// grow with what is still live. Requests are stored in the same encoded form as in
// Redis (storage.RequestCodec), so both backends behave identically and the
// same conformance suite (storage/storagetest) runs against both.
//
// It imports only the standard library, fosite and storage; never idp,
// qrlogin, cmd or another backend.
package memory
