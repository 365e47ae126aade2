package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/essc-project/essc/storage"
)

// Options is what the suite hands a backend factory; the backend must use
// every field (clock for all expiry decisions).
type Options struct {
	Now          func() time.Time
	Lookup       storage.LookupClient
	NewSession   storage.NewSessionFunc
	Subjects     storage.SubjectsFunc
	RefreshGrace time.Duration
}

// Factory returns a fresh, empty store built from o. Cleanup goes through
// t.Cleanup.
type Factory func(t *testing.T, o Options) storage.Sessions

// Clock is a settable test clock safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts at start (truncated to the millisecond, as backends store).
func NewClock(start time.Time) *Clock { return &Clock{now: start.Truncate(time.Millisecond)} }

// Now returns the current test time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// Grace is the refresh grace window the suite configures.
const Grace = 5 * time.Second

// env is one test's store, clock and clients.
type env struct {
	s     storage.Sessions
	clock *Clock
	ctx   context.Context
}

func newEnv(t *testing.T, f Factory) *env {
	t.Helper()
	clock := NewClock(time.Now())
	clients := map[string]fosite.Client{
		"portal": portalClient(),
		"bank":   &fosite.DefaultClient{ID: "bank"},
	}
	lookup := func(_ context.Context, id string) (fosite.Client, error) {
		switch id {
		case "down":
			return nil, fmt.Errorf("registry: %w", storage.ErrUnavailable)
		}
		if c, ok := clients[id]; ok {
			return c, nil
		}
		return nil, fmt.Errorf("client %q: %w", id, storage.ErrNotFound)
	}
	s := f(t, Options{
		Now:          clock.Now,
		Lookup:       lookup,
		NewSession:   func() fosite.Session { return openid.NewDefaultSession() },
		RefreshGrace: Grace,
		Subjects: func(r fosite.Requester) []storage.Subject {
			if sub := r.GetSession().GetSubject(); sub != "" {
				return []storage.Subject{{Key: "holder:" + sub, Tag: r.GetClient().GetID()}}
			}
			return nil
		},
	})
	return &env{s: s, clock: clock, ctx: context.Background()}
}

// request builds a stored-shape authorize request for subject sub.
func (e *env) request(id, client, sub string) *fosite.AuthorizeRequest {
	now := e.clock.Now().UTC()
	sess := openid.NewDefaultSession()
	sess.Subject = sub
	sess.Claims.Subject = sub
	sess.Claims.AuthTime = now
	sess.Claims.Extra = map[string]interface{}{"cycle_ms": int64(1700000000123), "level": 2}
	sess.SetExpiresAt(fosite.AuthorizeCode, now.Add(60*time.Second))
	sess.SetExpiresAt(fosite.AccessToken, now.Add(10*time.Minute))
	sess.SetExpiresAt(fosite.RefreshToken, now.Add(12*time.Hour))
	sess.SetExpiresAt(fosite.PushedAuthorizeRequestContext, now.Add(90*time.Second))
	ru, _ := url.Parse("https://portal.example/cb?x=1")
	return &fosite.AuthorizeRequest{
		ResponseTypes:        fosite.Arguments{"code"},
		RedirectURI:          ru,
		State:                "st-123456",
		HandledResponseTypes: fosite.Arguments{"code"},
		ResponseMode:         fosite.ResponseModeQuery,
		DefaultResponseMode:  fosite.ResponseModeQuery,
		Request: fosite.Request{
			ID:                id,
			RequestedAt:       now,
			Client:            &fosite.DefaultClient{ID: client},
			RequestedScope:    fosite.Arguments{"openid", "essc.card"},
			GrantedScope:      fosite.Arguments{"openid"},
			Form:              url.Values{"nonce": {"n-1"}, "acr_values": {"urn:essc:acr:pin"}},
			Session:           sess,
			RequestedAudience: fosite.Arguments{"api"},
			GrantedAudience:   fosite.Arguments{"api"},
		},
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Run runs the whole suite against stores made by f.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"codec/round-trip", testRoundTrip},
		{"codec/client-lookup-errors", testLookupErrors},
		{"code/not-found", testCodeNotFound},
		{"code/invalidate", testCodeInvalidate},
		{"code/expiry", testCodeExpiry},
		{"pkce-oidc-par", testPKCEOIDCPAR},
		{"access/create-get-delete", testAccess},
		{"refresh/rotation-grace-reuse", testRefreshRotation},
		{"refresh/no-grace-after-window", testRotateAfterGrace},
		{"revoke/request", testRevokeRequest},
		{"revoke/subject", testRevokeSubject},
		{"jti", testJTI},
		{"qr/lifecycle", testQR},
		{"qr/watch", testQRWatch},
		{"sso", testSSO},
		{"replay", testSeen},
		{"rate", testRate},
		{"once", testOnce},
		{"concurrency/code", testConcurrentCode},
		{"concurrency/qr", testConcurrentQR},
		{"concurrency/jti", testConcurrentJTI},
		{"concurrency/once-seen-rotate", testConcurrentMisc},
		{"fosite/code-pkce-refresh-reuse", testFositeFlow},
		{"batch", testBatch},
		{"batch/redeem-code", testBatchRedeem},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, f)) })
	}
}

func testRoundTrip(t *testing.T, e *env) {
	in := e.request("req-rt", "portal", "alice")
	noErr(t, "create code", e.s.CreateAuthorizeCodeSession(e.ctx, "code-rt", in))
	got, err := e.s.GetAuthorizeCodeSession(e.ctx, "code-rt", openid.NewDefaultSession())
	noErr(t, "get code", err)
	ar, ok := got.(fosite.AuthorizeRequester)
	if !ok {
		t.Fatalf("code session is %T, want an AuthorizeRequester", got)
	}
	if ar.GetID() != "req-rt" || ar.GetClient().GetID() != "portal" ||
		!ar.GetRequestedAt().Equal(in.RequestedAt) ||
		fmt.Sprint(ar.GetRequestedScopes()) != "[openid essc.card]" ||
		fmt.Sprint(ar.GetGrantedScopes()) != "[openid]" ||
		ar.GetRequestForm().Get("nonce") != "n-1" ||
		fmt.Sprint(ar.GetGrantedAudience()) != "[api]" || fmt.Sprint(ar.GetRequestedAudience()) != "[api]" ||
		ar.GetRedirectURI().String() != "https://portal.example/cb?x=1" || ar.GetState() != "st-123456" ||
		fmt.Sprint(ar.GetResponseTypes()) != "[code]" || ar.GetResponseMode() != fosite.ResponseModeQuery {
		t.Fatalf("round trip lost fields: %+v", ar)
	}
	sess, ok := ar.GetSession().(*openid.DefaultSession)
	if !ok {
		t.Fatalf("session is %T", ar.GetSession())
	}
	if sess.Subject != "alice" || sess.Claims.Subject != "alice" || !sess.Claims.AuthTime.Equal(in.GetSession().(*openid.DefaultSession).Claims.AuthTime) {
		t.Fatalf("session lost fields: %+v", sess)
	}
	if !sess.GetExpiresAt(fosite.AccessToken).Equal(in.GetSession().GetExpiresAt(fosite.AccessToken)) {
		t.Fatalf("expiry lost: %v", sess.ExpiresAt)
	}
	// Integer claims stay integers: no float64 rounding, no exponent form.
	b, err := json.Marshal(sess.Claims.Extra)
	noErr(t, "marshal extra", err)
	if string(b) != `{"cycle_ms":1700000000123,"level":2}` {
		t.Fatalf("integer claims changed: %s", b)
	}
	if _, isFloat := sess.Claims.Extra["level"].(float64); isFloat {
		t.Fatalf("integer claim decoded as float64")
	}
	// The store must not alias the caller's objects.
	in.GetSession().(*openid.DefaultSession).Subject = "mallory"
	got2, err := e.s.GetAuthorizeCodeSession(e.ctx, "code-rt", nil)
	noErr(t, "get code again", err)
	if got2.GetSession().GetSubject() != "alice" {
		t.Fatalf("store aliased the caller's session")
	}
}

