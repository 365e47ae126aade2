package storage

// The session-state contract (DESIGN.md §3, §5, §7): everything fosite needs
// except GetClient (clients live in the registry; idp composes the two), plus
// QR transactions, browser SSO sessions, replay caches, rate limits and
// single-use blobs. Backends: storage/memory and storage/redis; the
// conformance suite is storage/storagetest.
//
// Key hygiene: raw codes, token signatures, request URIs, jtis, session ids
// and replay keys are never used as storage keys: backends hash them
// (SHA-256). Every stored item carries an expiry (TTL) and expiry decisions
// use the store's injected clock, so an expired item reads as ErrNotFound on
// every backend even before the backend garbage-collects it.

import (
	"context"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
)

// Sessions is the whole session-state contract. Implementations are safe for
// concurrent use by many goroutines and (for shared backends) many replicas.
// Every method honours ctx; a backend outage returns an error wrapping
// ErrUnavailable, distinct from ErrNotFound.
type Sessions interface {
	FositeStore
	SubjectRevoker
	QRStore
	SSOStore
	ReplayCache
	RateLimiter
	OnceStore

	// Ping checks that the backend answers (readiness probe); ErrUnavailable if not.
	Ping(ctx context.Context) error
}

// FositeStore is what fosite's handlers need, except GetClient. idp builds its
// fosite storage by embedding a FositeStore next to a client lookup.
//
// Contracts beyond fosite's interface comments:
//   - Get* of an unknown or expired item returns an error wrapping ErrNotFound
//     (= fosite.ErrNotFound).
//   - GetAuthorizeCodeSession of an invalidated code returns the stored
//     request AND an error wrapping fosite.ErrInvalidatedAuthorizeCode, so
//     fosite can revoke what the first redemption issued.
//     InvalidateAuthorizeCodeSession is atomic: of N concurrent callers
//     exactly one gets nil, the others get fosite.ErrInvalidatedAuthorizeCode.
//   - Refresh rotation: RotateRefreshToken(requestID, sig) atomically marks
//     the refresh token sig as rotated and deletes the access token issued
//     with it. Within the grace window (backend Config, a few seconds) the
//     rotated token still reads as valid, so a client that lost the response
//     can retry; after it, GetRefreshTokenSession returns the request AND
//     fosite.ErrInactiveToken, which makes fosite's refresh handler revoke the
//     whole family (all tokens sharing the request id): reuse detection.
//     Rotating a token whose grace has passed returns fosite.ErrInactiveToken.
//   - RevokeRefreshToken(requestID) deletes every refresh AND access token of
//     the request id (RFC 7009 §2.1 SHOULD); RevokeAccessToken(requestID)
//     deletes every access token of it. Both are idempotent (nil when nothing
//     is left).
//   - ClientAssertionJWTValid returns fosite.ErrJTIKnown for a jti that is
//     stored and not expired. SetClientAssertionJWT is atomic set-if-absent:
//     of N concurrent callers with one jti exactly one gets nil and the others
//     fosite.ErrJTIKnown, closing the check-then-set race of fosite's caller.
//   - The PKCE and OIDC records of a code keep the request without its
//     session: their Get returns the form, client, scopes and id with an
//     empty session (NewSession). fosite's PKCE handler reads the challenge
//     from the form; essc's ID token handler takes the session from the
//     access request, which the authorization-code handler filled from the
//     code's record. The session is then stored once per code, not three
//     times (and decoded once at the exchange).
//   - GetPARSession returns a fosite.AuthorizeRequester with redirect URI,
//     response types, state and response mode restored.
type FositeStore interface {
	oauth2.CoreStorage
	oauth2.TokenRevocationStorage
	pkce.PKCERequestStorage
	openid.OpenIDConnectRequestStorage
	fosite.PARStorage

	// ClientAssertionJWTValid and SetClientAssertionJWT are the replay half of
	// fosite.ClientManager (RFC 7523 §3 jti).
	ClientAssertionJWTValid(ctx context.Context, jti string) error
	SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error
}

