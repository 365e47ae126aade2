package idp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/essc-project/essc/idp/secret"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
)

// The test fakes below are small real implementations of the ports; the
// test login step exists only in _test.go files and is never reachable in a
// built binary.

type fakeClients struct {
	mu   sync.Mutex
	m    map[string]storage.Client
	down atomic.Bool
}

func (f *fakeClients) Client(_ context.Context, id string) (storage.Client, error) {
	if f.down.Load() {
		return storage.Client{}, fmt.Errorf("registry: %w", storage.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.m[id]
	if !ok {
		return storage.Client{}, fmt.Errorf("client %q: %w", id, storage.ErrNotFound)
	}
	return c, nil
}

type fakeHolders struct {
	mu       sync.Mutex
	m        map[string]Identity // by e-card id
	inactive map[string]bool     // e-card ids
	down     atomic.Bool
}

func (f *fakeHolders) Identity(_ context.Context, holderID, ecardID string) (Identity, error) {
	if f.down.Load() {
		return Identity{}, fmt.Errorf("registry: %w", storage.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.m[ecardID]
	if !ok || id.HolderID != holderID {
		return Identity{}, fmt.Errorf("e-card %q: %w", ecardID, ErrInactive)
	}
	if f.inactive[ecardID] {
		return Identity{}, fmt.Errorf("e-card %q cancelled: %w", ecardID, ErrInactive)
	}
	return id, nil
}

func (f *fakeHolders) Check(ctx context.Context, holderID, ecardID string) error {
	_, err := f.Identity(ctx, holderID, ecardID)
	return err
}

func (f *fakeHolders) setInactive(ecard string, v bool) {
	f.mu.Lock()
	f.inactive[ecard] = v
	f.mu.Unlock()
}

type fakeConsent struct {
	mu sync.Mutex
	m  map[string][]string
}

func (f *fakeConsent) Granted(_ context.Context, h, c string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.m[h+"|"+c]...), nil
}

func (f *fakeConsent) Grant(_ context.Context, h, c string, scopes []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range scopes {
		found := false
		for _, g := range f.m[h+"|"+c] {
			found = found || g == s
		}
		if !found {
			f.m[h+"|"+c] = append(f.m[h+"|"+c], s)
		}
	}
	return nil
}

// flakySessions is the memory store with an outage switch.
type flakySessions struct {
	*memory.Store
	down atomic.Bool
}

func (f *flakySessions) err() error { return fmt.Errorf("redis: dial tcp: %w", storage.ErrUnavailable) }

func (f *flakySessions) GetAuthorizeCodeSession(ctx context.Context, code string, s fosite.Session) (fosite.Requester, error) {
	if f.down.Load() {
		return nil, f.err()
	}
	return f.Store.GetAuthorizeCodeSession(ctx, code, s)
}

func (f *flakySessions) GetAccessTokenSession(ctx context.Context, sig string, s fosite.Session) (fosite.Requester, error) {
	if f.down.Load() {
		return nil, f.err()
	}
	return f.Store.GetAccessTokenSession(ctx, sig, s)
}

func (f *flakySessions) GetRefreshTokenSession(ctx context.Context, sig string, s fosite.Session) (fosite.Requester, error) {
	if f.down.Load() {
		return nil, f.err()
	}
	return f.Store.GetRefreshTokenSession(ctx, sig, s)
}

func (f *flakySessions) Seen(ctx context.Context, ns, key string, ttl time.Duration) (bool, error) {
	if f.down.Load() {
		return false, f.err()
	}
	return f.Store.Seen(ctx, ns, key, ttl)
}

// testLogin is the test-only login step: it authenticates whoever the test
// says, immediately, by calling Provider.Complete.
type testLogin struct {
	p    *Provider
	mu   sync.Mutex
	auth func(LoginRequest) (Authentication, bool)
	last LoginRequest
}

func (l *testLogin) StartLogin(w http.ResponseWriter, r *http.Request, req LoginRequest) {
	l.mu.Lock()
	l.last = req
	auth := l.auth
	l.mu.Unlock()
	a, ok := auth(req)
	if !ok {
		page(w, http.StatusOK, "login pending")
		return
	}
	l.p.Complete(w, r, req.Pending, a)
}

func (l *testLogin) set(f func(LoginRequest) (Authentication, bool)) {
	l.mu.Lock()
	l.auth = f
	l.mu.Unlock()
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func loadKey(t testing.TB, name string) *signing.Key {
	t.Helper()
	b, err := os.ReadFile("testdata/keys/" + name + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	k, err := signing.ParsePKCS8PEM(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const (
	holderA = "holder-a"
	ecardA  = "ecard-a"
	rpCB    = "https://rp.example.com/cb"
	gmCB    = "https://gov.example.cn/cb"
)

var clientSecretKey = []byte("0123456789abcdef0123456789abcdef")

type env struct {
	t                   testing.TB
	srv                 *httptest.Server
	p                   *Provider
	clients             *fakeClients
	holders             *fakeHolders
	consent             *fakeConsent
	sessions            *flakySessions
	login               *testLogin
	keys                *signing.KeySet
	logins              *MemoryLoginIndex
	events              *fakeEvents
	bcl                 *bclReceiver
	now                 *clock // drives idp and the session store; fosite itself uses time.Now
	clientSM2, clientES *signing.Key
	secret              string // of the intl basic client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, now: &clock{t: time.Now()}}
	t0 := e.now.Now().Add(-time.Hour)
	var err error
	e.keys, err = signing.NewKeySet(signing.KeySetConfig{Now: e.now.Now},
		signing.Entry{Key: loadKey(t, "es256-a"), PublishAt: t0, ActivateAt: t0},
		signing.Entry{Key: loadKey(t, "rs256-a"), PublishAt: t0, ActivateAt: t0},
		signing.Entry{Key: loadKey(t, "sm2-a"), PublishAt: t0, ActivateAt: t0},
	)
	if err != nil {
		t.Fatal(err)
	}
	e.clientSM2 = loadKey(t, "client-sm2")
	e.clientES = loadKey(t, "client-es256")
	e.secret = "s3cr3t-of-the-intl-client-0123456789"
	h, _ := secret.Hash(clientSecretKey, e.secret)
	jwks := func(k *signing.Key) []byte {
		b, _ := json.Marshal(signing.JWKS{Keys: []signing.JWK{k.PublicJWK()}})
		return b
	}
	e.clients = &fakeClients{m: map[string]storage.Client{
		"rp-intl": {ID: "rp-intl", Name: "示例门户", Domain: "rp.example.com", Profile: storage.ProfileIntl,
			AuthMethod: storage.AuthClientSecretBasic, SecretHash: h, RedirectURIs: []string{rpCB},
			GrantTypes: []string{"authorization_code", "refresh_token"},
			Scopes:     []string{"openid", "profile", "essc.card", "offline_access"}},
		"rp-intl-jwt": {ID: "rp-intl-jwt", Name: "示例门户2", Profile: storage.ProfileIntl,
			AuthMethod: storage.AuthPrivateKeyJWT, JWKS: jwks(e.clientES), RedirectURIs: []string{rpCB},
			GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"},
			Scopes:     []string{"openid", "profile", "offline_access", "essc.admin"}},
		"rp-gm": {ID: "rp-gm", Name: "政务门户", Domain: "gov.example.cn", Profile: storage.ProfileGM,
			AuthMethod: storage.AuthPrivateKeyJWT, JWKS: jwks(e.clientSM2), RedirectURIs: []string{gmCB},
			GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"},
			Scopes:     []string{"openid", "profile", "essc.card", "essc.ssn", "offline_access", "essc.verify"}},
		"rp-gm-par": {ID: "rp-gm-par", Name: "PAR 门户", Profile: storage.ProfileGM, RequirePAR: true,
			AuthMethod: storage.AuthPrivateKeyJWT, JWKS: jwks(e.clientSM2), RedirectURIs: []string{gmCB},
			GrantTypes: []string{"authorization_code"}, Scopes: []string{"openid", "profile"}},
	}}
	e.holders = &fakeHolders{m: map[string]Identity{
		ecardA: {HolderID: holderA, ECardID: ecardA, Name: "张三", SSN: "411302199001011234", SSNMasked: "4113**********1234",
			CardStatus: "active", Region: "411302", Level: 1},
	}, inactive: map[string]bool{}}
	e.consent = &fakeConsent{m: map[string][]string{}}
	e.login = &testLogin{}
	e.logins = NewMemoryLoginIndex(e.now.Now)
	e.events = &fakeEvents{cursors: map[string]int64{}}
	e.bcl = &bclReceiver{}
	bclSrv := httptest.NewServer(e.bcl)
	t.Cleanup(bclSrv.Close)
	for _, id := range []string{"rp-gm", "rp-intl"} {
		c := e.clients.m[id]
		c.BackchannelLogoutURI = bclSrv.URL + "/bcl/" + id
		c.PostLogoutRedirectURIs = []string{"https://rp.example.com/bye"}
		e.clients.m[id] = c
	}
	e.login.set(func(r LoginRequest) (Authentication, bool) {
		return Authentication{HolderID: holderA, ECardID: ecardA, ACR: ACRPIN, AMR: []string{"hwk", "pin"},
			AuthTime: time.Now(), Consented: r.Scopes}, true
	})
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	var prov *Provider
	st, err := memory.New(memory.Config{
		Now:        e.now.Now,
		NewSession: NewSession,
		Subjects:   TokenSubjects,
		Lookup:     func(ctx context.Context, id string) (fosite.Client, error) { return prov.LookupClient(ctx, id) },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.sessions = &flakySessions{Store: st}
	prov, err = New(Config{
		BaseURL: e.srv.URL, Keys: e.keys, Clients: e.clients, Sessions: e.sessions, Holders: e.holders,
		Replay: e.sessions, Consent: e.consent, Login: e.login, Logins: e.logins, Events: e.events,
		GlobalSecret: []byte("global-secret-global-secret-0123"), PairwiseKey: []byte("pairwise-key-pairwise-key-012345"),
		ClientSecretKey: clientSecretKey, ClientCacheTTL: -1, Now: e.now.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.p = prov
	e.login.p = prov
	prov.Mount(mux)
	return e
}

// noRedirect is a browser that does not follow redirects.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// pkcePair returns a verifier and its S256 challenge.
func pkcePair() (string, string) {
	v := base64.RawURLEncoding.EncodeToString([]byte("a-very-long-code-verifier-with-enough-entropy-1234567890"))
	s := sha256.Sum256([]byte(v))
	return v, base64.RawURLEncoding.EncodeToString(s[:])
}

// authorizeParams returns a valid authorize request for client.
func authorizeParams(clientID, redirect, challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"scope": {"openid profile offline_access"}, "state": {"state-123456789"}, "nonce": {"nonce-123456789"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
}

// browse GETs the authorize endpoint and returns the response.
func (e *env) browse(path string, q url.Values) *http.Response {
	e.t.Helper()
	resp, err := noRedirect.Get(e.srv.URL + path + "?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// code runs the authorize step and returns the code from the redirect.
func (e *env) code(prefix string, q url.Values) string {
	e.t.Helper()
	resp := e.browse(prefix+"/oauth2/authorize", q)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || err != nil {
		e.t.Fatalf("authorize: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("error") != "" {
		e.t.Fatalf("authorize error: %s (%s)", loc.Query().Get("error"), loc.Query().Get("error_description"))
	}
	if q.Get("state") != "" && loc.Query().Get("state") != q.Get("state") {
		e.t.Fatalf("state %q, want %q", loc.Query().Get("state"), q.Get("state"))
	}
	return loc.Query().Get("code")
}

// assertion returns a private_key_jwt client assertion.
func (e *env) assertion(key *signing.Key, clientID, aud string, mutate func(map[string]any)) string {
	e.t.Helper()
	now := e.now.Now()
	cl := map[string]any{"iss": clientID, "sub": clientID, "aud": aud, "exp": now.Add(time.Minute).Unix(),
		"iat": now.Unix(), "jti": fmt.Sprintf("jti-%d-%d", now.UnixNano(), jtiSeq.Add(1))}
	if mutate != nil {
		mutate(cl)
	}
	tok, err := signing.SignClaims(key, "JWT", cl)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

var jtiSeq atomic.Int64

// post sends a form, optionally with basic auth, and decodes the JSON body.
func (e *env) post(path string, form url.Values, basic []string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil && len(b) > 0 {
		out["_raw"] = string(b)
	}
	return resp.StatusCode, out
}

// gmAuth returns the private_key_jwt form for the gm client.
func (e *env) gmAuth(clientID string) url.Values {
	return url.Values{"client_assertion_type": {assertionType},
		"client_assertion": {e.assertion(e.clientSM2, clientID, e.srv.URL+"/gm/oauth2/token", nil)}}
}

func merge(vs ...url.Values) url.Values {
	out := url.Values{}
	for _, v := range vs {
		for k, x := range v {
			out[k] = append(out[k], x...)
		}
	}
	return out
}

func errorCode(m map[string]any) string { s, _ := m["error"].(string); return s }

// fakeEvents is an in-memory outbox with durable-looking cursors.
type fakeEvents struct {
	mu       sync.Mutex
	evs      []storage.Event
	cursors  map[string]int64
	advances int // AdvanceCursor calls
	failOn   int // when > 0, the failOn-th AdvanceCursor call fails
}

func (f *fakeEvents) add(typ string, payload map[string]any) {
	b, _ := json.Marshal(payload)
	f.mu.Lock()
	f.evs = append(f.evs, storage.Event{Seq: int64(len(f.evs) + 1), Type: typ, Payload: b})
	f.mu.Unlock()
}

func (f *fakeEvents) Events(_ context.Context, after int64, limit int) ([]storage.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []storage.Event
	for _, e := range f.evs {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeEvents) Cursor(_ context.Context, name string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cursors[name], nil
}

func (f *fakeEvents) AdvanceCursor(_ context.Context, name string, seq int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advances++
	if f.advances == f.failOn {
		return errors.New("fake outbox: cursor write failed")
	}
	if seq > f.cursors[name] {
		f.cursors[name] = seq
	}
	return nil
}

// bclReceiver is a relying party's back-channel logout endpoint.
type bclReceiver struct {
	mu     sync.Mutex
	tokens map[string][]string // by path
}

func (b *bclReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	b.mu.Lock()
	if b.tokens == nil {
		b.tokens = map[string][]string{}
	}
	b.tokens[r.URL.Path] = append(b.tokens[r.URL.Path], r.PostForm.Get("logout_token"))
	b.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (b *bclReceiver) got(path string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.tokens[path]...)
}