func testLookupErrors(t *testing.T, e *env) {
	noErr(t, "create gone", e.s.CreateAccessTokenSession(e.ctx, "at-gone", e.request("r1", "deleted-client", "a")))
	noErr(t, "create down", e.s.CreateAccessTokenSession(e.ctx, "at-down", e.request("r2", "down", "a")))
	_, err := e.s.GetAccessTokenSession(e.ctx, "at-gone", nil)
	wantErr(t, "deleted client", err, storage.ErrNotFound)
	_, err = e.s.GetAccessTokenSession(e.ctx, "at-down", nil)
	wantErr(t, "registry down", err, storage.ErrUnavailable)
	if errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("outage must not look like not-found: %v", err)
	}
}

func testCodeNotFound(t *testing.T, e *env) {
	_, err := e.s.GetAuthorizeCodeSession(e.ctx, "nope", nil)
	wantErr(t, "get unknown code", err, fosite.ErrNotFound)
	wantErr(t, "invalidate unknown code", e.s.InvalidateAuthorizeCodeSession(e.ctx, "nope"), fosite.ErrNotFound)
	for name, get := range map[string]func() error{
		"access":  func() error { _, err := e.s.GetAccessTokenSession(e.ctx, "nope", nil); return err },
		"refresh": func() error { _, err := e.s.GetRefreshTokenSession(e.ctx, "nope", nil); return err },
		"pkce":    func() error { _, err := e.s.GetPKCERequestSession(e.ctx, "nope", nil); return err },
		"oidc":    func() error { _, err := e.s.GetOpenIDConnectSession(e.ctx, "nope", nil); return err },
		"par":     func() error { _, err := e.s.GetPARSession(e.ctx, "nope"); return err },
		"qr":      func() error { _, err := e.s.GetQR(e.ctx, "nope"); return err },
		"sso":     func() error { _, err := e.s.GetSSO(e.ctx, "nope"); return err },
		"once":    func() error { _, err := e.s.TakeOnce(e.ctx, "ns", "nope"); return err },
	} {
		wantErr(t, "fail/unknown "+name, get(), storage.ErrNotFound)
	}
	// Deletes and revocations of unknown items are idempotent.
	noErr(t, "delete unknown access", e.s.DeleteAccessTokenSession(e.ctx, "nope"))
	noErr(t, "revoke unknown request", e.s.RevokeRefreshToken(e.ctx, "nope"))
	noErr(t, "revoke unknown access", e.s.RevokeAccessToken(e.ctx, "nope"))
}

func testCodeInvalidate(t *testing.T, e *env) {
	noErr(t, "create", e.s.CreateAuthorizeCodeSession(e.ctx, "code-1", e.request("req-1", "portal", "alice")))
	noErr(t, "invalidate", e.s.InvalidateAuthorizeCodeSession(e.ctx, "code-1"))
	r, err := e.s.GetAuthorizeCodeSession(e.ctx, "code-1", nil)
	wantErr(t, "get invalidated", err, fosite.ErrInvalidatedAuthorizeCode)
	if r == nil || r.GetID() != "req-1" {
		t.Fatalf("invalidated code must still return its request, got %v", r)
	}
	wantErr(t, "second invalidate", e.s.InvalidateAuthorizeCodeSession(e.ctx, "code-1"), fosite.ErrInvalidatedAuthorizeCode)
}

func testCodeExpiry(t *testing.T, e *env) {
	noErr(t, "create", e.s.CreateAuthorizeCodeSession(e.ctx, "code-x", e.request("req-x", "portal", "a")))
	e.clock.Advance(59 * time.Second)
	_, err := e.s.GetAuthorizeCodeSession(e.ctx, "code-x", nil)
	noErr(t, "ok/before expiry", err)
	e.clock.Advance(2 * time.Second)
	_, err = e.s.GetAuthorizeCodeSession(e.ctx, "code-x", nil)
	wantErr(t, "fail/after expiry", err, storage.ErrNotFound)
	wantErr(t, "fail/invalidate after expiry", e.s.InvalidateAuthorizeCodeSession(e.ctx, "code-x"), storage.ErrNotFound)
}

func testPKCEOIDCPAR(t *testing.T, e *env) {
	r := e.request("req-p", "portal", "a")
	noErr(t, "pkce create", e.s.CreatePKCERequestSession(e.ctx, "sig", r))
	noErr(t, "oidc create", e.s.CreateOpenIDConnectSession(e.ctx, "sig", r))
	noErr(t, "par create", e.s.CreatePARSession(e.ctx, "urn:ietf:params:oauth:request_uri:abc", r))
	p, err := e.s.GetPKCERequestSession(e.ctx, "sig", nil)
	noErr(t, "pkce get", err)
	if p.GetRequestForm().Get("acr_values") != "urn:essc:acr:pin" {
		t.Fatalf("pkce form lost")
	}
	o, err := e.s.GetOpenIDConnectSession(e.ctx, "sig", r)
	noErr(t, "oidc get", err)
	if o.GetID() != "req-p" || o.GetClient().GetID() != "portal" || o.GetRequestForm().Get("nonce") != "n-1" || !o.GetGrantedScopes().Has("openid") {
		t.Fatalf("oidc record lost its request: id %q, form %v", o.GetID(), o.GetRequestForm())
	}
	// Both keep no session (the code's record has it): an empty one comes back.
	for name, got := range map[string]fosite.Requester{"pkce": p, "oidc": o} {
		if sess, ok := got.GetSession().(*openid.DefaultSession); !ok || sess.Subject != "" || sess.Claims.Subject != "" || len(sess.Claims.Extra) != 0 {
			t.Fatalf("%s record kept a session: %#v", name, got.GetSession())
		}
	}
	// The PKCE and OIDC records expire with the code, by its session's expiry.
	noErr(t, "pkce create (expiry)", e.s.CreatePKCERequestSession(e.ctx, "sig-exp", r))
	noErr(t, "oidc create (expiry)", e.s.CreateOpenIDConnectSession(e.ctx, "sig-exp", r))
	e.clock.Advance(61 * time.Second)
	_, err = e.s.GetPKCERequestSession(e.ctx, "sig-exp", nil)
	wantErr(t, "fail/pkce after the code's expiry", err, storage.ErrNotFound)
	_, err = e.s.GetOpenIDConnectSession(e.ctx, "sig-exp", r)
	wantErr(t, "fail/oidc after the code's expiry", err, storage.ErrNotFound)
	par, err := e.s.GetPARSession(e.ctx, "urn:ietf:params:oauth:request_uri:abc")
	noErr(t, "par get", err)
	if par.GetRedirectURI().String() != "https://portal.example/cb?x=1" || par.GetState() != "st-123456" {
		t.Fatalf("par lost authorize fields")
	}
	noErr(t, "pkce delete", e.s.DeletePKCERequestSession(e.ctx, "sig"))
	noErr(t, "oidc delete", e.s.DeleteOpenIDConnectSession(e.ctx, "sig"))
	noErr(t, "par delete", e.s.DeletePARSession(e.ctx, "urn:ietf:params:oauth:request_uri:abc"))
	_, err = e.s.GetPKCERequestSession(e.ctx, "sig", nil)
	wantErr(t, "pkce after delete", err, storage.ErrNotFound)
	_, err = e.s.GetOpenIDConnectSession(e.ctx, "sig", r)
	wantErr(t, "oidc after delete", err, storage.ErrNotFound)
	_, err = e.s.GetPARSession(e.ctx, "urn:ietf:params:oauth:request_uri:abc")
	wantErr(t, "par after delete", err, storage.ErrNotFound)
	// PAR expires by its own context expiry (90 s here).
	noErr(t, "par create 2", e.s.CreatePARSession(e.ctx, "urn:2", r))
	e.clock.Advance(91 * time.Second)
	_, err = e.s.GetPARSession(e.ctx, "urn:2")
	wantErr(t, "par after expiry", err, storage.ErrNotFound)
}