// SubjectRevoker revokes by subject: card cancellation, loss and "not me"
// (DESIGN.md §6, §7) end every token of a holder or of one e-card.
type SubjectRevoker interface {
	// RevokeSubject deletes every access and refresh token whose request was
	// indexed under subject (see SubjectsFunc) — with a non-empty tag, only
	// those indexed with that tag — and returns how many request ids were
	// revoked. Idempotent.
	RevokeSubject(ctx context.Context, subject, tag string) (int, error)
	// RevokeRequest deletes every access and refresh token of a request id
	// (the token family). Idempotent.
	RevokeRequest(ctx context.Context, requestID string) error
}

// A Subject is an index under which the tokens of a request are recorded
// for RevokeSubject (Key, e.g. "holder:<id>") and a tag kept with the entry
// (e.g. the e-card the holder signed in with; may be empty): one index then
// serves revoking everything of the holder and only what one e-card signed
// in to, for one write per token instead of one per index.
type Subject struct{ Key, Tag string }

// SubjectsFunc returns the subjects under which the tokens of r are
// recorded. Backends call it on every token creation. A nil SubjectsFunc in
// a backend Config means SessionSubject.
type SubjectsFunc func(r fosite.Requester) []Subject

// SessionSubject indexes a request under its session's subject, if any.
func SessionSubject(r fosite.Requester) []Subject {
	if r == nil || r.GetSession() == nil || r.GetSession().GetSubject() == "" {
		return nil
	}
	return []Subject{{Key: r.GetSession().GetSubject()}}
}

// LookupClient resolves a client id when a stored request is rebuilt
// (fosite.Request holds a fosite.Client interface and cannot be unmarshalled
// on its own). It must wrap ErrNotFound for an unknown client (the stored
// request then reads as not found) and ErrUnavailable for an outage.
type LookupClient func(ctx context.Context, id string) (fosite.Client, error)

// NewSessionFunc returns a fresh, empty fosite session of the concrete type
// the provider uses (e.g. *openid.DefaultSession); stored sessions are
// unmarshalled into it.
type NewSessionFunc func() fosite.Session

// QRTransaction is one scan-to-login transaction (DESIGN.md §7). The store
// treats State as an opaque string and Data as opaque bytes owned by qrlogin.
type QRTransaction struct {
	ID          string    // 128-bit random id chosen by the caller (used as a key only hashed)
	State       string    // opaque to the store: pending, scanned, approved, consumed, ...
	Version     int64     // 1 on create, +1 on every successful transition
	ClientID    string    // relying party that started the login
	BindingHash []byte    // hash of the browser-binding cookie secret
	CreatedAt   time.Time // set by the store on create
	ExpiresAt   time.Time // absolute expiry; after it the transaction reads as ErrNotFound
	Data        []byte    // opaque payload of the QR layer (validated authorize request, numbers, ...)
}

