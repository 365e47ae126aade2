package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/secret"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage/registrytest"
)

// stack is a wired esscd on a loopback listener.
type stack struct {
	a      *app
	srv    *httptest.Server
	base   string
	rpKey  *signing.Key
	rpID   string
	redir  string
	devKey *signing.Key // the liveness development test key
}

// newStack wires the whole server (registry on SQLite, or PostgreSQL when
// dbURL is set; sessions in memory, or Redis when redisURL is set).
func newStack(t testing.TB, dbURL, redisURL string, edit ...func(*FileConfig)) *stack {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	devKey, _ := signing.GenerateKey(signing.AlgSM2SM3)
	pem, _ := signing.MarshalPKCS8PEM(devKey, nil)
	os.WriteFile(filepath.Join(data, "liveness.pem"), pem, 0o600)

	cfg := defaults()
	cfg.Data, cfg.Listen = data, ln.Addr().String()
	cfg.Database.URL, cfg.Redis.URL = dbURL, redisURL
	cfg.Redis.Prefix = fmt.Sprintf("essc-e2e-%d:", time.Now().UnixNano())
	cfg.Liveness.Verifier, cfg.Liveness.DevKeyFile = "development", filepath.Join(data, "liveness.pem")
	cfg.Wallet.AnonymousPerIPPer10Min = 1 << 20 // every test phone comes from 127.0.0.1
	for _, e := range edit {
		e(&cfg)
	}
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if redisURL != "" {
			cleanRedis(t, redisURL, cfg.Redis.Prefix)
		}
		a.Close()
	})

	s := &stack{a: a, srv: srv, base: "http://" + cfg.Listen, rpID: "portal-gm", devKey: devKey}
	s.redir = s.base + "/rp/callback"
	s.rpKey, _ = signing.GenerateKey(signing.AlgSM2SM3)
	jwks, _ := json.Marshal(signing.JWKS{Keys: []signing.JWK{s.rpKey.PublicJWK()}})
	clients, err := admin.NewClients(a.reg, nil, a.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := clients.Create(context.Background(), card.Actor{ID: "test"}, admin.ClientSpec{
		ID: s.rpID, Name: "省网上服务大厅", Domain: "portal.example.gov.cn", Profile: "gm",
		AuthMethod: "private_key_jwt", JWKS: jwks, RedirectURIs: []string{s.redir},
		GrantTypes: []string{"authorization_code", "refresh_token"}, Scopes: []string{"openid", "profile", "essc.card"},
		Purposes: []string{"login", "pension_certification"},
	}); err != nil && !errors.Is(err, card.ErrExists) { // a second replica shares the registry
		t.Fatal(err)
	}
	return s
}

// issue issues a card with the initial PIN and returns its number.
func (s *stack) issue(t testing.TB, prefix, number string) string {
	t.Helper()
	if _, err := s.a.cards.IssueCard(context.Background(), card.Actor{ID: "outlet-1"}, card.IssueRequest{
		SSN: ssnFor(prefix), Name: "李明", Number: number, Region: "410100",
	}); err != nil {
		t.Fatal(err)
	}
	return number
}

// phone applies for an e-card on a new device (changing the initial PIN).
func (s *stack) phone(t testing.TB, prefix, number, pin string) *client.Client {
	t.Helper()
	k, _ := signing.GenerateKey(signing.AlgSM2SM3)
	c := &client.Client{Base: s.base, Key: k}
	ctx := context.Background()
	_, err := c.Apply(ctx, wallet.ApplyRequest{CardNumber: number, SSN: ssnFor(prefix), Name: "李明", PIN: "123456"})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "pin_change_required" {
		t.Fatalf("fail/apply with the initial PIN: %v", err)
	}
	if err := c.ChangePIN(ctx, number, "123456", "123456"); err == nil {
		t.Fatal("fail/new PIN 123456 accepted")
	}
	if err := c.ChangePIN(ctx, number, "123456", pin); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Apply(ctx, wallet.ApplyRequest{CardNumber: number, SSN: ssnFor(prefix), Name: "李明", PIN: pin})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := signing.Verify(resp.Credential, s.a.keys.Set()); err != nil {
		t.Fatalf("e-card credential does not verify: %v", err)
	}
	return c
}

// browser runs the relying party's side: authorize with PKCE, the QR page,
// the completion and the code exchange.
type browser struct {
	t        testing.TB
	s        *stack
	c        *http.Client
	verifier string
	state    string
	nonce    string
	txn      string
}

