package idp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/essc-project/essc/signing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// intlTokens runs an intl code flow with client_secret_basic.
func (e *env) intlTokens(q url.Values, verifier string) map[string]any {
	e.t.Helper()
	code := e.code("", q)
	s, tok := e.post("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rpCB},
		"code_verifier": {verifier}}, []string{"rp-intl", e.secret})
	if s != 200 {
		e.t.Fatalf("token: %d %v", s, tok)
	}
	return tok
}

func TestIDTokenClaimsExact(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	authAt := time.Now().Add(-3 * time.Second)
	e.login.set(func(r LoginRequest) (Authentication, bool) {
		return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AMR: []string{"hwk", "pin"}, AuthTime: authAt, Consented: r.Scopes}, true
	})
	q := authorizeParams("rp-intl", rpCB, ch)
	q.Set("scope", "openid profile essc.card")
	before := time.Now().Unix()
	tok := e.intlTokens(q, verifier)
	after := time.Now().Unix()
	idt := tok["id_token"].(string)
	h, payload, err := signing.Verify(idt, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := e.keys.Active(signing.AlgES256)
	if h.Alg != signing.AlgES256 || h.Kid != es.ID() || h.Typ != "JWT" {
		t.Fatalf("header %+v", h)
	}
	var c map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	_ = dec.Decode(&c)
	num := func(k string) int64 { n, _ := c[k].(json.Number).Int64(); return n }
	aud, _ := c["aud"].([]any)
	if c["iss"] != e.srv.URL || len(aud) != 1 || aud[0] != "rp-intl" {
		t.Fatalf("iss/aud %v %v", c["iss"], c["aud"])
	}
	if iat := num("iat"); iat < before || iat > after || num("exp")-iat != int64((10*time.Minute)/time.Second) {
		t.Fatalf("iat %d exp %d (window %d..%d)", iat, num("exp"), before, after)
	}
	if num("auth_time") != authAt.Unix() || c["nonce"] != "nonce-123456789" || c["acr"] != ACRPIN {
		t.Fatalf("auth_time %d want %d, nonce %v, acr %v", num("auth_time"), authAt.Unix(), c["nonce"], c["acr"])
	}
	wantHash, _ := signing.HalfHash(signing.AlgES256, tok["access_token"].(string))
	if c["at_hash"] != wantHash {
		t.Fatalf("at_hash %v want %v", c["at_hash"], wantHash)
	}
	for _, k := range []string{ClaimName, ClaimSSN, ClaimSSNMasked, "holder_id", "ecard_id", "c_hash"} {
		if _, ok := c[k]; ok {
			t.Fatalf("ID token carries %q", k)
		}
	}
	// The access token is an RFC 9068-style JWT of the same profile.
	ah, ap, err := signing.Verify(tok["access_token"].(string), e.keys)
	if err != nil || ah.Typ != "at+jwt" || ah.Alg != signing.AlgES256 {
		t.Fatalf("access token %v %+v", err, ah)
	}
	var ac map[string]any
	_ = json.Unmarshal(ap, &ac)
	if ac["sub"] != c["sub"] || ac["client_id"] != "rp-intl" || ac["iss"] != e.srv.URL || ac["scope"] != "openid profile essc.card" {
		t.Fatalf("access claims %v", ac)
	}
	if tok["refresh_token"] != nil {
		t.Fatal("refresh token issued without offline_access")
	}
}