func testAccess(t *testing.T, e *env) {
	r := e.request("req-a", "portal", "a")
	noErr(t, "create", e.s.CreateAccessTokenSession(e.ctx, "at-1", r))
	got, err := e.s.GetAccessTokenSession(e.ctx, "at-1", nil)
	noErr(t, "get", err)
	if got.GetID() != "req-a" {
		t.Fatalf("id %q", got.GetID())
	}
	noErr(t, "delete", e.s.DeleteAccessTokenSession(e.ctx, "at-1"))
	_, err = e.s.GetAccessTokenSession(e.ctx, "at-1", nil)
	wantErr(t, "after delete", err, storage.ErrNotFound)
	noErr(t, "create 2", e.s.CreateAccessTokenSession(e.ctx, "at-2", r))
	e.clock.Advance(10*time.Minute + time.Second)
	_, err = e.s.GetAccessTokenSession(e.ctx, "at-2", nil)
	wantErr(t, "after expiry", err, storage.ErrNotFound)
}

// testRefreshRotation replays exactly the calls of fosite v0.49's refresh
// handler (flow_refresh.go): Get, RotateRefreshToken, Create access,
// Create refresh; and on reuse (ErrInactiveToken) Delete, RevokeRefreshToken,
// RevokeAccessToken.
func testRefreshRotation(t *testing.T, e *env) {
	r := e.request("fam-1", "portal", "alice")
	noErr(t, "at1", e.s.CreateAccessTokenSession(e.ctx, "at1", r))
	noErr(t, "rt1", e.s.CreateRefreshTokenSession(e.ctx, "rt1", "at1", r))

	refresh := func(old, at, rt string) error {
		if _, err := e.s.GetRefreshTokenSession(e.ctx, old, nil); err != nil {
			return err
		}
		if err := e.s.RotateRefreshToken(e.ctx, "fam-1", old); err != nil {
			return err
		}
		if err := e.s.CreateAccessTokenSession(e.ctx, at, r); err != nil {
			return err
		}
		return e.s.CreateRefreshTokenSession(e.ctx, rt, at, r)
	}
	noErr(t, "ok/first refresh", refresh("rt1", "at2", "rt2"))
	_, err := e.s.GetAccessTokenSession(e.ctx, "at1", nil)
	wantErr(t, "rotation deletes the old access token", err, storage.ErrNotFound)

	// A lost response: the client retries with rt1 inside the grace window.
	e.clock.Advance(Grace / 2)
	noErr(t, "ok/retry within grace", refresh("rt1", "at3", "rt3"))

	// After the window, rt1 is a reuse: the request comes back with ErrInactiveToken.
	e.clock.Advance(Grace)
	got, err := e.s.GetRefreshTokenSession(e.ctx, "rt1", nil)
	wantErr(t, "fail/reuse after grace", err, fosite.ErrInactiveToken)
	if got == nil || got.GetID() != "fam-1" {
		t.Fatalf("reuse must return the request for family revocation, got %v", got)
	}
	// fosite's handleRefreshTokenReuse:
	noErr(t, "delete reused", e.s.DeleteRefreshTokenSession(e.ctx, "rt1"))
	noErr(t, "revoke refresh family", e.s.RevokeRefreshToken(e.ctx, got.GetID()))
	noErr(t, "revoke access family", e.s.RevokeAccessToken(e.ctx, got.GetID()))
	for _, sig := range []string{"rt2", "rt3"} {
		_, err := e.s.GetRefreshTokenSession(e.ctx, sig, nil)
		wantErr(t, "family refresh "+sig+" revoked", err, storage.ErrNotFound)
	}
	for _, sig := range []string{"at2", "at3"} {
		_, err := e.s.GetAccessTokenSession(e.ctx, sig, nil)
		wantErr(t, "family access "+sig+" revoked", err, storage.ErrNotFound)
	}
}

func testRotateAfterGrace(t *testing.T, e *env) {
	r := e.request("fam-2", "portal", "a")
	noErr(t, "rt", e.s.CreateRefreshTokenSession(e.ctx, "rt", "", r))
	noErr(t, "rotate", e.s.RotateRefreshToken(e.ctx, "fam-2", "rt"))
	e.clock.Advance(Grace)
	wantErr(t, "fail/rotate after grace", e.s.RotateRefreshToken(e.ctx, "fam-2", "rt"), fosite.ErrInactiveToken)
	wantErr(t, "fail/rotate unknown", e.s.RotateRefreshToken(e.ctx, "fam-2", "nope"), storage.ErrNotFound)
	// Refresh tokens expire by their session expiry (12 h here).
	noErr(t, "rt-b", e.s.CreateRefreshTokenSession(e.ctx, "rt-b", "", r))
	e.clock.Advance(12*time.Hour + time.Second)
	_, err := e.s.GetRefreshTokenSession(e.ctx, "rt-b", nil)
	wantErr(t, "fail/after expiry", err, storage.ErrNotFound)
}