// QRStore holds QR transactions with compare-and-set transitions and
// cross-replica wake-ups.
type QRStore interface {
	// CreateQR stores t with Version 1 and CreatedAt = now. ErrDuplicate if the
	// id exists, ErrInvalidArgument if ID or State is empty or ExpiresAt is not
	// in the future.
	CreateQR(ctx context.Context, t QRTransaction) (QRTransaction, error)
	// GetQR returns the transaction; ErrNotFound if unknown or expired.
	GetQR(ctx context.Context, id string) (QRTransaction, error)
	// TransitionQR atomically moves the transaction from state `from` to `to`:
	// it reads it, returns ErrStateConflict (wrapped, with the current state in
	// the message) unless State == from, lets mutate (may be nil) change Data,
	// BindingHash or shorten ExpiresAt on a copy, then writes it with State =
	// to and Version+1 only if nobody wrote in between. Of N concurrent callers
	// with the same `from` exactly one succeeds. A mutate error aborts the
	// transition and is returned unchanged. On success the watchers of the
	// transaction are notified (as NotifyQR). ErrNotFound if unknown/expired.
	TransitionQR(ctx context.Context, id, from, to string, mutate func(*QRTransaction) error) (QRTransaction, error)
	// TransitionQRFrom is TransitionQR(cur.ID, cur.State, to, mutate) for a
	// caller that has just read cur: the store may start from cur instead of
	// reading again (one round trip less on Redis); when the stored version
	// has moved since, it reads afresh and behaves exactly as TransitionQR.
	TransitionQRFrom(ctx context.Context, cur QRTransaction, to string, mutate func(*QRTransaction) error) (QRTransaction, error)
	// RedeemQR is the single-use completion: like TransitionQR(from, to) with
	// no mutation, except that a transaction already in state `to` returns
	// ErrAlreadyUsed (a replay), any other state ErrStateConflict.
	RedeemQR(ctx context.Context, id, from, to string) (QRTransaction, error)
	// RedeemQRFrom is RedeemQR(cur.ID, cur.State, to) for a caller that has
	// just read cur, with TransitionQRFrom's shortcut: when the stored
	// version has moved since, it behaves exactly as RedeemQR.
	RedeemQRFrom(ctx context.Context, cur QRTransaction, to string) (QRTransaction, error)
	// WatchQR subscribes to wake-ups of transaction id, from any replica.
	// The channel receives (coalesced, non-blocking: a pending wake-up is
	// replaced by a newer one, WakeQR) after every successful TransitionQR,
	// TransitionQRFrom or NotifyQR; RedeemQR and RedeemQRFrom need not wake
	// it (the redeemed state is the redeeming caller's: watchers stop at the
	// state before it). A wake-up carries the transaction as the transition
	// wrote it (read-only), or nil when it has none (NotifyQR, a replica of an
	// older build): the watcher then reads it. A record may be older than
	// one the watcher read after subscribing: compare Version. The channel is
	// closed when cancel is called or ctx ends. WatchQR returns only once the
	// subscription is live, so the caller's protocol is: WatchQR, then GetQR,
	// then wait. cancel is idempotent.
	WatchQR(ctx context.Context, id string) (<-chan *QRTransaction, func(), error)
	// NotifyQR wakes every watcher of id on every replica.
	NotifyQR(ctx context.Context, id string) error
}

// SSOSession is a browser single-sign-on session. The ID is the raw cookie
// secret; backends store only its hash.
type SSOSession struct {
	ID        string
	Subject   string // holder/e-card index key used by DeleteSSOSubject
	CreatedAt time.Time
	ExpiresAt time.Time
	Data      []byte // opaque to the store (acr, amr, auth_time, ...)
}

// SSOStore keeps browser SSO sessions with a per-subject index.
type SSOStore interface {
	// CreateSSO stores s (CreatedAt = now). ErrDuplicate if the id exists,
	// ErrInvalidArgument if ID is empty or ExpiresAt not in the future.
	CreateSSO(ctx context.Context, s SSOSession) (SSOSession, error)
	// GetSSO returns the session; ErrNotFound if unknown or expired.
	GetSSO(ctx context.Context, id string) (SSOSession, error)
	// RotateSSO atomically re-keys a session to newID (session fixation
	// defence after login): afterwards oldID reads ErrNotFound. Of concurrent
	// rotations of one oldID exactly one succeeds (others ErrNotFound).
	RotateSSO(ctx context.Context, oldID, newID string) (SSOSession, error)
	// DeleteSSO deletes one session; idempotent.
	DeleteSSO(ctx context.Context, id string) error
	// DeleteSSOSubject deletes every session of subject and returns how many.
	DeleteSSOSubject(ctx context.Context, subject string) (int, error)
}

