// Package memory is the in-process implementation of storage.Sessions: the
// embedded default (one replica) and the fast test double. One mutex guards
// all state; expiry is decided with the injected clock, and expired items
// are swept lazily. Requests are stored in the same encoded form as in
// Redis (storage.RequestCodec), so both backends behave identically and the
// same conformance suite (storage/storagetest) runs against both.
//
// It imports only the standard library, fosite and storage; never idp,
// qrlogin, cmd or another backend.
package memory