func TestAlgNoneAndKids(t *testing.T) {
	e := newEnv(t)
	for _, prefix := range []string{"", "/gm"} {
		var raw map[string]any
		getJSON(t, e.srv.URL+prefix+"/.well-known/openid-configuration", &raw)
		b, _ := json.Marshal(raw)
		if strings.Contains(strings.ToLower(string(b)), `"none"`) {
			t.Fatalf("%s discovery advertises none: %s", prefix, b)
		}
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","client_id":"rp-gm","exp":9999999999}`)) + "."
	for _, prefix := range []string{"", "/gm"} {
		if s := e.userinfoStatus(prefix, none); s != http.StatusUnauthorized {
			t.Fatalf("%s: alg none token: %d", prefix, s)
		}
	}
	// Every kid of every token resolves in its own profile's JWKS, and the
	// intl JWKS carries no SM2 key (it would break go-jose clients).
	verifier, ch := pkcePair()
	intl := e.intlTokens(authorizeParams("rp-intl", rpCB, ch), verifier)
	_, gm := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	for _, tc := range []struct {
		prefix string
		toks   []string
		algs   []string
	}{
		{"", []string{intl["id_token"].(string), intl["access_token"].(string)}, []string{signing.AlgES256, signing.AlgRS256}},
		{"/gm", []string{gm["id_token"].(string), gm["access_token"].(string)}, []string{signing.AlgSM2SM3}},
	} {
		var raw json.RawMessage
		getJSON(t, e.srv.URL+tc.prefix+"/jwks.json", &raw)
		set, err := signing.ParseJWKS(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range set {
			if !strings.Contains(strings.Join(tc.algs, ","), k.Alg()) {
				t.Fatalf("%s JWKS holds a %s key", tc.prefix, k.Alg())
			}
		}
		for _, tok := range tc.toks {
			if _, _, err := signing.Verify(tok, set); err != nil {
				t.Fatalf("%s: kid does not resolve in JWKS: %v", tc.prefix, err)
			}
		}
		if tc.prefix == "" && strings.Contains(string(raw), `"SM2"`) {
			t.Fatal("SM2 key in the intl JWKS")
		}
	}
	resp, _ := http.Get(e.srv.URL + "/gm/jwks.json")
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Fatalf("JWKS Cache-Control %q", cc)
	}
}

func TestKeyRotationOverlap(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	verifier, ch := pkcePair()
	old := e.intlTokens(authorizeParams("rp-intl", rpCB, ch), verifier)
	kb := loadKey(t, "es256-b")
	now := e.now.Now()
	// b was published earlier and activates now; a keeps verifying. (The
	// clock is not advanced: fosite stamps code expiry with the real clock.)
	if err := e.keys.Add(signing.Entry{Key: kb, PublishAt: now.Add(-30 * time.Minute), ActivateAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	fresh := e.intlTokens(authorizeParams("rp-intl", rpCB, ch), verifier)
	h, _, err := signing.Verify(fresh["id_token"].(string), e.keys)
	if err != nil || h.Kid != kb.ID() {
		t.Fatalf("new tokens not signed by the new key: %v %s", err, h.Kid)
	}
	provider, err := oidc.NewProvider(ctx, e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	v := provider.Verifier(&oidc.Config{ClientID: "rp-intl"})
	for name, tok := range map[string]map[string]any{"old": old, "new": fresh} {
		if _, err := v.Verify(ctx, tok["id_token"].(string)); err != nil {
			t.Fatalf("%s ID token during overlap: %v", name, err)
		}
		if s := e.userinfoStatus("", tok["access_token"].(string)); s != 200 {
			t.Fatalf("%s access token during overlap: %d", name, s)
		}
	}
}

// goldenProvider is a Provider with a fixed base URL and the deterministic
// test keys, for golden files.
func goldenProvider(t *testing.T) *Provider {
	e := newEnv(t)
	cfg := e.p.cfg
	cfg.BaseURL = "https://essc.example.gov.cn"
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGoldenDiscoveryAndJWKS(t *testing.T) {
	p := goldenProvider(t)
	mux := http.NewServeMux()
	p.Mount(mux)
	for _, tc := range []struct{ path, file string }{
		{"/.well-known/openid-configuration", "discovery-intl.json"},
		{"/gm/.well-known/openid-configuration", "discovery-gm.json"},
		{"/jwks.json", "jwks-intl.json"},
		{"/gm/jwks.json", "jwks-gm.json"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rec := newRecorder()
			req, _ := http.NewRequest(http.MethodGet, "https://essc.example.gov.cn"+tc.path, nil)
			mux.ServeHTTP(rec, req)
			if rec.code != 0 && rec.code != 200 {
				t.Fatalf("status %d", rec.code)
			}
			var v any
			if err := json.Unmarshal([]byte(rec.body.String()), &v); err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(v, "", "  ")
			got = append(got, '\n')
			path := "testdata/golden/" + tc.file
			if *update {
				_ = os.MkdirAll("testdata/golden", 0o755)
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from golden:\n%s", tc.file, got)
			}
		})
	}
}

// TestSessionClone: the ID token is generated into a clone of the code's
// session (the OIDC record keeps none); writing the clone's claims leaves the
// session the access request carries as it was.
func TestSessionClone(t *testing.T) {
	s := newSession("gm")
	s.Claims.Subject, s.Claims.Audience = "sub-1", make([]string, 1, 4)
	s.Claims.Audience[0] = "a"
	s.Claims.AuthenticationMethodsReferences = []string{"pin"}
	s.Claims.Extra["k"] = "v"
	cp := s.Clone().(*Session)
	cp.Claims.Nonce, cp.Claims.AccessTokenHash = "n", "h"
	cp.Claims.Audience = append(cp.Claims.Audience, "portal") // within the original's capacity
	cp.Claims.AuthenticationMethodsReferences[0] = "face"
	cp.Claims.Extra["k"] = "changed"
	if s.Claims.Nonce != "" || s.Claims.AccessTokenHash != "" || s.Claims.Audience[:2][1] != "" ||
		s.Claims.AuthenticationMethodsReferences[0] != "pin" || s.Claims.Extra["k"] != "v" {
		t.Fatalf("the clone wrote into the original claims: %+v", s.Claims)
	}
	if cp.Subject != s.Subject || cp.Claims.Subject != "sub-1" || cp.Profile != "gm" {
		t.Fatalf("clone lost the session: %+v", cp)
	}
}
