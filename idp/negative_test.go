package idp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/essc-project/essc/signing"
)

// gmToken redeems a gm code and returns the decoded response.
func (e *env) gmToken(code, verifier, redirect, clientID string) (int, map[string]any) {
	return e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "code_verifier": {verifier}}, e.gmAuth(clientID)), nil)
}

// introspect asks the gm introspection endpoint as clientID.
func (e *env) introspect(prefix, tok, clientID string) (int, map[string]any) {
	if prefix == "" {
		return e.post("/oauth2/introspect", url.Values{"token": {tok}}, []string{clientID, e.secret})
	}
	return e.post(prefix+"/oauth2/introspect", merge(url.Values{"token": {tok}}, e.gmAuth(clientID)), nil)
}

func (e *env) userinfoStatus(prefix, tok string) int {
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+prefix+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRedirectURINearMissesNeverRedirected(t *testing.T) {
	e := newEnv(t)
	_, ch := pkcePair()
	for _, tt := range []struct{ name, uri string }{
		{"fail/unregistered", "https://evil.example/cb"},
		{"fail/case", "https://RP.example.com/cb"},
		{"fail/path case", "https://rp.example.com/CB"},
		{"fail/trailing slash", rpCB + "/"},
		{"fail/query added", rpCB + "?x=1"},
		{"fail/port", "https://rp.example.com:8443/cb"},
		{"fail/scheme", "http://rp.example.com/cb"},
		{"fail/fragment", rpCB + "#x"},
		{"fail/userinfo", "https://rp.example.com@evil.example/cb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.browse("/oauth2/authorize", authorizeParams("rp-intl", tt.uri, ch))
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
	t.Run("fail/unknown client", func(t *testing.T) {
		resp := e.browse("/oauth2/authorize", authorizeParams("nobody", rpCB, ch))
		if resp.StatusCode < 400 || resp.Header.Get("Location") != "" {
			t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("fail/intl client on gm profile", func(t *testing.T) {
		resp := e.browse("/gm/oauth2/authorize", authorizeParams("rp-intl", rpCB, ch))
		if resp.StatusCode < 400 || resp.Header.Get("Location") != "" {
			t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// redirectError runs authorize and returns the error redirected to the RP
// ("" with the status when the response was not a redirect).
func (e *env) redirectError(prefix string, q url.Values) string {
	resp := e.browse(prefix+"/oauth2/authorize", q)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || loc.String() == "" {
		return "status:" + http.StatusText(resp.StatusCode)
	}
	return loc.Query().Get("error")
}

func TestAuthorizeRequestPolicy(t *testing.T) {
	e := newEnv(t)
	_, ch := pkcePair()
	for _, tt := range []struct {
		name   string
		mutate func(url.Values)
		want   string
	}{
		{"fail/pkce missing", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"fail/pkce plain", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"fail/pkce method missing", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"fail/pkce short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		{"fail/no openid", func(q url.Values) { q.Set("scope", "profile") }, "invalid_scope"},
		{"fail/scope not allowed", func(q url.Values) { q.Set("scope", "openid essc.ssn") }, "invalid_scope"},
		{"fail/unknown acr", func(q url.Values) { q.Set("acr_values", "urn:x") }, "invalid_request"},
		{"fail/bad max_age", func(q url.Values) { q.Set("max_age", "-1") }, "invalid_request"},
		{"fail/unregistered purpose", func(q url.Values) { q.Set("purpose", "pension_certification") }, "invalid_request"},
		{"fail/prompt none", func(q url.Values) { q.Set("prompt", "none") }, "login_required"},
		{"fail/token response type", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"fail/request object", func(q url.Values) { q.Set("request", "eyJhbGciOiJub25lIn0.e30.") }, "status:Bad Request"},
		{"fail/duplicated state", func(q url.Values) { q.Add("state", "other-state-123") }, "status:Bad Request"},
		{"fail/duplicated redirect_uri", func(q url.Values) { q.Add("redirect_uri", "https://evil.example/cb") }, "status:Bad Request"},
		{"fail/duplicated code_challenge", func(q url.Values) { q.Add("code_challenge", ch) }, "status:Bad Request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := authorizeParams("rp-intl", rpCB, ch)
			tt.mutate(q)
			if got := e.redirectError("", q); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("fail/acr face requested, pin done", func(t *testing.T) {
		q := authorizeParams("rp-intl", rpCB, ch)
		q.Set("acr_values", ACRFace)
		if got := e.redirectError("", q); got != "unmet_authentication_requirements" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("ok/acr pin or face requested, face done", func(t *testing.T) {
		e.login.set(func(r LoginRequest) (Authentication, bool) {
			return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRFace, AMR: []string{"hwk", "face"}, AuthTime: time.Now(), Consented: r.Scopes}, true
		})
		defer e.login.set(func(r LoginRequest) (Authentication, bool) {
			return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AuthTime: time.Now(), Consented: r.Scopes}, true
		})
		q := authorizeParams("rp-intl", rpCB, ch)
		q.Set("acr_values", ACRFace)
		if got := e.redirectError("", q); got != "" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("fail/purpose confirmed differs", func(t *testing.T) {
		e.clients.mu.Lock()
		c := e.clients.m["rp-intl"]
		c.Purposes = []string{"portal_login", "pension_certification"}
		e.clients.m["rp-intl"] = c
		e.clients.mu.Unlock()
		e.login.set(func(r LoginRequest) (Authentication, bool) {
			return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AuthTime: time.Now(), Purpose: "portal_login", Consented: r.Scopes}, true
		})
		q := authorizeParams("rp-intl", rpCB, ch)
		q.Set("purpose", "pension_certification")
		if got := e.redirectError("", q); got != "access_denied" {
			t.Fatalf("got %q", got)
		}
		q.Set("purpose", "portal_login")
		if got := e.redirectError("", q); got != "" {
			t.Fatalf("matching purpose: got %q", got)
		}
	})
	t.Run("fail/max_age exceeded", func(t *testing.T) {
		e.login.set(func(r LoginRequest) (Authentication, bool) {
			return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AuthTime: e.now.Now().Add(-10 * time.Minute), Consented: r.Scopes}, true
		})
		q := authorizeParams("rp-intl", rpCB, ch)
		q.Set("max_age", "60")
		if got := e.redirectError("", q); got != "login_required" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("fail/consent missing for essc.ssn", func(t *testing.T) {
		e.login.set(func(r LoginRequest) (Authentication, bool) {
			return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AuthTime: time.Now(), Consented: []string{"profile"}}, true
		})
		_, gch := pkcePair()
		q := authorizeParams("rp-gm", gmCB, gch)
		q.Set("scope", "openid profile essc.ssn")
		if got := e.redirectError("/gm", q); got != "consent_required" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("fail/cancelled card cannot log in", func(t *testing.T) {
		e.login.set(func(r LoginRequest) (Authentication, bool) {
			return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AuthTime: time.Now(), Consented: r.Scopes}, true
		})
		e.holders.setInactive(ecardA, true)
		defer e.holders.setInactive(ecardA, false)
		if got := e.redirectError("", authorizeParams("rp-intl", rpCB, ch)); got != "access_denied" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("fail/forged pending", func(t *testing.T) {
		rec := newRecorder()
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/x", nil)
		e.p.Complete(rec, req, []byte(strings.Repeat("x", 64)), Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AuthTime: e.now.Now()})
		if rec.code != http.StatusBadRequest || rec.h.Get("Location") != "" {
			t.Fatalf("status %d", rec.code)
		}
	})
}

func TestTokenPKCEAndCode(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	newCode := func() string { return e.code("/gm", authorizeParams("rp-gm", gmCB, ch)) }
	for _, tt := range []struct {
		name     string
		verifier string
		redirect string
		client   string
		want     string
	}{
		{"fail/pkce wrong verifier", verifier[:len(verifier)-1] + "x", gmCB, "rp-gm", "invalid_grant"},
		{"fail/pkce downgrade: no verifier", "", gmCB, "rp-gm", "invalid_grant"},
		{"fail/redirect_uri mismatch", verifier, gmCB + "/x", "rp-gm", "invalid_grant"},
		{"fail/redirect_uri missing", verifier, "", "rp-gm", "invalid_grant"},
		{"fail/code of client A used by client B", verifier, gmCB, "rp-gm-par", "invalid_grant"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.gmToken(newCode(), tt.verifier, tt.redirect, tt.client)
			if status != http.StatusBadRequest || errorCode(body) != tt.want {
				t.Fatalf("status %d body %v", status, body)
			}
		})
	}
	t.Run("fail/code reuse revokes the first tokens", func(t *testing.T) {
		code := newCode()
		status, tok := e.gmToken(code, verifier, gmCB, "rp-gm")
		if status != 200 {
			t.Fatalf("first: %d %v", status, tok)
		}
		if s := e.userinfoStatus("/gm", tok["access_token"].(string)); s != 200 {
			t.Fatalf("userinfo before reuse: %d", s)
		}
		status, body := e.gmToken(code, verifier, gmCB, "rp-gm")
		if status != http.StatusBadRequest || errorCode(body) != "invalid_grant" {
			t.Fatalf("second: %d %v", status, body)
		}
		if s := e.userinfoStatus("/gm", tok["access_token"].(string)); s != http.StatusUnauthorized {
			t.Fatalf("userinfo after reuse: %d, want 401", s)
		}
		status, body = e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {tok["refresh_token"].(string)}}, e.gmAuth("rp-gm")), nil)
		if status == 200 {
			t.Fatalf("refresh after code reuse succeeded: %v", body)
		}
	})
	t.Run("fail/16 concurrent redemptions, exactly one wins", func(t *testing.T) {
		code := newCode()
		forms := make([]url.Values, 16)
		for i := range forms {
			forms[i] = merge(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {gmCB}, "code_verifier": {verifier}}, e.gmAuth("rp-gm"))
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range forms {
			wg.Add(1)
			go func(f url.Values) {
				defer wg.Done()
				if s, _ := e.post("/gm/oauth2/token", f, nil); s == 200 {
					wins.Add(1)
				}
			}(forms[i])
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d redemptions succeeded", wins.Load())
		}
	})
	t.Run("fail/code older than 60 s", func(t *testing.T) {
		code := newCode()
		e.now.Add(61 * time.Second)
		status, body := e.gmToken(code, verifier, gmCB, "rp-gm")
		if status != http.StatusBadRequest || errorCode(body) != "invalid_grant" {
			t.Fatalf("status %d body %v", status, body)
		}
	})
	t.Run("fail/password grant refused", func(t *testing.T) {
		status, body := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, e.gmAuth("rp-gm")), nil)
		if status != http.StatusBadRequest || errorCode(body) != "unsupported_grant_type" {
			t.Fatalf("status %d body %v", status, body)
		}
	})
	t.Run("fail/duplicated token parameter", func(t *testing.T) {
		f := merge(url.Values{"grant_type": {"authorization_code"}, "code": {newCode(), "x"}, "redirect_uri": {gmCB}, "code_verifier": {verifier}}, e.gmAuth("rp-gm"))
		if status, body := e.post("/gm/oauth2/token", f, nil); status != http.StatusBadRequest || errorCode(body) != "invalid_request" {
			t.Fatalf("status %d body %v", status, body)
		}
	})
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	refresh := func(rt, client string) (int, map[string]any) {
		return e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, e.gmAuth(client)), nil)
	}
	_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	rt1 := tok["refresh_token"].(string)
	t.Run("fail/refresh token of another client", func(t *testing.T) {
		e.clients.mu.Lock()
		c := e.clients.m["rp-gm-par"]
		c.GrantTypes = []string{"authorization_code", "refresh_token"}
		e.clients.m["rp-gm-par"] = c
		e.clients.mu.Unlock()
		if s, body := refresh(rt1, "rp-gm-par"); s != http.StatusBadRequest || errorCode(body) != "invalid_grant" {
			t.Fatalf("status %d body %v", s, body)
		}
	})
	s, tok2 := refresh(rt1, "rp-gm")
	if s != 200 {
		t.Fatalf("rotation: %d %v", s, tok2)
	}
	t.Run("fail/reuse after rotation revokes the family", func(t *testing.T) {
		e.now.Add(30 * time.Second) // past the store's grace window
		if s, body := refresh(rt1, "rp-gm"); s != http.StatusBadRequest || errorCode(body) != "invalid_grant" {
			t.Fatalf("reuse: %d %v", s, body)
		}
		if s, body := refresh(tok2["refresh_token"].(string), "rp-gm"); s == 200 {
			t.Fatalf("rotated sibling still works after reuse: %v", body)
		}
		if st := e.userinfoStatus("/gm", tok2["access_token"].(string)); st != http.StatusUnauthorized {
			t.Fatalf("family access token still valid: %d", st)
		}
	})
	t.Run("fail/cancelled card cannot refresh", func(t *testing.T) {
		_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
		e.holders.setInactive(ecardA, true)
		defer e.holders.setInactive(ecardA, false)
		if s, body := refresh(tok["refresh_token"].(string), "rp-gm"); s != http.StatusBadRequest || errorCode(body) != "invalid_grant" {
			t.Fatalf("refresh: %d %v", s, body)
		}
		if st := e.userinfoStatus("/gm", tok["access_token"].(string)); st != http.StatusUnauthorized {
			t.Fatalf("userinfo: %d", st)
		}
		if _, body := e.introspect("/gm", tok["access_token"].(string), "rp-gm"); body["active"] != false {
			t.Fatalf("introspect: %v", body)
		}
	})
}

func TestClientAuthentication(t *testing.T) {
	e := newEnv(t)
	tokenURL := e.srv.URL + "/gm/oauth2/token"
	cc := func(assertion string) (int, map[string]any) {
		return e.post("/gm/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"essc.verify"},
			"client_assertion_type": {assertionType}, "client_assertion": {assertion}}, nil)
	}
	now := e.now.Now()
	for _, tt := range []struct {
		name   string
		mutate func(map[string]any)
		key    *signing.Key
		want   int
	}{
		{"ok/aud token endpoint", nil, e.clientSM2, 200},
		{"ok/aud issuer array", func(m map[string]any) { m["aud"] = []string{"x", e.srv.URL + "/gm"} }, e.clientSM2, 200},
		{"fail/wrong aud", func(m map[string]any) { m["aud"] = e.srv.URL + "/oauth2/token" }, e.clientSM2, 401},
		{"fail/expired", func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() }, e.clientSM2, 401},
		{"fail/exp more than 2 min ahead", func(m map[string]any) { m["exp"] = now.Add(10 * time.Minute).Unix() }, e.clientSM2, 401},
		{"fail/no exp", func(m map[string]any) { delete(m, "exp") }, e.clientSM2, 401},
		{"fail/iat in the future > 60 s", func(m map[string]any) { m["iat"] = now.Add(90 * time.Second).Unix() }, e.clientSM2, 401},
		{"fail/no jti", func(m map[string]any) { delete(m, "jti") }, e.clientSM2, 401},
		{"fail/sub differs", func(m map[string]any) { m["sub"] = "rp-gm-par" }, e.clientSM2, 401},
		{"fail/ES256 key on gm", nil, e.clientES, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := e.assertion(tt.key, "rp-gm", tokenURL, tt.mutate)
			if s, body := cc(a); s != tt.want {
				t.Fatalf("status %d body %v", s, body)
			}
		})
	}
	t.Run("fail/replayed jti", func(t *testing.T) {
		a := e.assertion(e.clientSM2, "rp-gm", tokenURL, nil)
		if s, body := cc(a); s != 200 {
			t.Fatalf("first: %d %v", s, body)
		}
		if s, body := cc(a); s != 401 || errorCode(body) != "invalid_client" {
			t.Fatalf("replay: %d %v", s, body)
		}
	})
	t.Run("fail/alg none assertion", func(t *testing.T) {
		a := e.assertion(e.clientSM2, "rp-gm", tokenURL, nil)
		parts := strings.Split(a, ".")
		none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
		if s, _ := cc(none); s != 401 {
			t.Fatalf("alg none accepted: %d", s)
		}
	})
	t.Run("fail/no client authentication", func(t *testing.T) {
		if s, body := e.post("/gm/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"rp-gm"}}, nil); s != 401 {
			t.Fatalf("%d %v", s, body)
		}
	})
	t.Run("fail/client_secret_post", func(t *testing.T) {
		if s, _ := e.post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"rp-intl"}, "client_secret": {e.secret}}, nil); s != 401 {
			t.Fatalf("client_secret_post accepted: %d", s)
		}
	})
	t.Run("fail/wrong basic secret", func(t *testing.T) {
		if s, _ := e.post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, []string{"rp-intl", e.secret + "x"}); s != 401 {
			t.Fatalf("wrong secret accepted: %d", s)
		}
	})
	t.Run("fail/basic on gm", func(t *testing.T) {
		if s, _ := e.post("/gm/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, []string{"rp-intl", e.secret}); s != 401 {
			t.Fatalf("basic on gm accepted: %d", s)
		}
	})
	t.Run("ok/intl private_key_jwt ES256 client_credentials", func(t *testing.T) {
		a := e.assertion(e.clientES, "rp-intl-jwt", e.srv.URL+"/oauth2/token", nil)
		s, body := e.post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"essc.admin"},
			"client_assertion_type": {assertionType}, "client_assertion": {a}}, nil)
		if s != 200 {
			t.Fatalf("%d %v", s, body)
		}
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+body["access_token"].(string))
		id, scopes, err := e.p.Authenticate(req)
		if err != nil || id != "rp-intl-jwt" || len(scopes) != 1 || scopes[0] != "essc.admin" {
			t.Fatalf("Authenticate: %q %v %v", id, scopes, err)
		}
	})
}

