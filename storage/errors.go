package storage

import (
	"errors"

	"github.com/ory/fosite"
)

// Sentinel errors shared by every backend (sessions and registry). Backends
// wrap them with %w; callers test with errors.Is, never ==.
var (
	// ErrNotFound means the record does not exist, has expired, or was
	// deleted/redeemed. It IS fosite.ErrNotFound, because fosite's handlers test
	// for exactly that value to answer invalid_grant / invalid_request.
	ErrNotFound = fosite.ErrNotFound

	// ErrUnavailable means the backend could not be reached or did not answer
	// in time (connection refused, timeout, cluster down). Callers map it to
	// HTTP 503 / temporarily_unavailable, never to invalid_grant, "invalid
	// token" or active:false. It is never returned for a missing record.
	ErrUnavailable = errors.New("storage: backend unavailable")

	// ErrAlreadyUsed is returned when a single-use artefact (QR transaction
	// redemption, once-blob, ...) was already consumed by another caller: the
	// caller lost the race or replayed it.
	ErrAlreadyUsed = errors.New("storage: already used")

	// ErrStateConflict is returned by compare-and-set transitions when the
	// stored state is not the expected one (another caller moved it first).
	ErrStateConflict = errors.New("storage: state conflict")

	// ErrInvalidArgument is returned when a call breaks the contract (empty key,
	// non-positive TTL or limit, nil request). It is a programming error, not a
	// client error.
	ErrInvalidArgument = errors.New("storage: invalid argument")
)
