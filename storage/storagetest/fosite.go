package storagetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/openid"

	"github.com/essc-project/essc/storage"
)

// portalClient is the public PKCE client the fosite flow test uses (the
// suite's Lookup returns it for "portal").
func portalClient() *fosite.DefaultClient {
	return &fosite.DefaultClient{
		ID:            "portal",
		Public:        true,
		RedirectURIs:  []string{"https://portal.example/cb"},
		GrantTypes:    []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"},
		Scopes:        []string{"openid", "offline"},
	}
}

// fositeStore is what idp does: the session store plus a client lookup.
type fositeStore struct {
	storage.FositeStore
	client fosite.Client
}

func (f fositeStore) GetClient(_ context.Context, id string) (fosite.Client, error) {
	if id == f.client.GetID() {
		return f.client, nil
	}
	return nil, fosite.ErrNotFound
}

// provider composes fosite v0.49's real handlers over the store under test.
func provider(s storage.FositeStore) fosite.OAuth2Provider {
	cfg := &fosite.Config{
		GlobalSecret:          []byte("storagetest-global-secret-32-byt"),
		AuthorizeCodeLifespan: time.Minute,
		AccessTokenLifespan:   10 * time.Minute,
		RefreshTokenLifespan:  12 * time.Hour,
		EnforcePKCE:           true,
		RefreshTokenScopes:    []string{"offline"},
	}
	return compose.Compose(cfg, fositeStore{FositeStore: s, client: portalClient()},
		&compose.CommonStrategy{CoreStrategy: compose.NewOAuth2HMACStrategy(cfg)},
		compose.OAuth2AuthorizeExplicitFactory, compose.OAuth2PKCEFactory, compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory)
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-storagetest"

func challenge() string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// authorize runs fosite's authorize endpoint logic and returns a code.
func authorize(t *testing.T, p fosite.OAuth2Provider, sub string) string {
	t.Helper()
	ctx := context.Background()
	q := url.Values{"response_type": {"code"}, "client_id": {"portal"}, "redirect_uri": {"https://portal.example/cb"},
		"scope": {"openid offline"}, "state": {"state-12345678"}, "code_challenge": {challenge()}, "code_challenge_method": {"S256"}}
	ar, err := p.NewAuthorizeRequest(ctx, httptest.NewRequest(http.MethodGet, "/auth?"+q.Encode(), nil))
	if err != nil {
		t.Fatalf("authorize request: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	ar.GrantScope("openid")
	ar.GrantScope("offline")
	sess := openid.NewDefaultSession()
	sess.Subject = sub
	resp, err := p.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		t.Fatalf("authorize response: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	return resp.GetParameters().Get("code")
}

// token runs fosite's token endpoint logic with form f.
func token(p fosite.OAuth2Provider, f url.Values) (access, refresh string, err error) {
	ctx := context.Background()
	f.Set("client_id", "portal")
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(f.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	areq, err := p.NewAccessRequest(ctx, r, openid.NewDefaultSession())
	if err != nil {
		return "", "", err
	}
	resp, err := p.NewAccessResponse(ctx, areq)
	if err != nil {
		return "", "", err
	}
	rt, _ := resp.GetExtra("refresh_token").(string)
	return resp.GetAccessToken(), rt, nil
}

func exchange(p fosite.OAuth2Provider, code string) (string, string, error) {
	return token(p, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"https://portal.example/cb"}, "code_verifier": {verifier}})
}

func refresh(p fosite.OAuth2Provider, rt string) (string, string, error) {
	return token(p, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func active(p fosite.OAuth2Provider, tok string, use fosite.TokenUse) bool {
	_, _, err := p.IntrospectToken(context.Background(), tok, use, openid.NewDefaultSession())
	return err == nil
}

func wantOAuth(t *testing.T, what string, err error, want *fosite.RFC6749Error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %s", what, want.ErrorField)
	}
	if got := fosite.ErrorToRFC6749Error(err); got.ErrorField != want.ErrorField {
		t.Fatalf("%s: got %s (%s), want %s", what, got.ErrorField, got.GetDescription(), want.ErrorField)
	}
}

// testFositeFlow drives fosite v0.49's own handlers (authorize code + PKCE,
// token, refresh rotation, introspection) against the store: the store's
// semantics are what fosite expects, not just what this suite asserts.
func testFositeFlow(t *testing.T, e *env) {
	p := provider(e.s)
	at1, rt1, err := exchange(p, authorize(t, p, "alice"))
	if err != nil {
		t.Fatalf("ok/code exchange: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	if !active(p, at1, fosite.AccessToken) || !active(p, rt1, fosite.RefreshToken) {
		t.Fatalf("fresh tokens inactive")
	}
	at2, rt2, err := refresh(p, rt1)
	if err != nil {
		t.Fatalf("ok/refresh: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	if active(p, at1, fosite.AccessToken) {
		t.Fatalf("rotation must end the previous access token")
	}
	// Lost response: retry with rt1 within the grace window.
	e.clock.Advance(Grace / 2)
	at3, rt3, err := refresh(p, rt1)
	if err != nil {
		t.Fatalf("ok/retry within grace: %v", fosite.ErrorToRFC6749Error(err).WithExposeDebug(true).GetDescription())
	}
	// Reuse after the window: invalid_grant and the whole family is revoked.
	e.clock.Advance(Grace)
	_, _, err = refresh(p, rt1)
	wantOAuth(t, "fail/reuse after grace", err, fosite.ErrInvalidGrant)
	for name, tok := range map[string]string{"at2": at2, "at3": at3} {
		if active(p, tok, fosite.AccessToken) {
			t.Fatalf("reuse must revoke the family: %s still active", name)
		}
	}
	for name, tok := range map[string]string{"rt2": rt2, "rt3": rt3} {
		if _, _, err := refresh(p, tok); err == nil {
			t.Fatalf("reuse must revoke the family: %s still refreshes", name)
		}
	}

	// Code reuse: the second exchange fails and revokes what the first issued.
	code := authorize(t, p, "bob")
	atB, rtB, err := exchange(p, code)
	if err != nil {
		t.Fatalf("ok/exchange: %v", err)
	}
	_, _, err = exchange(p, code)
	wantOAuth(t, "fail/code reuse", err, fosite.ErrInvalidGrant)
	if active(p, atB, fosite.AccessToken) || active(p, rtB, fosite.RefreshToken) {
		t.Fatalf("code reuse must revoke the tokens of the first exchange")
	}

	// Wrong PKCE verifier.
	code = authorize(t, p, "carol")
	_, _, err = token(p, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"https://portal.example/cb"}, "code_verifier": {verifier + "x"}})
	wantOAuth(t, "fail/wrong verifier", err, fosite.ErrInvalidGrant)
}
