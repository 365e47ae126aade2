package idp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// parBye is a post-logout URI only rp-gm-par registers.
const parBye = "https://par.example.com/bye"

// gmTokensOf runs a gm login for clientID and returns its token response.
func (e *env) gmTokensOf(t *testing.T, clientID string) (code string, tok map[string]any) {
	t.Helper()
	verifier, ch := pkcePair()
	code = e.code("/gm", authorizeParams(clientID, gmCB, ch))
	s, tok := e.gmToken(code, verifier, gmCB, clientID)
	if s != http.StatusOK || tok["id_token"] == nil || tok["refresh_token"] == nil {
		t.Fatalf("tokens of %s: %d %v", clientID, s, tok)
	}
	return code, tok
}

// givePARClientALogoutURI registers parBye for rp-gm-par (B), so a logout
// that resolved B from A's ID token would have somewhere to redirect.
func (e *env) givePARClientALogoutURI() {
	e.clients.mu.Lock()
	defer e.clients.mu.Unlock()
	c := e.clients.m["rp-gm-par"]
	c.PostLogoutRedirectURIs = []string{parBye}
	e.clients.m["rp-gm-par"] = c
}

// TestIDTokenReplayAtAnotherClient: client A's (rp-gm) ID token presented
// where client B (rp-gm-par) or another profile is named — B's logout, B's
// post-logout redirect, the intl issuer's logout — ends nothing and
// redirects nowhere; an ID token is never accepted as an access token, a
// refresh token, a code or a client assertion. The control at the end shows
// A's own logout with the same token does end the sign-in.
func TestIDTokenReplayAtAnotherClient(t *testing.T) {
	e := newEnv(t)
	e.givePARClientALogoutURI()
	_, tok := e.gmTokensOf(t, "rp-gm")
	idt, at := tok["id_token"].(string), tok["access_token"].(string)
	stillSignedIn := func(t *testing.T) {
		t.Helper()
		if s := e.userinfoStatus("/gm", at); s != http.StatusOK {
			t.Fatalf("A's sign-in was ended: userinfo %d", s)
		}
	}

	for _, tc := range []struct {
		name, prefix string
		q            url.Values
	}{
		{"fail/logout-hint-of-A-naming-B", "/gm", url.Values{"id_token_hint": {idt}, "client_id": {"rp-gm-par"}, "post_logout_redirect_uri": {parBye}}},
		{"fail/logout-hint-of-A-naming-B-no-redirect", "/gm", url.Values{"id_token_hint": {idt}, "client_id": {"rp-gm-par"}}},
		{"fail/logout-hint-of-A-to-B-redirect", "/gm", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {parBye}}},
		{"fail/gm-id-token-at-intl-logout", "", url.Values{"id_token_hint": {idt}, "post_logout_redirect_uri": {"https://rp.example.com/bye"}}},
		{"fail/gm-id-token-at-intl-logout-naming-A", "", url.Values{"id_token_hint": {idt}, "client_id": {"rp-gm"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.browse(tc.prefix+"/oauth2/logout", tc.q)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("%d Location %q, want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			stillSignedIn(t)
		})
	}

	t.Run("fail/id-token-as-access-token", func(t *testing.T) {
		for _, prefix := range []string{"/gm", ""} {
			if s := e.userinfoStatus(prefix, idt); s != http.StatusUnauthorized {
				t.Fatalf("userinfo%s with an ID token: %d", prefix, s)
			}
		}
		if _, body := e.introspect("/gm", idt, "rp-gm"); body["active"] != false {
			t.Fatalf("ID token introspected as active: %v", body)
		}
		if _, body := e.introspect("/gm", idt, "rp-gm-par"); body["active"] != false {
			t.Fatalf("ID token introspected as active by B: %v", body)
		}
	})
	t.Run("fail/id-token-as-refresh-token-or-code", func(t *testing.T) {
		for _, form := range []url.Values{
			{"grant_type": {"refresh_token"}, "refresh_token": {idt}},
			{"grant_type": {"authorization_code"}, "code": {idt}, "redirect_uri": {gmCB}, "code_verifier": {"a-very-long-code-verifier-with-enough-entropy-1234567890"}},
		} {
			for _, client := range []string{"rp-gm", "rp-gm-par"} {
				s, body := e.post("/gm/oauth2/token", merge(form, e.gmAuth(client)), nil)
				// rp-gm-par has no refresh grant: unauthorized_client is as good a refusal.
				if c := errorCode(body); s != http.StatusBadRequest || (c != "invalid_grant" && c != "unauthorized_client") || body["access_token"] != nil {
					t.Fatalf("%s by %s: %d %v", form.Get("grant_type"), client, s, body)
				}
			}
		}
	})
	t.Run("fail/id-token-as-client-assertion-of-B", func(t *testing.T) {
		// The ID token is signed by the provider, names A as audience and
		// the holder as subject: it must not authenticate B (or A).
		for _, client := range []string{"rp-gm-par", "rp-gm"} {
			s, body := e.post("/gm/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {client},
				"client_assertion_type": {assertionType}, "client_assertion": {idt}}, nil)
			if s != http.StatusUnauthorized || errorCode(body) != "invalid_client" {
				t.Fatalf("as %s: %d %v", client, s, body)
			}
		}
	})

	t.Run("ok/A's-own-logout-ends-the-sign-in", func(t *testing.T) {
		resp := e.browse("/gm/oauth2/logout", url.Values{"id_token_hint": {idt}, "client_id": {"rp-gm"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("own logout: %d", resp.StatusCode)
		}
		if s := e.userinfoStatus("/gm", at); s != http.StatusUnauthorized {
			t.Fatalf("token after own logout: %d", s)
		}
	})
}

// TestTokenSubstitutionBetweenClients: what client A (rp-gm) was issued is
// worthless to client B (rp-gm-par), authenticated as itself: B cannot
// redeem A's code, introspect A's access or refresh token, or revoke them
// (RFC 7009 §2.1: the token must have been issued to the requester); and a
// client of the other profile sees A's tokens as inactive.
func TestTokenSubstitutionBetweenClients(t *testing.T) {
	e := newEnv(t)
	_, tok := e.gmTokensOf(t, "rp-gm")
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)

	t.Run("fail/B-redeems-A's-code", func(t *testing.T) {
		verifier, ch := pkcePair()
		code := e.code("/gm", authorizeParams("rp-gm", gmCB, ch))
		s, body := e.gmToken(code, verifier, gmCB, "rp-gm-par")
		if s != http.StatusBadRequest || errorCode(body) != "invalid_grant" || body["access_token"] != nil {
			t.Fatalf("B redeemed A's code: %d %v", s, body)
		}
	})
	t.Run("fail/B-introspects-A's-tokens", func(t *testing.T) {
		for _, tc := range []struct{ tok, hint string }{{at, "access_token"}, {rt, "refresh_token"}, {rt, ""}} {
			s, body := e.post("/gm/oauth2/introspect", merge(url.Values{"token": {tc.tok}, "token_type_hint": {tc.hint}}, e.gmAuth("rp-gm-par")), nil)
			if s != http.StatusOK || body["active"] != false || len(body) != 1 {
				t.Fatalf("B introspected A's %s: %d %v", tc.hint, s, body)
			}
		}
		if _, body := e.post("/gm/oauth2/introspect", merge(url.Values{"token": {rt}}, e.gmAuth("rp-gm")), nil); body["active"] != true {
			t.Fatalf("A's own refresh token: %v", body)
		}
	})
	t.Run("fail/intl-client-introspects-A's-gm-token", func(t *testing.T) {
		if _, body := e.introspect("", at, "rp-intl"); body["active"] != false {
			t.Fatalf("intl client sees a gm token: %v", body)
		}
	})
	t.Run("fail/B-revokes-A's-tokens", func(t *testing.T) {
		for _, tc := range []struct{ tok, hint string }{{at, "access_token"}, {rt, "refresh_token"}} {
			s, body := e.post("/gm/oauth2/revoke", merge(url.Values{"token": {tc.tok}, "token_type_hint": {tc.hint}}, e.gmAuth("rp-gm-par")), nil)
			// RFC 7009 lets the server answer 200 or unauthorized_client;
			// either way nothing may be revoked (checked below).
			if ok := s == http.StatusOK && body["error"] == nil; !ok && errorCode(body) != "unauthorized_client" {
				t.Fatalf("revoke by B: %d %v", s, body)
			}
		}
		if s := e.userinfoStatus("/gm", at); s != http.StatusOK {
			t.Fatalf("A's access token revoked by B: userinfo %d", s)
		}
		s, body := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, e.gmAuth("rp-gm")), nil)
		if s != http.StatusOK || body["access_token"] == nil {
			t.Fatalf("A's refresh token revoked by B: %d %v", s, body)
		}
	})
}