func testRevokeRequest(t *testing.T, e *env) {
	r := e.request("req-r", "portal", "a")
	other := e.request("req-other", "portal", "a")
	noErr(t, "at", e.s.CreateAccessTokenSession(e.ctx, "at", r))
	noErr(t, "at-b", e.s.CreateAccessTokenSession(e.ctx, "at-b", r))
	noErr(t, "rt", e.s.CreateRefreshTokenSession(e.ctx, "rt", "at", r))
	noErr(t, "other", e.s.CreateAccessTokenSession(e.ctx, "at-o", other))
	noErr(t, "revoke access", e.s.RevokeAccessToken(e.ctx, "req-r"))
	_, err := e.s.GetAccessTokenSession(e.ctx, "at-b", nil)
	wantErr(t, "access revoked", err, storage.ErrNotFound)
	_, err = e.s.GetRefreshTokenSession(e.ctx, "rt", nil)
	noErr(t, "RevokeAccessToken keeps the refresh token", err)
	noErr(t, "at again", e.s.CreateAccessTokenSession(e.ctx, "at-c", r))
	noErr(t, "revoke request", e.s.RevokeRequest(e.ctx, "req-r"))
	_, err = e.s.GetRefreshTokenSession(e.ctx, "rt", nil)
	wantErr(t, "refresh revoked", err, storage.ErrNotFound)
	_, err = e.s.GetAccessTokenSession(e.ctx, "at-c", nil)
	wantErr(t, "access revoked", err, storage.ErrNotFound)
	_, err = e.s.GetAccessTokenSession(e.ctx, "at-o", nil)
	noErr(t, "other request untouched", err)

	// A grant's first tokens marked storage.NewGrant (batched, as the token
	// endpoint does), a refresh's unmarked ones, and a wrong mark (a second
	// "first" put of the same request): revocation finds all of them.
	g := e.request("req-g", "portal", "a")
	ctx, flush := storage.Batch(storage.NewGrant(e.ctx), e.s)
	noErr(t, "first access", e.s.CreateAccessTokenSession(ctx, "g-at1", g))
	noErr(t, "first refresh", e.s.CreateRefreshTokenSession(ctx, "g-rt1", "g-at1", g))
	noErr(t, "flush first tokens", flush(e.ctx))
	noErr(t, "refreshed access", e.s.CreateAccessTokenSession(e.ctx, "g-at2", g))
	noErr(t, "wrongly marked access", e.s.CreateAccessTokenSession(storage.NewGrant(e.ctx), "g-at3", g))
	noErr(t, "revoke access of the grant", e.s.RevokeAccessToken(e.ctx, "req-g"))
	for _, sig := range []string{"g-at1", "g-at2", "g-at3"} {
		_, err = e.s.GetAccessTokenSession(e.ctx, sig, nil)
		wantErr(t, sig+" revoked", err, storage.ErrNotFound)
	}
	_, err = e.s.GetRefreshTokenSession(e.ctx, "g-rt1", nil)
	noErr(t, "the grant's refresh token kept", err)
	noErr(t, "access after a revocation", e.s.CreateAccessTokenSession(e.ctx, "g-at4", g))
	noErr(t, "revoke the grant", e.s.RevokeRequest(e.ctx, "req-g"))
	_, err = e.s.GetRefreshTokenSession(e.ctx, "g-rt1", nil)
	wantErr(t, "the grant's refresh token revoked", err, storage.ErrNotFound)
	_, err = e.s.GetAccessTokenSession(e.ctx, "g-at4", nil)
	wantErr(t, "g-at4 revoked", err, storage.ErrNotFound)
}

func testRevokeSubject(t *testing.T, e *env) {
	a1, a2, b := e.request("ra1", "portal", "alice"), e.request("ra2", "bank", "alice"), e.request("rb", "portal", "bob")
	noErr(t, "a1", e.s.CreateAccessTokenSession(e.ctx, "a1-at", a1))
	noErr(t, "a1 rt", e.s.CreateRefreshTokenSession(e.ctx, "a1-rt", "a1-at", a1))
	noErr(t, "a2", e.s.CreateAccessTokenSession(e.ctx, "a2-at", a2))
	noErr(t, "b", e.s.CreateAccessTokenSession(e.ctx, "b-at", b))
	// By tag (the suite tags entries with the client id): only alice's bank
	// request; then everything else of alice.
	n, err := e.s.RevokeSubject(e.ctx, "holder:alice", "bank")
	noErr(t, "revoke subject by tag", err)
	if n != 1 {
		t.Fatalf("revoked %d requests by tag, want 1", n)
	}
	_, err = e.s.GetAccessTokenSession(e.ctx, "a2-at", nil)
	wantErr(t, "alice's bank token", err, storage.ErrNotFound)
	_, err = e.s.GetAccessTokenSession(e.ctx, "a1-at", nil)
	noErr(t, "alice's portal token kept by a revocation of another tag", err)
	n, err = e.s.RevokeSubject(e.ctx, "holder:alice", "bank")
	noErr(t, "revoke by tag again", err)
	if n != 0 {
		t.Fatalf("second revoke by tag counted %d", n)
	}
	n, err = e.s.RevokeSubject(e.ctx, "holder:alice", "")
	noErr(t, "revoke subject", err)
	if n != 1 {
		t.Fatalf("revoked %d requests, want 1", n)
	}
	for _, sig := range []string{"a1-at", "a2-at"} {
		_, err := e.s.GetAccessTokenSession(e.ctx, sig, nil)
		wantErr(t, sig, err, storage.ErrNotFound)
	}
	_, err = e.s.GetRefreshTokenSession(e.ctx, "a1-rt", nil)
	wantErr(t, "alice refresh", err, storage.ErrNotFound)
	_, err = e.s.GetAccessTokenSession(e.ctx, "b-at", nil)
	noErr(t, "bob untouched", err)
	n, err = e.s.RevokeSubject(e.ctx, "holder:alice", "")
	noErr(t, "idempotent", err)
	if n != 0 {
		t.Fatalf("second revoke counted %d", n)
	}
}

func testJTI(t *testing.T, e *env) {
	exp := e.clock.Now().Add(2 * time.Minute)
	noErr(t, "ok/unknown jti valid", e.s.ClientAssertionJWTValid(e.ctx, "jti-1"))
	noErr(t, "set", e.s.SetClientAssertionJWT(e.ctx, "jti-1", exp))
	wantErr(t, "fail/known jti", e.s.ClientAssertionJWTValid(e.ctx, "jti-1"), fosite.ErrJTIKnown)
	wantErr(t, "fail/set twice", e.s.SetClientAssertionJWT(e.ctx, "jti-1", exp), fosite.ErrJTIKnown)
	e.clock.Advance(2*time.Minute + time.Second)
	noErr(t, "ok/valid after exp", e.s.ClientAssertionJWTValid(e.ctx, "jti-1"))
	noErr(t, "ok/set again after exp", e.s.SetClientAssertionJWT(e.ctx, "jti-1", e.clock.Now().Add(time.Minute)))
	wantErr(t, "fail/set again twice", e.s.SetClientAssertionJWT(e.ctx, "jti-1", e.clock.Now().Add(time.Minute)), fosite.ErrJTIKnown)
}