func TestPAR(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	push := func(client string, q url.Values) (int, map[string]any) {
		return e.post("/gm/oauth2/par", merge(q, e.gmAuth(client)), nil)
	}
	params := func() url.Values {
		q := authorizeParams("rp-gm-par", gmCB, ch)
		q.Set("scope", "openid profile")
		return q
	}
	s, body := push("rp-gm-par", params())
	if s != http.StatusCreated {
		t.Fatalf("par: %d %v", s, body)
	}
	uri := body["request_uri"].(string)
	code := e.code("/gm", url.Values{"client_id": {"rp-gm-par"}, "request_uri": {uri}})
	if st, tok := e.gmToken(code, verifier, gmCB, "rp-gm-par"); st != 200 {
		t.Fatalf("token: %d %v", st, tok)
	}
	t.Run("fail/request_uri reused", func(t *testing.T) {
		if got := e.redirectError("/gm", url.Values{"client_id": {"rp-gm-par"}, "request_uri": {uri}}); got == "" {
			t.Fatal("reused request_uri accepted")
		}
	})
	t.Run("fail/request_uri of another client", func(t *testing.T) {
		_, body := push("rp-gm-par", params())
		got := e.redirectError("/gm", url.Values{"client_id": {"rp-gm"}, "request_uri": {body["request_uri"].(string)}})
		if got == "" {
			t.Fatal("request_uri accepted for another client")
		}
	})
	t.Run("fail/request_uri expired", func(t *testing.T) {
		_, body := push("rp-gm-par", params())
		e.now.Add(2 * time.Minute)
		if got := e.redirectError("/gm", url.Values{"client_id": {"rp-gm-par"}, "request_uri": {body["request_uri"].(string)}}); got == "" {
			t.Fatal("expired request_uri accepted")
		}
	})
	t.Run("fail/PAR required but not used", func(t *testing.T) {
		if got := e.redirectError("/gm", params()); got != "invalid_request" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("fail/PAR with plain PKCE", func(t *testing.T) {
		q := params()
		q.Set("code_challenge_method", "plain")
		if s, body := push("rp-gm-par", q); s != http.StatusBadRequest {
			t.Fatalf("%d %v", s, body)
		}
	})
}

func TestStoreDown503(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	code := e.code("/gm", authorizeParams("rp-gm", gmCB, ch))
	_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	at := tok["access_token"].(string)
	form := e.gmAuth("rp-gm") // assertion made before the outage
	e.sessions.down.Store(true)
	t.Run("fail/token 503", func(t *testing.T) {
		s, body := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {gmCB}, "code_verifier": {verifier}}, form), nil)
		if s != http.StatusServiceUnavailable || errorCode(body) != "temporarily_unavailable" {
			t.Fatalf("%d %v", s, body)
		}
	})
	t.Run("fail/userinfo 503", func(t *testing.T) {
		if s := e.userinfoStatus("/gm", at); s != http.StatusServiceUnavailable {
			t.Fatalf("%d", s)
		}
	})
	t.Run("fail/introspect 503", func(t *testing.T) {
		e.sessions.down.Store(false)
		f := e.gmAuth("rp-gm")
		e.sessions.down.Store(true)
		s, body := e.post("/gm/oauth2/introspect", merge(url.Values{"token": {at}}, f), nil)
		if s != http.StatusServiceUnavailable || body["active"] != nil {
			t.Fatalf("%d %v", s, body)
		}
	})
	t.Run("fail/client registry down: authorize 503 page, no redirect", func(t *testing.T) {
		e.sessions.down.Store(false)
		e.clients.down.Store(true)
		defer e.clients.down.Store(false)
		resp := e.browse("/gm/oauth2/authorize", authorizeParams("rp-gm", gmCB, ch))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Location") != "" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		s, body := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"client_credentials"}}, e.gmAuth("rp-gm")), nil)
		if s != http.StatusServiceUnavailable || errorCode(body) != "temporarily_unavailable" {
			t.Fatalf("token with registry down: %d %v", s, body)
		}
	})
	t.Run("fail/registry down: userinfo 503", func(t *testing.T) {
		e.sessions.down.Store(false)
		e.holders.down.Store(true)
		defer e.holders.down.Store(false)
		if s := e.userinfoStatus("/gm", at); s != http.StatusServiceUnavailable {
			t.Fatalf("%d", s)
		}
	})
}