// TestAccessTokenDigest: a presented access token is ours when it is
// byte-identical to the token stored under its signature (accessTokens).
// The real signature under altered claims or an altered header is refused
// (the digest differs and the signature no longer verifies), and the digest
// path enforces expiry.
func TestAccessTokenDigest(t *testing.T) {
	e := newEnv(t)
	_, tok := e.gmTokensOf(t, "rp-gm")
	at := tok["access_token"].(string)
	if _, body := e.introspect("/gm", at, "rp-gm"); body["active"] != true {
		t.Fatalf("own token: %v", body)
	}
	parts := strings.Split(at, ".")
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["scp"] = []string{"openid", "profile", "essc.card", "essc.ssn", "essc.verify"}
	claims["exp"] = claims["exp"].(float64) + 86400
	forgedClaims, _ := json.Marshal(claims)
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	for name, forged := range map[string]string{
		"claims": parts[0] + "." + base64.RawURLEncoding.EncodeToString(forgedClaims) + "." + parts[2],
		"header": base64.RawURLEncoding.EncodeToString(append(hdr[:len(hdr)-1:len(hdr)-1], `,"x":1}`...)) + "." + parts[1] + "." + parts[2],
	} {
		t.Run("fail/altered-"+name, func(t *testing.T) {
			if _, body := e.introspect("/gm", forged, "rp-gm"); body["active"] != false {
				t.Fatalf("altered %s accepted: %v", name, body)
			}
			if s := e.userinfoStatus("/gm", forged); s != http.StatusUnauthorized {
				t.Fatalf("altered %s at userinfo: %d", name, s)
			}
		})
	}

	pr := e.p.gm
	st := &accessTokens{DefaultJWTStrategy: &oauth2.DefaultJWTStrategy{Signer: pr.signer, Config: pr.fc}, now: e.now.Now}
	sess := newSession("gm")
	sess.AccessTokenDigest = tokenDigest("opaque-looking")
	r := &fosite.Request{Session: sess}
	sess.SetExpiresAt(fosite.AccessToken, e.now.Now().Add(time.Minute))
	if err := st.ValidateAccessToken(context.Background(), r, "opaque-looking"); err != nil {
		t.Fatalf("digest match: %v", err)
	}
	if err := st.ValidateAccessToken(context.Background(), r, "opaque-lookinG"); err == nil {
		t.Fatal("a token with another digest and no valid signature was accepted")
	}
	sess.SetExpiresAt(fosite.AccessToken, e.now.Now())
	if err := st.ValidateAccessToken(context.Background(), r, "opaque-looking"); !errors.Is(err, fosite.ErrTokenExpired) {
		t.Fatalf("expired token on the digest path: %v", err)
	}
}