func newQR(e *env, id string) storage.QRTransaction {
	return storage.QRTransaction{ID: id, State: "pending", ClientID: "portal", BindingHash: []byte("bh"),
		ExpiresAt: e.clock.Now().Add(120 * time.Second), Data: []byte(`{"n":[1,2,3]}`)}
}

func testQR(t *testing.T, e *env) {
	_, err := e.s.CreateQR(e.ctx, storage.QRTransaction{ID: "x", State: "pending", ExpiresAt: e.clock.Now()})
	wantErr(t, "fail/create expired", err, storage.ErrInvalidArgument)
	_, err = e.s.CreateQR(e.ctx, storage.QRTransaction{State: "pending", ExpiresAt: e.clock.Now().Add(time.Minute)})
	wantErr(t, "fail/create without id", err, storage.ErrInvalidArgument)
	created, err := e.s.CreateQR(e.ctx, newQR(e, "txn-1"))
	noErr(t, "create", err)
	if created.Version != 1 || !created.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("create: version %d created %v", created.Version, created.CreatedAt)
	}
	_, err = e.s.CreateQR(e.ctx, newQR(e, "txn-1"))
	wantErr(t, "fail/duplicate", err, storage.ErrDuplicate)
	got, err := e.s.GetQR(e.ctx, "txn-1")
	noErr(t, "get", err)
	if got.State != "pending" || got.ClientID != "portal" || string(got.BindingHash) != "bh" || string(got.Data) != `{"n":[1,2,3]}` ||
		!got.ExpiresAt.Equal(created.ExpiresAt) {
		t.Fatalf("get: %+v", got)
	}
	_, err = e.s.TransitionQR(e.ctx, "txn-1", "scanned", "approved", nil)
	wantErr(t, "fail/wrong from", err, storage.ErrStateConflict)
	boom := errors.New("boom")
	_, err = e.s.TransitionQR(e.ctx, "txn-1", "pending", "scanned", func(*storage.QRTransaction) error { return boom })
	wantErr(t, "fail/mutate error", err, boom)
	_, err = e.s.TransitionQR(e.ctx, "txn-1", "pending", "scanned", func(q *storage.QRTransaction) error {
		q.ExpiresAt = q.ExpiresAt.Add(time.Hour)
		return nil
	})
	wantErr(t, "fail/extend expiry", err, storage.ErrInvalidArgument)
	next, err := e.s.TransitionQR(e.ctx, "txn-1", "pending", "scanned", func(q *storage.QRTransaction) error {
		q.Data = []byte("scanned-by-device-7")
		return nil
	})
	noErr(t, "ok/transition", err)
	if next.State != "scanned" || next.Version != 2 || string(next.Data) != "scanned-by-device-7" {
		t.Fatalf("transition: %+v", next)
	}
	got, _ = e.s.GetQR(e.ctx, "txn-1")
	if got.State != "scanned" || got.Version != 2 || string(got.Data) != "scanned-by-device-7" {
		t.Fatalf("after transition: %+v", got)
	}
	// TransitionQRFrom starts from the caller's read; a stale read (the version
	// moved) is re-read, never written over: the mutation sees the fresh data.
	_, err = e.s.CreateQR(e.ctx, newQR(e, "txn-from"))
	noErr(t, "create txn-from", err)
	stale, _ := e.s.GetQR(e.ctx, "txn-from")
	_, err = e.s.TransitionQR(e.ctx, "txn-from", "pending", "pending", func(q *storage.QRTransaction) error {
		q.Data = []byte("fresh")
		return nil
	})
	noErr(t, "move version", err)
	from, err := e.s.TransitionQRFrom(e.ctx, stale, "scanned", func(q *storage.QRTransaction) error {
		q.Data = append(q.Data, "+scan"...)
		return nil
	})
	noErr(t, "ok/transition from a stale read", err)
	if got, _ := e.s.GetQR(e.ctx, "txn-from"); from.State != "scanned" || from.Version != 3 || string(from.Data) != "fresh+scan" ||
		got.Version != 3 || string(got.Data) != "fresh+scan" {
		t.Fatalf("transition from stale read: %+v, stored %+v", from, got)
	}
	next2, err := e.s.TransitionQRFrom(e.ctx, from, "approved", nil)
	noErr(t, "ok/transition from a current read", err)
	if next2.State != "approved" || next2.Version != 4 || string(next2.Data) != "fresh+scan" {
		t.Fatalf("transition from current read: %+v", next2)
	}
	_, err = e.s.TransitionQRFrom(e.ctx, stale, "scanned", nil)
	wantErr(t, "fail/transition from a read whose state moved on", err, storage.ErrStateConflict)

	_, err = e.s.RedeemQR(e.ctx, "txn-1", "approved", "consumed")
	wantErr(t, "fail/redeem not approved", err, storage.ErrStateConflict)
	_, err = e.s.TransitionQR(e.ctx, "txn-1", "scanned", "approved", nil)
	noErr(t, "approve", err)
	r, err := e.s.RedeemQR(e.ctx, "txn-1", "approved", "consumed")
	noErr(t, "ok/redeem", err)
	if r.State != "consumed" || r.Version != 4 {
		t.Fatalf("redeem: %+v", r)
	}
	_, err = e.s.RedeemQR(e.ctx, "txn-1", "approved", "consumed")
	wantErr(t, "fail/redeem twice", err, storage.ErrAlreadyUsed)

	// RedeemQRFrom: from a current read, from a read whose version moved
	// (the state still approved: redeemed from a fresh read), twice, and
	// from a read whose state moved on.
	for _, id := range []string{"txn-r1", "txn-r2", "txn-r3"} {
		_, err = e.s.CreateQR(e.ctx, newQR(e, id))
		noErr(t, "create "+id, err)
		_, err = e.s.TransitionQR(e.ctx, id, "pending", "approved", nil)
		noErr(t, "approve "+id, err)
	}
	cur, _ := e.s.GetQR(e.ctx, "txn-r1")
	red, err := e.s.RedeemQRFrom(e.ctx, cur, "consumed")
	noErr(t, "ok/redeem from a current read", err)
	if got, _ := e.s.GetQR(e.ctx, "txn-r1"); red.State != "consumed" || red.Version != 3 || string(red.Data) != string(cur.Data) ||
		got.State != "consumed" || got.Version != 3 || string(got.Data) != string(cur.Data) || string(got.BindingHash) != "bh" {
		t.Fatalf("redeem from a current read: %+v, stored %+v", red, got)
	}
	_, err = e.s.RedeemQRFrom(e.ctx, cur, "consumed")
	wantErr(t, "fail/redeem from a read twice", err, storage.ErrAlreadyUsed)
	stale, _ = e.s.GetQR(e.ctx, "txn-r2")
	_, err = e.s.TransitionQR(e.ctx, "txn-r2", "approved", "approved", func(q *storage.QRTransaction) error {
		q.Data = []byte("fresher")
		return nil
	})
	noErr(t, "move version of txn-r2", err)
	red, err = e.s.RedeemQRFrom(e.ctx, stale, "consumed")
	noErr(t, "ok/redeem from a stale read", err)
	if red.State != "consumed" || red.Version != 4 || string(red.Data) != "fresher" {
		t.Fatalf("redeem from a stale read: %+v", red)
	}
	stale, _ = e.s.GetQR(e.ctx, "txn-r3")
	_, err = e.s.TransitionQR(e.ctx, "txn-r3", "approved", "cancelled", nil)
	noErr(t, "cancel txn-r3", err)
	_, err = e.s.RedeemQRFrom(e.ctx, stale, "consumed")
	wantErr(t, "fail/redeem from a read whose state moved on", err, storage.ErrStateConflict)
	if got, _ := e.s.GetQR(e.ctx, "txn-r3"); got.State != "cancelled" || got.Version != 3 {
		t.Fatalf("a refused redemption wrote: %+v", got)
	}
	e.clock.Advance(121 * time.Second)
	_, err = e.s.GetQR(e.ctx, "txn-1")
	wantErr(t, "fail/expired", err, storage.ErrNotFound)
	_, err = e.s.TransitionQR(e.ctx, "txn-1", "consumed", "expired", nil)
	wantErr(t, "fail/transition expired", err, storage.ErrNotFound)
	// An id whose transaction expired (by the store clock) may be created again.
	again, err := e.s.CreateQR(e.ctx, newQR(e, "txn-1"))
	noErr(t, "ok/create over an expired transaction", err)
	if got, _ := e.s.GetQR(e.ctx, "txn-1"); again.Version != 1 || got.State != "pending" || got.Version != 1 {
		t.Fatalf("re-created: %+v, stored %+v", again, got)
	}
}

