package idp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	"golang.org/x/oauth2"

	"github.com/essc-project/essc/signing"
)

// TestE2EIntlGoOIDC drives the intl profile with the unmodified go-oidc and
// x/oauth2: discovery, code + PKCE, ID token verification (nonce, at_hash),
// userinfo and refresh — with the default ES256 ID tokens, and for a client
// registered with id_token_signed_response_alg RS256 verified by a go-oidc
// restricted to RS256 (what Spring Security accepts by default).
func TestE2EIntlGoOIDC(t *testing.T) {
	for _, alg := range []string{"", signing.AlgRS256} {
		name := alg
		if name == "" {
			name = "default-ES256"
		}
		t.Run(name, func(t *testing.T) { testE2EIntlGoOIDC(t, alg) })
	}
}

func testE2EIntlGoOIDC(t *testing.T, idAlg string) {
	e := newEnv(t)
	e.clients.mu.Lock()
	c := e.clients.m["rp-intl"]
	c.IDTokenAlg = idAlg
	e.clients.m["rp-intl"] = c
	e.clients.mu.Unlock()
	want := idAlg
	if want == "" {
		want = signing.AlgES256
	}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, e.srv.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := &oauth2.Config{ClientID: "rp-intl", ClientSecret: e.secret, Endpoint: provider.Endpoint(),
		RedirectURL: rpCB, Scopes: []string{oidc.ScopeOpenID, "profile", "essc.card", oidc.ScopeOfflineAccess}}
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-0123456789"))
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), rpCB+"?") || loc.Query().Get("state") != "state-0123456789" {
		t.Fatalf("authorize redirect %q (status %d)", loc, resp.StatusCode)
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "rp-intl", SupportedSigningAlgs: []string{want}}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify %s id token: %v", want, err)
	}
	other := signing.AlgRS256
	if want == signing.AlgRS256 {
		other = signing.AlgES256
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: "rp-intl", SupportedSigningAlgs: []string{other}}).Verify(ctx, raw); err == nil {
		t.Fatalf("a %s-only verifier accepted the %s id token", other, want)
	}
	if a, err := jwtAlg(raw); err != nil || a != want {
		t.Fatalf("id token alg %q %v, want %s", a, err, want)
	}
	if strings.Count(tok.AccessToken, ".") == 2 { // a JWT access token keeps the profile's alg
		if a, _ := jwtAlg(tok.AccessToken); a != signing.AlgES256 {
			t.Fatalf("access token alg %q", a)
		}
	}
	if idt.Nonce != "nonce-0123456789" || idt.Issuer != e.srv.URL {
		t.Fatalf("nonce %q issuer %q", idt.Nonce, idt.Issuer)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	var claims struct {
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
		SID      string   `json:"sid"`
	}
	if err := idt.Claims(&claims); err != nil || claims.ACR != ACRPIN || len(claims.AMR) != 2 || claims.AuthTime == 0 || claims.SID == "" {
		t.Fatalf("claims %+v err %v", claims, err)
	}
	wantSub := PairwiseSubject([]byte("pairwise-key-pairwise-key-012345"), "rp.example.com", holderA)
	if idt.Subject != wantSub {
		t.Fatalf("sub %q, want pairwise %q", idt.Subject, wantSub)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc map[string]any
	_ = ui.Claims(&uc)
	if ui.Subject != wantSub || uc[ClaimName] != "张三" || uc[ClaimSSNMasked] != "4113**********1234" || uc[ClaimSSN] != nil || uc[ClaimRegion] != "411302" {
		t.Fatalf("userinfo claims %v", uc)
	}
	// Refresh (rotation): a new access and refresh token and a new ID token.
	old := *tok
	tok.Expiry = time.Now().Add(-time.Minute)
	tok2, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == old.AccessToken || tok2.RefreshToken == old.RefreshToken {
		t.Fatal("refresh did not rotate")
	}
	raw2, _ := tok2.Extra("id_token").(string)
	idt2, err := provider.Verifier(&oidc.Config{ClientID: "rp-intl"}).Verify(ctx, raw2)
	if err != nil || idt2.Subject != wantSub {
		t.Fatalf("refreshed id token: %v", err)
	}
	if err := idt2.VerifyAccessToken(tok2.AccessToken); err != nil {
		t.Fatalf("refreshed at_hash: %v", err)
	}
	// The client's ID token (of its own alg) is a valid logout hint; a
	// tampered one is refused.
	if resp := e.browse("/oauth2/logout", url.Values{"id_token_hint": {raw2[:len(raw2)-4] + "AAAA"}, "client_id": {"rp-intl"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("tampered hint: %d", resp.StatusCode)
	}
	if resp := e.browse("/oauth2/logout", url.Values{"id_token_hint": {raw2}, "client_id": {"rp-intl"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("logout with the %s id token as hint: %d", want, resp.StatusCode)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token(); err == nil {
		t.Fatal("refresh token still works after logout")
	}
}

// TestE2EGM runs the same flow on the gm profile with an SM2SM3
// private_key_jwt client; the ID token verifies with signing and with
// tjfoc/gmsm, and at_hash is SM3-based.
func TestE2EGM(t *testing.T) {
	e := newEnv(t)
	var disc Discovery
	getJSON(t, e.srv.URL+"/gm/.well-known/openid-configuration", &disc)
	if disc.Issuer != e.srv.URL+"/gm" || disc.IDTokenSigningAlgValuesSupported[0] != signing.AlgSM2SM3 {
		t.Fatalf("gm discovery %+v", disc)
	}
	verifier, challenge := pkcePair()
	q := authorizeParams("rp-gm", gmCB, challenge)
	q.Set("scope", "openid profile essc.card essc.ssn offline_access")
	code := e.code("/gm", q)
	status, tok := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {gmCB}, "code_verifier": {verifier}}, e.gmAuth("rp-gm")), nil)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	idToken, at := tok["id_token"].(string), tok["access_token"].(string)

	// Verify with signing against the published gm JWKS.
	var jwksRaw json.RawMessage
	getJSON(t, disc.JWKSURI, &jwksRaw)
	keys, err := signing.ParseJWKS(jwksRaw)
	if err != nil {
		t.Fatal(err)
	}
	h, payload, err := signing.Verify(idToken, keys)
	if err != nil || h.Alg != signing.AlgSM2SM3 {
		t.Fatalf("signing.Verify: %v alg %s", err, h.Alg)
	}
	if _, _, err := signing.Verify(at, keys); err != nil {
		t.Fatalf("access token: %v", err)
	}
	// Verify with tjfoc/gmsm (independent SM2 implementation).
	k, _ := keys.ResolveKey(h.Kid, signing.AlgSM2SM3)
	jwk := k.PublicJWK()
	x, _ := base64.RawURLEncoding.DecodeString(jwk.X)
	y, _ := base64.RawURLEncoding.DecodeString(jwk.Y)
	pub := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	dot := strings.LastIndexByte(idToken, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(idToken[dot+1:])
	if !tjsm2.Sm2Verify(pub, []byte(idToken[:dot]), []byte(signing.DefaultUID), new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("tjfoc rejects the gm ID token")
	}
	var cl map[string]any
	_ = json.Unmarshal(payload, &cl)
	wantHash, _ := signing.HalfHash(signing.AlgSM2SM3, at)
	sha := sha256.Sum256([]byte(at))
	if cl["at_hash"] != wantHash || cl["at_hash"] == base64.RawURLEncoding.EncodeToString(sha[:16]) {
		t.Fatalf("at_hash %v, want SM3-based %s", cl["at_hash"], wantHash)
	}
	if cl["iss"] != e.srv.URL+"/gm" || cl["aud"] == nil || cl["nonce"] != "nonce-123456789" {
		t.Fatalf("claims %v", cl)
	}
	// userinfo with the full SSN (granted essc.ssn).
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/gm/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("userinfo %v %v", err, resp.StatusCode)
	}
	var ui map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if ui[ClaimSSN] != "411302199001011234" || ui["sub"] != cl["sub"] {
		t.Fatalf("userinfo %v", ui)
	}
	// refresh on gm with at_hash SM3 again.
	status, tok2 := e.post("/gm/oauth2/token", merge(url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {tok["refresh_token"].(string)}}, e.gmAuth("rp-gm")), nil)
	if status != 200 {
		t.Fatalf("refresh %d %v", status, tok2)
	}
	_, p2, err := signing.Verify(tok2["id_token"].(string), keys)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(p2, &cl)
	wantHash, _ = signing.HalfHash(signing.AlgSM2SM3, tok2["access_token"].(string))
	if cl["at_hash"] != wantHash {
		t.Fatalf("refresh at_hash %v want %v", cl["at_hash"], wantHash)
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// jwtAlg returns the alg of a compact JWS header.
func jwtAlg(tok string) (string, error) {
	h, _, ok := strings.Cut(tok, ".")
	if !ok {
		return "", errors.New("not a JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", err
	}
	var hdr struct{ Alg string }
	err = json.Unmarshal(b, &hdr)
	return hdr.Alg, err
}