func (s *stack) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, s: s, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func rnd() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authorize opens the authorize endpoint and lands on the QR page.
func (b *browser) authorize(extra url.Values) {
	b.verifier, b.state, b.nonce = rnd(), rnd(), rnd()
	ch := sha256.Sum256([]byte(b.verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {b.s.rpID}, "redirect_uri": {b.s.redir},
		"scope": {"openid profile essc.card"}, "state": {b.state}, "nonce": {b.nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(ch[:])}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	resp, err := b.c.Get(b.s.base + "/gm/oauth2/authorize?" + q.Encode())
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	i := strings.Index(string(body), `data-base="`+qrlogin.Base)
	if resp.StatusCode != 200 || i < 0 {
		b.t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	rest := string(body)[i+len(`data-base="`+qrlogin.Base):]
	b.txn = rest[:strings.IndexByte(rest, '"')]
}

func (b *browser) get(path string, out any) int {
	resp, err := b.c.Get(b.s.base + qrlogin.Base + b.txn + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}

func (b *browser) payload() string {
	var f struct{ Payload string }
	if code := b.get("/frame", &f); code != 200 {
		b.t.Fatalf("frame %d", code)
	}
	return f.Payload
}

func (b *browser) number() int {
	var st struct {
		State  string
		Number int
	}
	b.get("", &st)
	if st.State != "scanned" {
		b.t.Fatalf("browser state %s", st.State)
	}
	return st.Number
}

// complete collects the approval and returns the code from the redirect.
func (b *browser) complete() (string, error) {
	resp, err := b.c.Post(b.s.base+qrlogin.Base+b.txn+"/complete", "application/x-www-form-urlencoded", nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || err != nil {
		return "", fmt.Errorf("complete: %d", resp.StatusCode)
	}
	if !strings.HasPrefix(loc.String(), b.s.redir) || loc.Query().Get("state") != b.state {
		return "", fmt.Errorf("redirected to %s", loc)
	}
	if e := loc.Query().Get("error"); e != "" {
		return "", fmt.Errorf("authorize error %s", e)
	}
	return loc.Query().Get("code"), nil
}

// exchange redeems the code with a private_key_jwt SM2SM3 assertion.
func (b *browser) exchange(code string) (map[string]any, int) {
	tokenURL := b.s.base + "/gm/oauth2/token"
	now := time.Now()
	assertion, err := signing.SignClaims(b.s.rpKey, "", map[string]any{"iss": b.s.rpID, "sub": b.s.rpID, "aud": tokenURL,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": rnd()})
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := http.PostForm(tokenURL, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {b.s.redir}, "code_verifier": {b.verifier}, "client_id": {b.s.rpID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out, resp.StatusCode
}

func TestEndToEndQRLogin(t *testing.T) {
	checkGoroutineLeaks(t)
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Run("embedded", func(t *testing.T) { runEndToEnd(t, newStack(t, "", "")) })
	if r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL"); r != "" && d != "" {
		t.Run("redis+postgres", func(t *testing.T) { runEndToEnd(t, newStack(t, postgresSchema(t, d), r)) })
	} else {
		t.Log("ESSC_TEST_REDIS_URL / ESSC_TEST_DATABASE_URL not set: Redis+PostgreSQL variant skipped")
	}
}

func runEndToEnd(t *testing.T, s *stack) {
	ctx := context.Background()
	number := s.issue(t, "41010519560315201", "A10000001")
	app := s.phone(t, "41010519560315201", number, "258147")

	b := s.browser(t)
	b.authorize(nil)
	view, err := app.Scan(ctx, b.payload())
	if err != nil {
		t.Fatal(err)
	}
	if view.RPName != "省网上服务大厅" || view.RPDomain != "portal.example.gov.cn" || len(view.ConsentScopes) == 0 {
		t.Fatalf("phone shows %+v (the first login asks for consent)", view)
	}
	n := b.number()
	var e *client.Error
	if err := app.Confirm(ctx, b.txn, n, "000000"); !errors.As(err, &e) || e.Code != "auth_failed" {
		t.Fatalf("fail/wrong PIN: %v", err)
	}
	if err := app.Confirm(ctx, b.txn, n, "258147"); err != nil {
		t.Fatal(err)
	}
	code, err := b.complete()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.complete(); err == nil {
		t.Fatal("fail/second complete redirected again")
	}
	tok, status := b.exchange(code)
	if status != 200 {
		t.Fatalf("token: %d %v", status, tok)
	}
	idt, _ := tok["id_token"].(string)
	jwks := fetchJWKS(t, s.base+"/gm/jwks.json")
	hdr, payload, err := signing.Verify(idt, jwks)
	if err != nil || hdr.Alg != signing.AlgSM2SM3 {
		t.Fatalf("ID token: %v %+v", err, hdr)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	if claims["iss"] != s.base+"/gm" || claims["aud"] != s.rpID && !containsAud(claims["aud"], s.rpID) ||
		claims["nonce"] != b.nonce || claims["acr"] != qrlogin.ACRPIN {
		t.Fatalf("ID token claims %v", claims)
	}
	at, _ := tok["access_token"].(string)
	if code := userinfo(t, s.base+"/gm/userinfo", at); code != 200 {
		t.Fatalf("userinfo %d", code)
	}
	if _, status := b.exchange(code); status == 200 {
		t.Fatal("fail/code redeemed twice")
	}
	if code := userinfo(t, s.base+"/gm/userinfo", at); code == 200 {
		t.Fatal("fail/code reuse did not revoke the first exchange's token")
	}

	// Face-level request: PIN is refused, development liveness evidence works.
	b2 := s.browser(t)
	b2.authorize(url.Values{"acr_values": {qrlogin.ACRFace}, "purpose": {"pension_certification"}})
	v2, err := app.Scan(ctx, b2.payload())
	if err != nil || v2.RequiredACR != qrlogin.ACRFace {
		t.Fatalf("face scan: %+v %v", v2, err)
	}
	n2 := b2.number()
	if err := app.Confirm(ctx, b2.txn, n2, "258147"); !errors.As(err, &e) || e.Code != "face_required" {
		t.Fatalf("fail/pin for face: %v", err)
	}
	ecardID := ecardOf(t, s, number)
	forged, _ := wallet.SignDevLiveness(app.Key, ecardID, b2.txn, time.Now()) // signed by the phone, not the test key
	if err := app.ConfirmFace(ctx, b2.txn, n2, forged); !errors.As(err, &e) || e.Code != "liveness_failed" {
		t.Fatalf("fail/forged liveness: %v", err)
	}
	evidence, _ := wallet.SignDevLiveness(s.devKey, ecardID, b2.txn, time.Now())
	if err := app.ConfirmFace(ctx, b2.txn, n2, evidence); err != nil {
		t.Fatalf("face confirm: %v", err)
	}
	code2, err := b2.complete()
	if err != nil {
		t.Fatalf("face login: %v", err)
	}
	tok2, status := b2.exchange(code2)
	if status != 200 {
		t.Fatalf("face token: %d %v", status, tok2)
	}
	_, p2, _ := signing.Verify(tok2["id_token"].(string), jwks)
	var c2 map[string]any
	json.Unmarshal(p2, &c2)
	if c2["acr"] != qrlogin.ACRFace {
		t.Fatalf("face login acr %v", c2["acr"])
	}
	at2, _ := tok2["access_token"].(string)
	if code := userinfo(t, s.base+"/gm/userinfo", at2); code != 200 {
		t.Fatalf("userinfo after face login %d", code)
	}

	// Login notices and "not me": the face login is listed with the RP's
	// registered name; ending it revokes its token at once.
	notices, err := app.Notices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var faceSID string
	for _, n := range notices {
		if n.ACR == qrlogin.ACRFace && n.RPName == "省网上服务大厅" && strings.Contains(n.Browser, "127.0.0.1") {
			faceSID = n.SID
		}
	}
	if len(notices) < 2 || faceSID == "" {
		t.Fatalf("notices %+v", notices)
	}
	if err := app.NotMe(ctx, faceSID); err != nil {
		t.Fatal(err)
	}
	if code := userinfo(t, s.base+"/gm/userinfo", at2); code == 200 {
		t.Fatal("fail/token still valid after not-me")
	}
	if err := app.NotMe(ctx, faceSID); !errors.As(err, &e) || e.Code != "not_found" {
		t.Fatalf("fail/not-me twice: %v", err)
	}
	if err := app.NotMe(ctx, "some-other-holders-sid"); !errors.As(err, &e) || e.Code != "not_found" {
		t.Fatalf("fail/not-me unknown sid: %v", err)
	}

	// A third login, whose token the loss report must end.
	b3 := s.browser(t)
	b3.authorize(nil)
	v3, err := app.Scan(ctx, b3.payload())
	if err != nil {
		t.Fatal(err)
	}
	if len(v3.ConsentScopes) != 0 { // remembered in the registry since the first login
		t.Fatalf("consent asked again for data granted before: %v", v3.ConsentScopes)
	}
	if err := app.Confirm(ctx, v3.Txn, b3.number(), "258147"); err != nil {
		t.Fatal(err)
	}
	code3, err := b3.complete()
	if err != nil {
		t.Fatal(err)
	}
	tok3, _ := b3.exchange(code3)
	at, _ = tok3["access_token"].(string)

	// Presentation code: a counter redeems it once.
	pc, err := app.PresentationCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counter := s.counterToken(t)
	if code, id := redeem(t, s.base, counter, pc.Code); code != 200 || id["ssn_masked"] != "4101**********"+ssnFor("41010519560315201")[14:] {
		t.Fatalf("presentation code: %d %v", code, id)
	}
	if code, _ := redeem(t, s.base, counter, pc.Code); code != 404 {
		t.Fatalf("fail/presentation code redeemed twice: %d", code)
	}

	// A second phone binds with card number + PIN; the first phone unbinds
	// it (say, it was lost) and it is refused at once.
	k2, _ := signing.GenerateKey(signing.AlgSM2SM3)
	phone2 := &client.Client{Base: s.base, Key: k2}
	if _, _, err := phone2.BindDevice(ctx, number, "000000"); !errors.As(err, &e) || e.Code != "auth_failed" {
		t.Fatalf("fail/bind with a wrong PIN: %v", err)
	}
	_, d2, err := phone2.BindDevice(ctx, number, "258147")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phone2.PresentationCode(ctx); err != nil {
		t.Fatalf("second phone not usable: %v", err)
	}
	if err := app.UnbindDevice(ctx, d2); err != nil {
		t.Fatal(err)
	}
	if _, err := phone2.PresentationCode(ctx); !errors.As(err, &e) || e.Code != "invalid_proof" {
		t.Fatalf("fail/unbound phone still accepted: %v", err)
	}

	// A login confirmed before the loss report is refused at its completion.
	b5 := s.browser(t)
	b5.authorize(nil)
	if _, err := app.Scan(ctx, b5.payload()); err != nil {
		t.Fatal(err)
	}
	if err := app.Confirm(ctx, b5.txn, b5.number(), "258147"); err != nil {
		t.Fatal(err)
	}

	// Report loss: the e-card is suspended at once; the old token stops working.
	if err := app.ReportLoss(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := b5.complete(); err == nil || code != "" {
		t.Fatalf("fail/completion after loss: code %q, %v", code, err)
	} else {
		t.Logf("completion after loss: %v", err)
	}
	if code := userinfo(t, s.base+"/gm/userinfo", at); code == 200 {
		t.Fatal("fail/userinfo after loss")
	}
	b4 := s.browser(t)
	b4.authorize(nil)
	if _, err := app.Scan(ctx, b4.payload()); !errors.As(err, &e) || e.Code != "card_inactive" {
		t.Fatalf("fail/scan after loss: %v", err)
	}
	// The browser is told why instead of waiting for a phone that cannot confirm.
	var st struct{ State, Error, Reason string }
	if b4.get("", &st); st.State != "denied" || st.Reason != qrlogin.ReasonCardInvalid {
		t.Fatalf("fail/browser after a lost card scanned: %+v", st)
	}
}

// serviceToken registers an intl client_secret_basic client with one scope
// for client credentials and returns an access token for it.
func (s *stack) serviceToken(t *testing.T, id, name, domain, scope string) string {
	clients, _ := admin.NewClients(s.a.reg, secret.Hasher{Key: s.a.secrets.ClientSecretKey}, s.a.now)
	_, sec, err := clients.Create(context.Background(), card.Actor{ID: "test"}, admin.ClientSpec{
		ID: id, Name: name, Domain: domain, Profile: "intl",
		AuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}, Scopes: []string{scope},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", s.base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope="+scope))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, sec)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	if tok.AccessToken == "" {
		t.Fatalf("%s token: %d", id, resp.StatusCode)
	}
	return tok.AccessToken
}

// counterToken is a counter terminal's token (scope essc.verify).
func (s *stack) counterToken(t *testing.T) string {
	return s.serviceToken(t, "counter-1", "社保服务网点", "outlet.example.gov.cn", wallet.ScopeVerify)
}

func redeem(t *testing.T, base, token, code string) (int, map[string]any) {
	req, _ := http.NewRequest("POST", base+"/verify/v1/presentation-codes", strings.NewReader(`{"code":"`+code+`"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func postgresSchema(t testing.TB, url string) string { return registrytest.PostgresSchema(t, url) }

func containsAud(v any, id string) bool {
	l, _ := v.([]any)
	for _, x := range l {
		if x == id {
			return true
		}
	}
	return false
}

func ecardOf(t *testing.T, s *stack, number string) string {
	c, err := s.a.reg.CardByNumber(context.Background(), number)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.a.reg.LiveECardOfCard(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	return e.ID
}

func fetchJWKS(t testing.TB, u string) signing.Keys {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	keys, err := signing.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func userinfo(t testing.TB, u, at string) int {
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// cleanRedis deletes every key with prefix.
func cleanRedis(t testing.TB, redisURL, prefix string) {
	opt, err := goredis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
}