func recv(t *testing.T, ch <-chan *storage.QRTransaction, what string) *storage.QRTransaction {
	t.Helper()
	select {
	case rec, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return rec
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: no wake-up", what)
	}
	return nil
}

func testQRWatch(t *testing.T, e *env) {
	_, err := e.s.CreateQR(e.ctx, newQR(e, "txn-w"))
	noErr(t, "create", err)
	ch, cancel, err := e.s.WatchQR(e.ctx, "txn-w")
	noErr(t, "watch", err)
	ch2, cancel2, err := e.s.WatchQR(e.ctx, "txn-w")
	noErr(t, "watch 2", err)
	other, cancelOther, err := e.s.WatchQR(e.ctx, "txn-other")
	noErr(t, "watch other", err)
	defer cancelOther()
	want, err := e.s.TransitionQR(e.ctx, "txn-w", "pending", "scanned", func(q *storage.QRTransaction) error {
		q.Data = []byte(`{"scanned":true}`)
		return nil
	})
	noErr(t, "transition", err)
	// A transition's wake-up carries the record it wrote.
	for i, c := range []<-chan *storage.QRTransaction{ch, ch2} {
		got := recv(t, c, fmt.Sprintf("watcher %d after transition", i+1))
		if got == nil || got.ID != "txn-w" || got.State != "scanned" || got.Version != want.Version ||
			string(got.Data) != `{"scanned":true}` || string(got.BindingHash) != string(want.BindingHash) ||
			!got.ExpiresAt.Equal(want.ExpiresAt) || !got.CreatedAt.Equal(want.CreatedAt) || got.ClientID != want.ClientID {
			t.Fatalf("watcher %d woke with %+v, want %+v", i+1, got, want)
		}
	}
	noErr(t, "notify", e.s.NotifyQR(e.ctx, "txn-w"))
	if got := recv(t, ch, "after notify"); got != nil {
		t.Fatalf("a notification carried a record: %+v", got)
	}
	// Two transitions before the watcher looks: it finds the newer one.
	_, err = e.s.TransitionQR(e.ctx, "txn-w", "scanned", "approved", nil)
	noErr(t, "approve", err)
	_, err = e.s.TransitionQR(e.ctx, "txn-w", "approved", "approved", nil)
	noErr(t, "touch", err)
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := recv(t, ch2, "watcher 2 after two transitions")
		if got != nil && got.Version == want.Version+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher 2 never saw version %d, last %+v", want.Version+2, got)
		}
	}
	select {
	case <-other:
		t.Fatalf("a watcher of another transaction woke up")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	cancel() // idempotent
	select {
	case _, ok := <-ch:
		for ok { // drain a pending wake-up, then expect close
			_, ok = <-ch
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("cancel did not close the channel")
	}
	ctx, stop := context.WithCancel(e.ctx)
	ch3, cancel3, err := e.s.WatchQR(ctx, "txn-w")
	noErr(t, "watch 3", err)
	defer cancel3()
	stop()
	select {
	case _, ok := <-ch3:
		for ok {
			_, ok = <-ch3
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("context end did not close the channel")
	}
	cancel2()
}

func testSSO(t *testing.T, e *env) {
	exp := e.clock.Now().Add(time.Hour)
	_, err := e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "", ExpiresAt: exp})
	wantErr(t, "fail/no id", err, storage.ErrInvalidArgument)
	s1, err := e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "sid-1", Subject: "holder:alice", ExpiresAt: exp, Data: []byte("acr=pin")})
	noErr(t, "create", err)
	if !s1.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("created at %v", s1.CreatedAt)
	}
	_, err = e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "sid-1", ExpiresAt: exp})
	wantErr(t, "fail/duplicate", err, storage.ErrDuplicate)
	_, err = e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "sid-2", Subject: "holder:alice", ExpiresAt: exp})
	noErr(t, "create 2", err)
	_, err = e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "sid-b", Subject: "holder:bob", ExpiresAt: exp})
	noErr(t, "create bob", err)
	got, err := e.s.GetSSO(e.ctx, "sid-1")
	noErr(t, "get", err)
	if got.ID != "sid-1" || got.Subject != "holder:alice" || string(got.Data) != "acr=pin" || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("get: %+v", got)
	}
	rot, err := e.s.RotateSSO(e.ctx, "sid-1", "sid-1b")
	noErr(t, "rotate", err)
	if rot.ID != "sid-1b" || string(rot.Data) != "acr=pin" {
		t.Fatalf("rotate: %+v", rot)
	}
	_, err = e.s.GetSSO(e.ctx, "sid-1")
	wantErr(t, "fail/old id after rotate", err, storage.ErrNotFound)
	_, err = e.s.RotateSSO(e.ctx, "sid-1", "sid-1c")
	wantErr(t, "fail/rotate old id again", err, storage.ErrNotFound)
	n, err := e.s.DeleteSSOSubject(e.ctx, "holder:alice")
	noErr(t, "delete subject", err)
	if n != 2 {
		t.Fatalf("deleted %d sessions, want 2", n)
	}
	for _, id := range []string{"sid-1b", "sid-2"} {
		_, err := e.s.GetSSO(e.ctx, id)
		wantErr(t, "alice "+id, err, storage.ErrNotFound)
	}
	_, err = e.s.GetSSO(e.ctx, "sid-b")
	noErr(t, "bob untouched", err)
	noErr(t, "delete", e.s.DeleteSSO(e.ctx, "sid-b"))
	noErr(t, "delete idempotent", e.s.DeleteSSO(e.ctx, "sid-b"))
	_, err = e.s.GetSSO(e.ctx, "sid-b")
	wantErr(t, "after delete", err, storage.ErrNotFound)
	_, err = e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "sid-x", ExpiresAt: e.clock.Now().Add(time.Minute)})
	noErr(t, "create short", err)
	e.clock.Advance(time.Minute)
	_, err = e.s.GetSSO(e.ctx, "sid-x")
	wantErr(t, "fail/expired", err, storage.ErrNotFound)
}