func TestIntrospectionAudience(t *testing.T) {
	e := newEnv(t)
	verifier, ch := pkcePair()
	_, tok := e.gmToken(e.code("/gm", authorizeParams("rp-gm", gmCB, ch)), verifier, gmCB, "rp-gm")
	at := tok["access_token"].(string)
	if _, body := e.introspect("/gm", at, "rp-gm"); body["active"] != true || body["client_id"] != "rp-gm" {
		t.Fatalf("own token: %v", body)
	}
	if _, body := e.introspect("/gm", at, "rp-gm-par"); body["active"] != false {
		t.Fatalf("other client's token visible: %v", body)
	}
	if s, body := e.post("/gm/oauth2/introspect", url.Values{"token": {at}}, nil); s != 401 || body["active"] != nil {
		t.Fatalf("unauthenticated introspection: %d %v", s, body)
	}
	// revocation ends the token.
	if s, _ := e.post("/gm/oauth2/revoke", merge(url.Values{"token": {at}}, e.gmAuth("rp-gm")), nil); s != 200 {
		t.Fatalf("revoke: %d", s)
	}
	if _, body := e.introspect("/gm", at, "rp-gm"); body["active"] != false {
		t.Fatalf("revoked token active: %v", body)
	}
}

// recorder is a tiny http.ResponseWriter.
type recorder struct {
	h    http.Header
	code int
	body strings.Builder
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

var _ = json.Marshal
