package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/signing"
)

// opFunc runs one operation for worker w, timing its steps on rec. An
// error is counted under errKind(err).
type opFunc func(ctx context.Context, w int, rec *recorder) error

// scenario is a named workload: setup (untimed) returns the operation.
type scenario struct {
	Name string
	// ItemsPerOp is how many business items one operation handles (the
	// batch size for entitlement-batch); 1 otherwise.
	ItemsPerOp func(e *env) int
	Setup      func(ctx context.Context, e *env) (opFunc, error)
}

// scenarios are every scenario, in report order.
var scenarioList = []string{"client_credentials_gm", "client_credentials_intl", "introspect", "qr-login", "qr-login-sse",
	"refresh", "entitlement-batch", "presentation-code", "http-floor"}

func lookupScenario(name string) (scenario, bool) {
	one := func(*env) int { return 1 }
	switch name {
	case "client_credentials_gm":
		return scenario{name, one, setupCCGM}, true
	case "client_credentials_intl":
		return scenario{name, one, setupCCIntl}, true
	case "introspect":
		return scenario{name, one, setupIntrospect}, true
	case "qr-login":
		return scenario{name, one, setupQRLogin}, true
	case "qr-login-sse":
		return scenario{name, one, setupQRLoginSSE}, true
	case "refresh":
		return scenario{name, one, setupRefresh}, true
	case "entitlement-batch":
		return scenario{name, func(e *env) int { return e.cfg.Batch }, setupEntitlement}, true
	case "presentation-code":
		return scenario{name, one, setupPresentation}, true
	case "http-floor":
		return scenario{name, one, setupHTTPFloor}, true
	}
	return scenario{}, false
}

// env is what scenarios share: the target, the admin token, the phones.
type env struct {
	cfg   Config
	base  string
	http  *http.Client // keep-alive, no redirects followed
	tr    *syncTransport
	admin string // bearer token with essc.admin.cards and essc.admin.clients
	run   string // run id, part of every client id and card number made

	mu     sync.Mutex
	phones chan *phone // lazily built pool
	rp     *relyingParty
	seq    atomic.Int64
}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// createClient registers a client through /admin/v1/clients and returns
// its secret (empty for private_key_jwt).
func (e *env) createClient(ctx context.Context, spec map[string]any) (string, error) {
	var out struct {
		Secret string `json:"client_secret"`
	}
	if err := apiJSON(ctx, e.http, http.MethodPost, e.base+"/admin/v1/clients", e.admin, spec, http.StatusCreated, &out); err != nil {
		return "", fmt.Errorf("esscbench: create client %v: %w", spec["client_id"], err)
	}
	return out.Secret, nil
}

func (e *env) clientID(kind string) string { return "bench-" + e.run + "-" + kind }

// jwtClient is a private_key_jwt client of the gm profile.
type jwtClient struct {
	id       string
	key      *signing.Key
	tokenURL string
}

func (e *env) newJWTClient(ctx context.Context, kind string, extra map[string]any) (*jwtClient, error) {
	k, err := signing.GenerateKey(signing.AlgSM2SM3)
	if err != nil {
		return nil, err
	}
	jwks, _ := json.Marshal(signing.JWKS{Keys: []signing.JWK{k.PublicJWK()}})
	spec := map[string]any{"client_id": e.clientID(kind), "name": "压测客户端 " + kind, "domain": "bench.localhost",
		"profile": "gm", "auth_method": "private_key_jwt", "jwks": json.RawMessage(jwks)}
	for k, v := range extra {
		spec[k] = v
	}
	if _, err := e.createClient(ctx, spec); err != nil {
		return nil, err
	}
	return &jwtClient{id: spec["client_id"].(string), key: k, tokenURL: e.base + "/gm/oauth2/token"}, nil
}

// assertion signs a fresh RFC 7523 client assertion (single-use jti).
func (c *jwtClient) assertion() (string, error) {
	now := time.Now()
	return signing.SignClaims(c.key, "", map[string]any{"iss": c.id, "sub": c.id, "aud": c.tokenURL,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": randHex(16)})
}

func (c *jwtClient) form(v url.Values) (url.Values, error) {
	a, err := c.assertion()
	if err != nil {
		return nil, err
	}
	v.Set("client_assertion_type", assertionType)
	v.Set("client_assertion", a)
	return v, nil
}

type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

func checkToken(t tokenAnswer) error {
	if t.AccessToken == "" || t.TokenType == "" {
		return failf("bad_response", "token answer without access_token/token_type")
	}
	return nil
}

// ---- client_credentials ----

func setupCCGM(ctx context.Context, e *env) (opFunc, error) {
	c, err := e.newJWTClient(ctx, "cc-gm", map[string]any{"grant_types": []string{"client_credentials"}, "scopes": []string{"essc.verify"}})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ int, rec *recorder) error {
		// The assertion is the client's cost: signed outside the timed step.
		form, err := c.form(url.Values{"grant_type": {"client_credentials"}, "scope": {"essc.verify"}})
		if err != nil {
			return err
		}
		var tok tokenAnswer
		return rec.step("token", func() error {
			if err := postForm(ctx, e.http, c.tokenURL, form, "", "", &tok); err != nil {
				return err
			}
			return checkToken(tok)
		})
	}, nil
}

// basicClient is an intl client_secret_basic client.
type basicClient struct{ id, secret string }

func (e *env) newBasicClient(ctx context.Context, kind string, scopes []string) (basicClient, error) {
	id := e.clientID(kind)
	sec, err := e.createClient(ctx, map[string]any{"client_id": id, "name": "压测客户端 " + kind, "domain": "bench.localhost",
		"profile": "intl", "auth_method": "client_secret_basic", "grant_types": []string{"client_credentials"}, "scopes": scopes})
	if err != nil {
		return basicClient{}, err
	}
	if sec == "" {
		return basicClient{}, errors.New("esscbench: client created without a secret")
	}
	return basicClient{id, sec}, nil
}

func (e *env) basicToken(ctx context.Context, c basicClient, scope string) (string, error) {
	var tok tokenAnswer
	if err := postForm(ctx, e.http, e.base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope}},
		c.id, c.secret, &tok); err != nil {
		return "", err
	}
	return tok.AccessToken, checkToken(tok)
}