func testSeen(t *testing.T, e *env) {
	first, err := e.s.Seen(e.ctx, "frame", "nonce-1", time.Minute)
	noErr(t, "seen", err)
	if !first {
		t.Fatalf("first call not first")
	}
	first, err = e.s.Seen(e.ctx, "frame", "nonce-1", time.Minute)
	noErr(t, "seen 2", err)
	if first {
		t.Fatalf("replay reported as first")
	}
	first, _ = e.s.Seen(e.ctx, "proof", "nonce-1", time.Minute)
	if !first {
		t.Fatalf("namespaces must be separate")
	}
	e.clock.Advance(time.Minute)
	first, _ = e.s.Seen(e.ctx, "frame", "nonce-1", time.Minute)
	if !first {
		t.Fatalf("key not released after ttl")
	}
	_, err = e.s.Seen(e.ctx, "frame", "k", 0)
	wantErr(t, "fail/zero ttl", err, storage.ErrInvalidArgument)
}

func testRate(t *testing.T, e *env) {
	// Align to a window start so the test does not straddle a boundary.
	_, end := storage.Window(e.clock.Now(), time.Minute)
	e.clock.Advance(end.Sub(e.clock.Now()))
	for i := 1; i <= 3; i++ {
		d, err := e.s.Allow(e.ctx, "ip:1.2.3.4", 3, time.Minute)
		noErr(t, "allow", err)
		if !d.Allowed || d.Remaining != 3-i {
			t.Fatalf("hit %d: %+v", i, d)
		}
	}
	e.clock.Advance(10 * time.Second)
	d, err := e.s.Allow(e.ctx, "ip:1.2.3.4", 3, time.Minute)
	noErr(t, "allow 4", err)
	if d.Allowed || d.RetryAfter != 50*time.Second {
		t.Fatalf("4th hit: %+v", d)
	}
	d, _ = e.s.Allow(e.ctx, "ip:5.6.7.8", 3, time.Minute)
	if !d.Allowed {
		t.Fatalf("keys must be separate")
	}
	e.clock.Advance(50 * time.Second)
	d, _ = e.s.Allow(e.ctx, "ip:1.2.3.4", 3, time.Minute)
	if !d.Allowed || d.Remaining != 2 {
		t.Fatalf("next window: %+v", d)
	}
	_, err = e.s.Allow(e.ctx, "k", 0, time.Minute)
	wantErr(t, "fail/zero limit", err, storage.ErrInvalidArgument)
}

func testOnce(t *testing.T, e *env) {
	noErr(t, "put", e.s.PutOnce(e.ctx, "pcode", "123456", []byte("holder-1"), time.Minute))
	wantErr(t, "fail/put twice", e.s.PutOnce(e.ctx, "pcode", "123456", []byte("x"), time.Minute), storage.ErrDuplicate)
	v, err := e.s.TakeOnce(e.ctx, "pcode", "123456")
	noErr(t, "take", err)
	if string(v) != "holder-1" {
		t.Fatalf("take: %q", v)
	}
	_, err = e.s.TakeOnce(e.ctx, "pcode", "123456")
	wantErr(t, "fail/take twice", err, storage.ErrNotFound)
	noErr(t, "put 2", e.s.PutOnce(e.ctx, "pcode", "654321", []byte("h"), time.Minute))
	e.clock.Advance(time.Minute)
	_, err = e.s.TakeOnce(e.ctx, "pcode", "654321")
	wantErr(t, "fail/take expired", err, storage.ErrNotFound)
	noErr(t, "ok/put after expiry", e.s.PutOnce(e.ctx, "pcode", "654321", []byte("h2"), time.Minute))
}

// race runs fn from 16 goroutines released together and returns how many
// returned nil; other errors must match loser.
func race(t *testing.T, loser error, fn func() error) int {
	t.Helper()
	const n = 16
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := fn(); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, loser) {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("loser got %v, want %v", err, loser)
	}
	return int(wins.Load())
}

func exactlyOne(t *testing.T, what string, wins int) {
	t.Helper()
	if wins != 1 {
		t.Fatalf("%s: %d of 16 concurrent callers won, want exactly 1", what, wins)
	}
}

func testConcurrentCode(t *testing.T, e *env) {
	noErr(t, "create", e.s.CreateAuthorizeCodeSession(e.ctx, "code-c", e.request("req-c", "portal", "a")))
	exactlyOne(t, "invalidate code", race(t, fosite.ErrInvalidatedAuthorizeCode, func() error {
		return e.s.InvalidateAuthorizeCodeSession(e.ctx, "code-c")
	}))
}

func testConcurrentQR(t *testing.T, e *env) {
	_, err := e.s.CreateQR(e.ctx, newQR(e, "txn-c"))
	noErr(t, "create", err)
	exactlyOne(t, "scan", race(t, storage.ErrStateConflict, func() error {
		_, err := e.s.TransitionQR(e.ctx, "txn-c", "pending", "scanned", nil)
		return err
	}))
	_, err = e.s.TransitionQR(e.ctx, "txn-c", "scanned", "approved", nil)
	noErr(t, "approve", err)
	exactlyOne(t, "redeem", race(t, storage.ErrAlreadyUsed, func() error {
		_, err := e.s.RedeemQR(e.ctx, "txn-c", "approved", "consumed")
		return err
	}))
	got, _ := e.s.GetQR(e.ctx, "txn-c")
	if got.Version != 4 {
		t.Fatalf("version %d after 3 transitions, want 4", got.Version)
	}
}

func testConcurrentJTI(t *testing.T, e *env) {
	exp := e.clock.Now().Add(time.Minute)
	exactlyOne(t, "jti", race(t, fosite.ErrJTIKnown, func() error {
		return e.s.SetClientAssertionJWT(e.ctx, "jti-c", exp)
	}))
}

var errLost = errors.New("lost")

func testConcurrentMisc(t *testing.T, e *env) {
	noErr(t, "put", e.s.PutOnce(e.ctx, "pcode", "c", []byte("v"), time.Minute))
	exactlyOne(t, "take once", race(t, storage.ErrNotFound, func() error {
		_, err := e.s.TakeOnce(e.ctx, "pcode", "c")
		return err
	}))
	exactlyOne(t, "seen", race(t, errLost, func() error {
		first, err := e.s.Seen(e.ctx, "jti", "j", time.Minute)
		if err == nil && !first {
			return errLost
		}
		return err
	}))
	_, err := e.s.CreateSSO(e.ctx, storage.SSOSession{ID: "sid", ExpiresAt: e.clock.Now().Add(time.Hour)})
	noErr(t, "sso", err)
	var n atomic.Int32
	exactlyOne(t, "rotate sso", race(t, storage.ErrNotFound, func() error {
		_, err := e.s.RotateSSO(e.ctx, "sid", fmt.Sprintf("sid-%d", n.Add(1)))
		return err
	}))
	var allowed atomic.Int32
	race(t, errLost, func() error {
		d, err := e.s.Allow(e.ctx, "burst", 5, time.Hour)
		if err == nil && d.Allowed {
			allowed.Add(1)
		}
		return err
	})
	if allowed.Load() != 5 {
		t.Fatalf("rate limit let %d of 16 through, want 5", allowed.Load())
	}
}