// ReplayCache remembers keys (jti, frame nonces, proof ids) for a while.
type ReplayCache interface {
	// Seen records namespace/key for ttl and reports whether this call was
	// the first to do so (firstTime = true). Atomic: of N concurrent callers
	// exactly one sees firstTime. After ttl the key may be used again.
	Seen(ctx context.Context, namespace, key string, ttl time.Duration) (firstTime bool, err error)
}

// RateDecision is the outcome of one RateLimiter.Allow call.
type RateDecision struct {
	Allowed    bool
	Remaining  int           // hits left in the current window after this one
	RetryAfter time.Duration // when denied: time until the window resets
}

// RateLimiter counts hits in fixed windows aligned to the store clock
// (window start = now truncated to a multiple of window).
type RateLimiter interface {
	// Allow counts one hit for key and allows it while the window's count is
	// at most limit. Denied hits are counted too (a flood stays denied).
	Allow(ctx context.Context, key string, limit int, window time.Duration) (RateDecision, error)
}

// OnceStore holds short-lived single-use blobs (presentation codes, ...).
type OnceStore interface {
	// PutOnce stores value under namespace/key for ttl; ErrDuplicate if a live
	// value exists.
	PutOnce(ctx context.Context, namespace, key string, value []byte, ttl time.Duration) error
	// TakeOnce returns and deletes the value atomically: of N concurrent
	// callers exactly one gets it, the others ErrNotFound (as after expiry).
	TakeOnce(ctx context.Context, namespace, key string) ([]byte, error)
}

// CheckQRMutation enforces what a TransitionQR mutate function may change:
// Data, BindingHash, and ExpiresAt only to shorten it. Anything else is
// ErrInvalidArgument (the store owns ID, State, Version, ClientID, CreatedAt).
func CheckQRMutation(before, after QRTransaction) error {
	if after.ID != before.ID || after.State != before.State || after.Version != before.Version ||
		after.ClientID != before.ClientID || !after.CreatedAt.Equal(before.CreatedAt) ||
		after.ExpiresAt.After(before.ExpiresAt) {
		return ErrInvalidArgument
	}
	return nil
}

// Batcher is implemented by session stores that can hold back the creates
// (codes, PKCE and OIDC records, tokens) and the PKCE and OIDC deletes made
// with one request's context and send them in one round trip. Batch returns
// that context and the flush, which the handler calls once, before it
// answers: until then the held-back writes are invisible. Revocations,
// invalidations, rotations and replay records are never held back. Within a
// batch a store may answer repeated reads of one code's code, PKCE and OIDC
// records from its first read, and a code's invalidation may drop its PKCE
// and OIDC records at once (the redemption deletes both in the same request;
// the batch itself still reads them).
type Batcher interface {
	Batch(ctx context.Context) (context.Context, func(context.Context) error)
}

type newGrantKey struct{}

// NewGrant marks ctx for creating the first tokens of a grant (a code
// exchange, a client_credentials grant: a request id no token has yet), so
// a backend may create the grant's request index in one write instead of
// adding to it. A wrong mark costs the backend a second round trip.
func NewGrant(ctx context.Context) context.Context {
	return context.WithValue(ctx, newGrantKey{}, true)
}

// IsNewGrant tells whether ctx was marked by NewGrant.
func IsNewGrant(ctx context.Context) bool {
	v, _ := ctx.Value(newGrantKey{}).(bool)
	return v
}

// Batch is b.Batch when the store s is a Batcher, otherwise ctx and a flush
// that does nothing (every write already happened).
func Batch(ctx context.Context, s any) (context.Context, func(context.Context) error) {
	if b, ok := s.(Batcher); ok {
		return b.Batch(ctx)
	}
	return ctx, func(context.Context) error { return nil }
}

// WakeQR hands t (nil: a wake-up without a record) to a watcher's channel
// without blocking; a wake-up still pending there is replaced by this newer
// one. One sender at a time per channel (the store's lock or its pub/sub
// loop).
func WakeQR(ch chan *QRTransaction, t *QRTransaction) {
	select {
	case ch <- t:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- t:
	default:
	}
}
