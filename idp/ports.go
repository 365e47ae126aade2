package idp

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// KeySource is the signing key set (signing.KeySet satisfies it).
type KeySource interface {
	// Active returns the key that signs new tokens of alg.
	Active(alg string) (*signing.Key, error)
	// ResolveKey returns an active or retired key by kid for verification.
	ResolveKey(kid, alg string) (*signing.Key, error)
	// Publish returns the public keys (pending, active, retired) of algs.
	Publish(algs ...string) signing.JWKS
}

// ClientSource reads registered clients (storage.Registry satisfies it).
// It returns an error wrapping storage.ErrNotFound for unknown clients and
// storage.ErrUnavailable when the registry cannot be reached.
type ClientSource interface {
	Client(ctx context.Context, id string) (storage.Client, error)
}

// SessionStore is what fosite needs to keep authorization state, minus
// GetClient (clients come from ClientSource): storage.Sessions satisfies it.
//
// Contract beyond fosite's comments: InvalidateAuthorizeCodeSession is
// compare-and-set (of N concurrent callers exactly one succeeds, the others
// get fosite.ErrInvalidatedAuthorizeCode), GetPARSession+DeletePARSession make
// a request_uri single-use, and outages wrap storage.ErrUnavailable.
type SessionStore interface {
	oauth2.CoreStorage
	oauth2.TokenRevocationStorage
	pkce.PKCERequestStorage
	openid.OpenIDConnectRequestStorage
	fosite.PARStorage
	ClientAssertionJWTValid(ctx context.Context, jti string) error
	SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error
}

// ReplayCache remembers single-use values (client assertion jti).
type ReplayCache interface {
	// Seen records key in namespace for ttl and reports whether this call was
	// the first to do so; concurrent callers with the same key: exactly one
	// gets firstTime=true.
	Seen(ctx context.Context, namespace, key string, ttl time.Duration) (firstTime bool, err error)
}

// ErrInactive is returned (wrapped) by a HolderDirectory when the holder's
// card or e-card is not active, or the PIN must be changed first: nothing may
// be issued, refreshed or answered for that holder.
var ErrInactive = errors.New("idp: card or e-card not active")

// HolderDirectory is the provider's view of the registry for one holder.
type HolderDirectory interface {
	// Identity re-checks the live status of the holder's e-card and its card
	// and returns the claims source. It returns an error wrapping ErrInactive
	// when the e-card is not active, the card is not active, the e-card is not
	// the holder's, or the PIN must still be changed; storage.ErrUnavailable
	// when the registry is down.
	Identity(ctx context.Context, holderID, ecardID string) (Identity, error)
	// Check is Identity's status check without the claims (no holder read,
	// no SSN decryption): what token, refresh, introspection and the login
	// steps need.
	Check(ctx context.Context, holderID, ecardID string) error
}

// Identity is what claims are made from. SSN is plaintext in memory only.
type Identity struct {
	HolderID   string
	ECardID    string
	Name       string
	SSN        string
	SSNMasked  string
	CardStatus string
	Region     string
	Level      int
}

// ConsentStore remembers which scopes a holder granted to a client.
type ConsentStore interface {
	// Granted returns the scopes holderID granted to clientID (nil if none).
	Granted(ctx context.Context, holderID, clientID string) ([]string, error)
	// Grant adds scopes to the remembered grant (idempotent).
	Grant(ctx context.Context, holderID, clientID string, scopes []string) error
}

// consentChecker is a ConsentStore that judges the holder's e-card in the
// same read as the grant (RegistryConsents): the login's completion uses it
// instead of HolderDirectory.Check followed by Granted. Only a store over
// the registry the HolderDirectory reads may offer it.
type consentChecker interface {
	CheckGranted(ctx context.Context, holderID, ecardID, clientID string) ([]string, error)
}

// LoginStep authenticates the holder for a validated authorize request. The
// QR login (issue 6) implements it; tests use a test-only implementation.
type LoginStep interface {
	// StartLogin takes over the browser. When the holder has authenticated
	// (on any replica), the login step calls Provider.Complete with
	// req.Pending and the Authentication. Pending is integrity-protected but
	// should be kept server-side (it carries the request parameters).
	StartLogin(w http.ResponseWriter, r *http.Request, req LoginRequest)
}

// LoginRequest is what the login step needs to show and enforce.
type LoginRequest struct {
	Profile      string
	ClientID     string
	ClientName   string // registered name, never from the request
	ClientDomain string // registered domain
	// Scopes are the requested scopes. Once the holder is known, the login
	// step asks Provider.NeedConsent which of them must be shown for
	// confirmation and reports the confirmed ones in Authentication.Consented.
	Scopes []string
	// ACRValues are the acceptable acr values in order of preference; empty
	// means any (urn:essc:acr:pin is the floor).
	ACRValues []string
	// MaxAge is the max_age parameter; negative when absent.
	MaxAge      time.Duration
	Prompt      string
	Purpose     string
	RequestedAt time.Time
	Pending     []byte
}

// Authentication is what the login step reports on success.
type Authentication struct {
	HolderID string
	ECardID  string
	ACR      string
	AMR      []string
	AuthTime time.Time
	Purpose  string
	// Consented are the scopes the holder confirmed for this client now.
	Consented []string
	// Browser describes where the login was used (region, IP, device type),
	// for the holder's login notices. Never the holder's data.
	Browser string
}

// EventSource is the consumer side of the registry outbox
// (storage.Registry satisfies it).
type EventSource interface {
	Events(ctx context.Context, afterSeq int64, limit int) ([]storage.Event, error)
	Cursor(ctx context.Context, consumer string) (int64, error)
	AdvanceCursor(ctx context.Context, consumer string, seq int64) error
}
