package idp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

func TestClientCacheAndDisabled(t *testing.T) {
	e := newEnv(t)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	cc := &clientCache{src: e.clients, ttl: 5 * time.Second, now: clk.Now, def: Lifetimes{Code: time.Minute}, m: map[string]cachedClient{}}
	ctx := context.Background()
	c1, err := cc.get(ctx, "rp-gm")
	if err != nil || len(c1.keys) != 1 || c1.lt.Code != time.Minute {
		t.Fatalf("%v %+v", err, c1)
	}
	e.clients.mu.Lock()
	rec := e.clients.m["rp-gm"]
	rec.Disabled = true
	e.clients.m["rp-gm"] = rec
	e.clients.mu.Unlock()
	if c2, err := cc.get(ctx, "rp-gm"); err != nil || c2 != c1 {
		t.Fatal("cached client not reused within the TTL")
	}
	clk.Add(6 * time.Second)
	if _, err := cc.get(ctx, "rp-gm"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("disabled client after TTL: %v", err)
	}
	// The provider (TTL disabled in tests) rejects a disabled client at once.
	s, body := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"client_credentials"}}, e.gmAuth("rp-gm")), nil)
	if s != http.StatusUnauthorized || errorCode(body) != "invalid_client" {
		t.Fatalf("disabled client: %d %v", s, body)
	}
	e.clients.down.Store(true)
	if _, err := (&clientCache{src: e.clients, now: clk.Now, m: map[string]cachedClient{}}).get(ctx, "x"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("outage not passed through: %v", err)
	}
}

func TestClientBadJWKS(t *testing.T) {
	for _, raw := range []string{`{`, `{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`, `{"keys":[{"kty":"oct","k":"AAAA"}]}`} {
		_, err := newClient(storage.Client{ID: "x", AuthMethod: storage.AuthPrivateKeyJWT, JWKS: []byte(raw)}, Lifetimes{})
		if err == nil {
			t.Fatalf("accepted JWKS %s", raw)
		}
	}
}

func TestJoseSignerProfiles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	gm, intl := e.p.gm.signer, e.p.intl.signer
	tok, sig, err := gm.Generate(ctx, map[string]any{"sub": "x", "exp": time.Now().Add(time.Minute).Unix()}, nil)
	if err != nil || sig == "" {
		t.Fatal(err)
	}
	if _, err := gm.Decode(ctx, tok); err != nil {
		t.Fatalf("gm decode: %v", err)
	}
	if _, err := intl.Decode(ctx, tok); err == nil {
		t.Fatal("SM2SM3 token verified on the intl profile")
	}
	if _, err := intl.Validate(ctx, tok); err == nil {
		t.Fatal("SM2SM3 token validated on the intl profile")
	}
	h, _, _ := signing.Verify(tok, e.keys)
	if h.Alg != signing.AlgSM2SM3 || h.Typ != "JWT" {
		t.Fatalf("header %+v", h)
	}
	sum, _ := gm.Hash(ctx, []byte("abc"))
	sha, _ := intl.Hash(ctx, []byte("abc"))
	if len(sum) != 32 || string(sum) == string(sha) {
		t.Fatal("gm hash is not SM3")
	}
	// Header members that would change the key are dropped.
	tok2, _, err := intl.Generate(ctx, map[string]any{"sub": "x"}, mapper{"kid": "evil", "jku": "https://evil", "typ": "at+jwt"})
	if err != nil {
		t.Fatal(err)
	}
	h2, _, err := signing.Verify(tok2, e.keys)
	if err != nil || h2.Kid == "evil" || h2.Typ != "at+jwt" {
		t.Fatalf("%v %+v", err, h2)
	}
}

type mapper map[string]any

func (m mapper) ToMap() map[string]any { return m }
func (m mapper) Add(k string, v any)   { m[k] = v }
func (m mapper) Get(k string) any      { return m[k] }

func TestRefreshGraceRetry(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	rt := tok["refresh_token"].(string)
	refresh := func() int {
		s, _ := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, e.gmAuth("rp-gm")), nil)
		return s
	}
	if s := refresh(); s != 200 {
		t.Fatalf("first refresh %d", s)
	}
	// A client that lost the response retries within the store's grace window.
	if s := refresh(); s != 200 {
		t.Fatalf("retry within grace: %d", s)
	}
}
