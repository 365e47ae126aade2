package storage

import (
	"context"
	"time"
)

// SignIn is one completed login of a holder at a relying party, kept until
// its refresh lifetime ends: what back-channel logout must reach, what the
// holder's app lists as "you logged in to X from Y", and what "not me" ends.
// It is durable (the registry) so every replica sees every sign-in.
type SignIn struct {
	SID       string    // OIDC session id (sid claim); unique
	HolderID  string    //
	ClientID  string    //
	Profile   string    // intl | gm
	Subject   string    // the pairwise sub at the client
	RequestID string    // fosite request id = the token family
	ACR       string    //
	Browser   string    // where the browser was: region, IP, device summary (no PII of the holder)
	At        time.Time // authentication time
	ExpiresAt time.Time // after it the record is gone (reads as absent)
}

// SignIns stores sign-ins (the SQL registry implements it).
type SignIns interface {
	// AddSignIn records s (ErrDuplicate if the SID exists).
	AddSignIn(ctx context.Context, s SignIn) error
	// SignInsOf returns the holder's unexpired sign-ins, newest first (at most 100).
	SignInsOf(ctx context.Context, holderID string) ([]SignIn, error)
	// SignIn returns one unexpired sign-in by SID; ErrNotFound otherwise.
	SignIn(ctx context.Context, sid string) (SignIn, error)
	// DropSignIn deletes a sign-in (idempotent).
	DropSignIn(ctx context.Context, sid string) error
	// PurgeExpiredSignIns deletes expired sign-ins (they already read as
	// absent) and returns how many; run it periodically.
	PurgeExpiredSignIns(ctx context.Context) (int64, error)
}
