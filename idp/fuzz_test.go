package idp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzClientAssertion feeds arbitrary client assertions to the gm
// private_key_jwt verifier: it must never panic and never accept one (no
// valid signature can be produced without the client's key).
func FuzzClientAssertion(f *testing.F) {
	e := newEnv(f)
	f.Add(e.assertion(e.clientES, "rp-gm", e.srv.URL+"/gm/oauth2/token", nil)) // wrong key type
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJycC1nbSJ9.")
	f.Add("a.b.c")
	f.Add("")
	f.Add("eyJhbGciOiJTTTJTTTMiLCJraWQiOiJ4In0.eyJpc3MiOiJycC1nbSIsInN1YiI6InJwLWdtIn0.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		if _, err := e.p.gm.authPrivateKeyJWT(context.Background(), "", tok); err == nil {
			t.Fatalf("accepted %q", tok)
		}
	})
}

// FuzzPending feeds arbitrary pending-authorize blobs to Provider.open.
func FuzzPending(f *testing.F) {
	e := newEnv(f)
	good, _ := e.p.seal(pendingAuth{Profile: ProfileGM, Form: map[string][]string{"client_id": {"rp-gm"}}})
	f.Add(good)
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pa, err := e.p.open(b)
		if err == nil && string(b) != string(good) {
			t.Fatalf("forged pending accepted: %+v", pa)
		}
	})
}

// FuzzAuthorize sends arbitrary authorize queries: the endpoint never
// answers 5xx and never redirects anywhere but a registered redirect URI.
func FuzzAuthorize(f *testing.F) {
	e := newEnv(f)
	mux := http.NewServeMux()
	e.p.Mount(mux)
	_, ch := pkcePair()
	f.Add(authorizeParams("rp-intl", rpCB, ch).Encode())
	f.Add(authorizeParams("rp-intl", rpCB+"/", ch).Encode())
	f.Add("client_id=rp-intl&redirect_uri=https%3A%2F%2Fevil.example&response_type=code")
	f.Add("client_id=rp-intl&client_id=rp-gm&redirect_uri=" + url.QueryEscape(rpCB))
	f.Fuzz(func(t *testing.T, q string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/oauth2/authorize", nil)
		req.URL.RawQuery = q
		mux.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d for %q", rec.Code, q)
		}
		// An error for an unrecognised response_type goes to the registered
		// URI in the fragment (fosite's default mode): still the registered URI.
		if loc := rec.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, rpCB+"?") && !strings.HasPrefix(loc, rpCB+"#") {
			t.Fatalf("redirected to %q for %q", loc, q)
		}
	})
}