// testBatch: with storage.Batch, creates and PKCE/OIDC deletes wait for the
// flush (a backend that does not batch writes at once, and the test checks
// only the visible end state), while invalidation is never held back.
func testBatch(t *testing.T, e *env) {
	r := e.request("req-b", "portal", "alice")
	noErr(t, "pkce", e.s.CreatePKCERequestSession(e.ctx, "sig-b0", r))
	ctx, flush := storage.Batch(e.ctx, e.s)
	noErr(t, "create code", e.s.CreateAuthorizeCodeSession(ctx, "code-b", r))
	noErr(t, "create access", e.s.CreateAccessTokenSession(ctx, "at-b", r))
	noErr(t, "delete pkce", e.s.DeletePKCERequestSession(ctx, "sig-b0"))
	if _, batches := e.s.(storage.Batcher); batches {
		_, err := e.s.GetAuthorizeCodeSession(e.ctx, "code-b", nil)
		wantErr(t, "code before the flush", err, storage.ErrNotFound)
		_, err = e.s.GetPKCERequestSession(e.ctx, "sig-b0", nil)
		noErr(t, "pkce before the flush (its delete is held back)", err)
	}
	noErr(t, "flush", flush(e.ctx))
	noErr(t, "flush again (nothing left)", flush(e.ctx))
	_, err := e.s.GetAuthorizeCodeSession(e.ctx, "code-b", nil)
	noErr(t, "code after the flush", err)
	_, err = e.s.GetAccessTokenSession(e.ctx, "at-b", nil)
	noErr(t, "access token after the flush", err)
	_, err = e.s.GetPKCERequestSession(e.ctx, "sig-b0", nil)
	wantErr(t, "pkce after the flush", err, storage.ErrNotFound)
	n, err := e.s.RevokeSubject(e.ctx, "holder:alice", "portal")
	if err != nil || n != 1 {
		t.Fatalf("the batched token is indexed with its tag: RevokeSubject = %d, %v", n, err)
	}
	ctx, flush = storage.Batch(e.ctx, e.s)
	noErr(t, "invalidate in a batch", e.s.InvalidateAuthorizeCodeSession(ctx, "code-b"))
	_, err = e.s.GetAuthorizeCodeSession(e.ctx, "code-b", nil)
	wantErr(t, "invalidation is immediate", err, fosite.ErrInvalidatedAuthorizeCode)
	noErr(t, "empty flush", flush(e.ctx))
}

// testBatchRedeem: the token endpoint redeems a code in a batch, in fosite's
// order of calls. Inside the batch the code reads as used after the
// invalidation and its OIDC record is still readable; afterwards the code is
// used and its PKCE and OIDC records are gone. Of 16 concurrent
// redemptions exactly one succeeds.
func testBatchRedeem(t *testing.T, e *env) {
	r := e.request("req-r", "portal", "alice")
	ctx, flush := storage.Batch(e.ctx, e.s)
	noErr(t, "create code", e.s.CreateAuthorizeCodeSession(ctx, "sig-r", r))
	noErr(t, "create pkce", e.s.CreatePKCERequestSession(ctx, "sig-r", r))
	noErr(t, "create oidc", e.s.CreateOpenIDConnectSession(ctx, "sig-r", r))
	noErr(t, "flush the creates", flush(e.ctx))
	redeem := func() error {
		ctx, flush := storage.Batch(e.ctx, e.s)
		defer func() { _ = flush(e.ctx) }()
		steps := []func() error{
			func() error { _, err := e.s.GetAuthorizeCodeSession(ctx, "sig-r", nil); return err },
			func() error { _, err := e.s.GetPKCERequestSession(ctx, "sig-r", nil); return err },
			func() error { return e.s.DeletePKCERequestSession(ctx, "sig-r") },
			func() error { _, err := e.s.GetAuthorizeCodeSession(ctx, "sig-r", nil); return err },
			func() error { return e.s.InvalidateAuthorizeCodeSession(ctx, "sig-r") },
		}
		for _, step := range steps {
			if err := step(); errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) || errors.Is(err, storage.ErrNotFound) {
				return errLost // another redemption got there first
			} else if err != nil {
				return err
			}
		}
		if _, err := e.s.GetAuthorizeCodeSession(ctx, "sig-r", nil); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
			return fmt.Errorf("the code after its invalidation, in the batch: %v", err)
		}
		if o, err := e.s.GetOpenIDConnectSession(ctx, "sig-r", r); err != nil || o.GetID() != "req-r" {
			return fmt.Errorf("the OIDC record after the invalidation, in the batch: %v", err)
		}
		if err := e.s.DeleteOpenIDConnectSession(ctx, "sig-r"); err != nil {
			return err
		}
		return flush(e.ctx)
	}
	exactlyOne(t, "redeem in a batch", race(t, errLost, redeem))
	_, err := e.s.GetAuthorizeCodeSession(e.ctx, "sig-r", nil)
	wantErr(t, "code after the redemption", err, fosite.ErrInvalidatedAuthorizeCode)
	_, err = e.s.GetPKCERequestSession(e.ctx, "sig-r", nil)
	wantErr(t, "pkce after the redemption", err, storage.ErrNotFound)
	_, err = e.s.GetOpenIDConnectSession(e.ctx, "sig-r", r)
	wantErr(t, "oidc after the redemption", err, storage.ErrNotFound)

	// A redemption refused after the PKCE check still deletes the PKCE
	// record at the flush, and leaves the code usable.
	ctx, flush = storage.Batch(e.ctx, e.s)
	noErr(t, "create code 2", e.s.CreateAuthorizeCodeSession(ctx, "sig-s", r))
	noErr(t, "create pkce 2", e.s.CreatePKCERequestSession(ctx, "sig-s", r))
	noErr(t, "flush 2", flush(e.ctx))
	ctx, flush = storage.Batch(e.ctx, e.s)
	_, err = e.s.GetPKCERequestSession(ctx, "sig-s", nil)
	noErr(t, "pkce 2", err)
	noErr(t, "delete pkce 2", e.s.DeletePKCERequestSession(ctx, "sig-s"))
	noErr(t, "flush the refusal", flush(e.ctx))
	_, err = e.s.GetPKCERequestSession(e.ctx, "sig-s", nil)
	wantErr(t, "pkce 2 after the refusal", err, storage.ErrNotFound)
	_, err = e.s.GetAuthorizeCodeSession(e.ctx, "sig-s", nil)
	noErr(t, "code 2 after the refusal", err)
}