func setupCCIntl(ctx context.Context, e *env) (opFunc, error) {
	c, err := e.newBasicClient(ctx, "cc-intl", []string{"essc.verify"})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ int, rec *recorder) error {
		return rec.step("token", func() error {
			_, err := e.basicToken(ctx, c, "essc.verify")
			return err
		})
	}, nil
}

// ---- introspect ----

func setupIntrospect(ctx context.Context, e *env) (opFunc, error) {
	c, err := e.newBasicClient(ctx, "introspect", []string{"essc.verify"})
	if err != nil {
		return nil, err
	}
	tokens := make([]string, e.cfg.Workers)
	for i := range tokens {
		if tokens[i], err = e.basicToken(ctx, c, "essc.verify"); err != nil {
			return nil, fmt.Errorf("esscbench: introspect setup: %w", err)
		}
	}
	return func(ctx context.Context, w int, rec *recorder) error {
		var out struct {
			Active bool `json:"active"`
		}
		return rec.step("introspect", func() error {
			if err := postForm(ctx, e.http, e.base+"/oauth2/introspect", url.Values{"token": {tokens[w]}}, c.id, c.secret, &out); err != nil {
				return err
			}
			if !out.Active {
				return failf("inactive", "own live token introspected inactive")
			}
			return nil
		})
	}, nil
}

// ---- the HTTP floor ----

// setupHTTPFloor measures what one request costs the server before any
// handler work: GET /healthz through esscd's whole middleware stack, over
// the same keep-alive connections. Its server CPU per operation times the
// requests of a QR login is the part of that login's CPU no handler can
// save (docs/PERFORMANCE.md compares it with the cryptographic floor).
func setupHTTPFloor(_ context.Context, e *env) (opFunc, error) {
	return func(ctx context.Context, _ int, rec *recorder) error {
		return rec.step("healthz", func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/healthz", nil)
			if err != nil {
				return err
			}
			return doJSON(e.http, req, http.StatusOK, nil)
		})
	}, nil
}

// ---- entitlement batch status ----

// benchSSN is a valid 18-character SSN unique to (run, i): region 410102,
// a birth date spread over 1940–1966, a 3-digit sequence, the check character.
func benchSSN(runSalt, i int) string {
	day := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, (runSalt*997+i/1000)%9700)
	p := fmt.Sprintf("410102%s%03d", day.Format("20060102"), i%1000)
	return p + string(card.SSNCheckChar(p))
}

func setupEntitlement(ctx context.Context, e *env) (opFunc, error) {
	c, err := e.newBasicClient(ctx, "agency", []string{"essc.entitlement.manage"})
	if err != nil {
		return nil, err
	}
	tok, err := e.basicToken(ctx, c, "essc.entitlement.manage")
	if err != nil {
		return nil, fmt.Errorf("esscbench: agency token: %w", err)
	}
	salt := rand.IntN(1000)
	ssns := make([]string, e.cfg.Beneficiaries)
	for i := range ssns {
		ssns[i] = benchSSN(salt, i)
	}
	anchor := time.Now().AddDate(0, -3, 0).Format(time.DateOnly)
	if err := parallel(ctx, min(e.cfg.Workers, 8), len(ssns), func(i int) error {
		return apiJSON(ctx, e.http, http.MethodPost, e.base+"/entitlement/v1/beneficiaries", tok,
			map[string]string{"ssn": ssns[i], "benefit": "enterprise_pension", "anchor": anchor}, http.StatusCreated, nil)
	}); err != nil {
		return nil, fmt.Errorf("esscbench: register beneficiaries: %w", err)
	}
	return func(ctx context.Context, _ int, rec *recorder) error {
		batch := make([]string, e.cfg.Batch)
		for i := range batch {
			batch[i] = ssns[rand.IntN(len(ssns))]
		}
		var out struct {
			Beneficiaries []json.RawMessage `json:"beneficiaries"`
			Missing       []string          `json:"missing"`
		}
		return rec.step("status", func() error {
			if err := apiJSON(ctx, e.http, http.MethodPost, e.base+"/entitlement/v1/status", tok,
				map[string]any{"ssns": batch}, http.StatusOK, &out); err != nil {
				return err
			}
			if len(out.Missing) != 0 || len(out.Beneficiaries) == 0 {
				return failf("bad_response", "batch status: %d found, %d missing", len(out.Beneficiaries), len(out.Missing))
			}
			return nil
		})
	}, nil
}

// parallel runs f(0..n-1) on k goroutines and returns the first error.
func parallel(ctx context.Context, k, n int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range max(k, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
