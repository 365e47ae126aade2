package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
	essql "github.com/essc-project/essc/storage/sql"
)

// tokenAuth is a small real Authenticator: bearer token → principal.
type tokenAuth map[string]admin.Principal

func (a tokenAuth) Authenticate(r *http.Request) (admin.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return admin.Principal{}, fmt.Errorf("%w: no bearer token", admin.ErrUnauthenticated)
	}
	if tok == "outage" {
		return admin.Principal{}, fmt.Errorf("introspect: %w", storage.ErrUnavailable)
	}
	p, ok := a[tok]
	if !ok {
		return admin.Principal{}, fmt.Errorf("%w: unknown token", admin.ErrUnauthenticated)
	}
	return p, nil
}

// plainHasher is a test SecretHasher (the server uses idp/secret.Hasher).
type plainHasher struct{}

func (plainHasher) Hash(_ context.Context, b []byte) ([]byte, error) {
	return append([]byte("h:"), b...), nil
}

var now = time.Date(2026, 6, 15, 2, 0, 0, 0, time.UTC)

type fixture struct {
	srv *httptest.Server
	reg *essql.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	secrets, err := essql.LoadOrCreateSecrets(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := essql.Open(context.Background(), essql.Config{URL: "sqlite://" + filepath.Join(t.TempDir(), "r.db"), Secrets: secrets,
		Logger: log, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	svc, err := card.New(card.Config{Registry: reg, PINKey: secrets.PINKey, Now: func() time.Time { return now }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := admin.NewClients(reg, plainHasher{}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	h, err := admin.New(admin.Config{Cards: svc, Clients: clients, Audit: reg, Logger: log, MaxBody: 4096,
		Auth: tokenAuth{
			"all":   {ClientID: "outlet-1", Scopes: []string{admin.ScopeCards, admin.ScopeClients, admin.ScopeAudit}},
			"cards": {ClientID: "outlet-2", Scopes: []string{admin.ScopeCards}},
			"none":  {ClientID: "rp", Scopes: []string{"openid"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, reg: reg}
}

func (f *fixture) do(t *testing.T, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatal("no request id")
	}
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: non-JSON answer %q", method, path, raw)
	}
	if resp.StatusCode >= 400 {
		if _, ok := out["error"].(string); !ok {
			t.Fatalf("error body without error: %s", raw)
		}
		if _, ok := out["error_description"].(string); !ok {
			t.Fatalf("error body without error_description: %s", raw)
		}
		for _, leak := range []string{"sql", "sqlite", "storage:", "card:", "version conflict"} {
			if strings.Contains(strings.ToLower(string(raw)), leak) {
				t.Fatalf("internal error text leaked: %s", raw)
			}
		}
	}
	return resp.StatusCode, out
}

func ssnFor(birth, seq string) string {
	s := "411302" + birth + seq
	return s + string(card.SSNCheckChar(s))
}

func TestCardsAPI(t *testing.T) {
	f := newFixture(t)
	alice := ssnFor("19560314", "121")
	issue := fmt.Sprintf(`{"ssn":%q,"name":"张秀英","number":"A00000001","region":"411302"}`, alice)
	st, body := f.do(t, "cards", "POST", "/admin/v1/cards", issue)
	if st != 201 || body["status"] != "active" || body["ssn_masked"] != card.MaskSSN(alice) || body["version"].(float64) != 1 {
		t.Fatalf("issue: %d %v", st, body)
	}
	if strings.Contains(fmt.Sprint(body), alice) {
		t.Fatal("full SSN in answer")
	}
	big := `{"ssn":"` + strings.Repeat("1", 5000) + `"}`
	tests := []struct {
		name, token, method, path, body string
		status                          int
		errCode                         string
	}{
		{"ok/get", "cards", "GET", "/admin/v1/cards/a00000001", "", 200, ""},
		{"ok/report-loss-with-version", "cards", "POST", "/admin/v1/cards/A00000001/report-loss", `{"version":1}`, 200, ""},
		{"fail/stale-version-conflict", "cards", "POST", "/admin/v1/cards/A00000001/unfreeze", `{"version":1}`, 409, "conflict"},
		{"ok/unfreeze-empty-body", "cards", "POST", "/admin/v1/cards/A00000001/unfreeze", ``, 200, ""},
		{"fail/unfreeze-active-invalid-state", "cards", "POST", "/admin/v1/cards/A00000001/unfreeze", `{}`, 409, "invalid_state"},
		{"ok/unlock-pin", "cards", "POST", "/admin/v1/cards/A00000001/unlock-pin", `{}`, 200, ""},
		{"ok/reset-pin", "cards", "POST", "/admin/v1/cards/A00000001/reset-pin", `{}`, 200, ""},
		{"fail/issue-duplicate", "cards", "POST", "/admin/v1/cards", issue, 409, "already_exists"},
		{"fail/issue-bad-ssn", "cards", "POST", "/admin/v1/cards", `{"ssn":"411302195603141210","name":"x","number":"A00000002","region":"411302"}`, 400, "invalid_request"},
		{"fail/issue-bad-number", "cards", "POST", "/admin/v1/cards", fmt.Sprintf(`{"ssn":%q,"name":"x","number":"A-2","region":"411302"}`, ssnFor("19800101", "111")), 400, "invalid_request"},
		{"fail/issue-bad-date", "cards", "POST", "/admin/v1/cards", fmt.Sprintf(`{"ssn":%q,"name":"x","number":"A00000003","region":"411302","issued_on":"yesterday"}`, ssnFor("19800101", "111")), 400, "invalid_request"},
		{"fail/issue-name-mismatch", "cards", "POST", "/admin/v1/cards", fmt.Sprintf(`{"ssn":%q,"name":"王五","number":"A00000004","region":"411302"}`, alice), 422, "identity_mismatch"},
		{"fail/bad-json", "cards", "POST", "/admin/v1/cards", `{"ssn":`, 400, "invalid_request"},
		{"fail/two-objects", "cards", "POST", "/admin/v1/cards", issue + issue, 400, "invalid_request"},
		{"fail/unknown-field", "cards", "POST", "/admin/v1/cards", `{"ssn":"x","pin":"123456"}`, 400, "invalid_request"},
		{"fail/unknown-field-action", "cards", "POST", "/admin/v1/cards/A00000001/report-loss", `{"force":true}`, 400, "invalid_request"},
		{"fail/field-of-other-action", "cards", "POST", "/admin/v1/cards/A00000001/report-loss", `{"reason":"death"}`, 400, "invalid_request"},
		{"fail/oversize", "cards", "POST", "/admin/v1/cards", big, 413, "invalid_request"},
		{"fail/no-token", "", "GET", "/admin/v1/cards/A00000001", "", 401, "invalid_token"},
		{"fail/unknown-token", "nope", "GET", "/admin/v1/cards/A00000001", "", 401, "invalid_token"},
		{"fail/missing-scope", "none", "GET", "/admin/v1/cards/A00000001", "", 403, "insufficient_scope"},
		{"fail/auth-outage", "outage", "GET", "/admin/v1/cards/A00000001", "", 503, "temporarily_unavailable"},
		{"fail/not-found", "cards", "GET", "/admin/v1/cards/Z99999999", "", 404, "not_found"},
		{"fail/not-found-action", "cards", "POST", "/admin/v1/cards/Z99999999/report-loss", "", 404, "not_found"},
		{"fail/malformed-number", "cards", "GET", "/admin/v1/cards/x", "", 400, "invalid_request"},
		{"fail/unknown-action", "cards", "POST", "/admin/v1/cards/A00000001/explode", "", 404, "not_found"},
		{"fail/cancel-needs-reason", "cards", "POST", "/admin/v1/cards/A00000001/cancel", `{}`, 400, "invalid_request"},
		{"fail/cancel-empty-body", "cards", "POST", "/admin/v1/cards/A00000001/cancel", ``, 400, "invalid_request"},
		{"fail/cancel-bad-reason", "cards", "POST", "/admin/v1/cards/A00000001/cancel", `{"reason":"bored"}`, 400, "invalid_request"},
		{"fail/replace-bad-new-number", "cards", "POST", "/admin/v1/cards/A00000001/replace", `{"new_number":"x"}`, 400, "invalid_request"},
		{"ok/replace", "cards", "POST", "/admin/v1/cards/A00000001/replace", `{"new_number":"A00000009"}`, 201, ""},
		{"fail/cancel-replaced", "cards", "POST", "/admin/v1/cards/A00000001/cancel", `{"reason":"death"}`, 409, "invalid_state"},
		{"ok/cancel-new", "cards", "POST", "/admin/v1/cards/A00000009/cancel", `{"reason":"death"}`, 200, ""},
		{"fail/unlock-cancelled", "cards", "POST", "/admin/v1/cards/A00000009/unlock-pin", `{}`, 409, "invalid_state"},
		{"fail/reset-cancelled", "cards", "POST", "/admin/v1/cards/A00000009/reset-pin", `{}`, 409, "invalid_state"},
		{"fail/clients-with-card-scope", "cards", "GET", "/admin/v1/clients", "", 403, "insufficient_scope"},
		{"fail/audit-with-card-scope", "cards", "POST", "/admin/v1/audit/verify", "", 403, "insufficient_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := f.do(t, tt.token, tt.method, tt.path, tt.body)
			if st != tt.status || (tt.errCode != "" && body["error"] != tt.errCode) {
				t.Fatalf("= %d %v, want %d %s", st, body, tt.status, tt.errCode)
			}
		})
	}
	t.Run("ok/audit-lists-and-verifies", func(t *testing.T) {
		st, body := f.do(t, "all", "GET", "/admin/v1/audit?limit=1000", "")
		if st != 200 {
			t.Fatal(st, body)
		}
		es := body["entries"].([]any)
		if len(es) != 7 || es[0].(map[string]any)["actor"] != "outlet-2" {
			t.Fatalf("entries %v", es)
		}
		st, body = f.do(t, "all", "POST", "/admin/v1/audit/verify", "")
		if st != 200 || body["ok"] != true {
			t.Fatalf("verify %d %v", st, body)
		}
	})
	t.Run("fail/audit-bad-limit", func(t *testing.T) {
		if st, _ := f.do(t, "all", "GET", "/admin/v1/audit?limit=-1", ""); st != 400 {
			t.Fatal(st)
		}
		if st, _ := f.do(t, "all", "GET", "/admin/v1/audit?after=x", ""); st != 400 {
			t.Fatal(st)
		}
	})
	t.Run("fail/audit-tampered", func(t *testing.T) {
		if _, err := f.reg.DB().Exec(f.reg.Rebind(`UPDATE audit_log SET actor = 'mallory' WHERE seq = 2`)); err != nil {
			t.Skipf("audit table layout differs: %v", err)
		}
		st, body := f.do(t, "all", "POST", "/admin/v1/audit/verify", "")
		if st != 200 || body["ok"] != false || body["first_bad"].(float64) != 2 {
			t.Fatalf("verify %d %v", st, body)
		}
	})
}

func TestClientsAPI(t *testing.T) {
	f := newFixture(t)
	jwks := `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
	portal := `{"client_id":"portal","name":"省人社网上服务平台","domain":"rs.example.gov.cn","profile":"gm","auth_method":"private_key_jwt",
		"jwks":` + jwks + `,"redirect_uris":["https://rs.example.gov.cn/cb"],"scopes":["openid","profile"],"purposes":["portal_login"]}`
	st, body := f.do(t, "all", "POST", "/admin/v1/clients", portal)
	if st != 201 || body["client_secret"] != nil || body["sector"] != "rs.example.gov.cn" {
		t.Fatalf("create: %d %v", st, body)
	}
	st, body = f.do(t, "all", "POST", "/admin/v1/clients", `{"client_id":"bank-app","name":"Bank","profile":"intl","auth_method":"client_secret_basic","grant_types":["client_credentials"]}`)
	if st != 201 || len(body["client_secret"].(string)) < 40 {
		t.Fatalf("secret client: %d %v", st, body)
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		errCode                  string
	}{
		{"ok/get", "GET", "/admin/v1/clients/portal", "", 200, ""},
		{"ok/list", "GET", "/admin/v1/clients?limit=10", "", 200, ""},
		{"fail/duplicate", "POST", "/admin/v1/clients", portal, 409, "already_exists"},
		{"fail/gm-with-secret", "POST", "/admin/v1/clients", `{"client_id":"x1x","name":"x","profile":"gm","auth_method":"client_secret_basic","grant_types":["client_credentials"]}`, 400, "invalid_client_metadata"},
		{"fail/http-redirect", "POST", "/admin/v1/clients", `{"client_id":"x2x","name":"x","profile":"intl","auth_method":"private_key_jwt","jwks":` + jwks + `,"redirect_uris":["http://evil.example/cb"]}`, 400, "invalid_client_metadata"},
		{"fail/fragment-redirect", "POST", "/admin/v1/clients", `{"client_id":"x3x","name":"x","profile":"intl","auth_method":"private_key_jwt","jwks":` + jwks + `,"redirect_uris":["https://a.example/cb#x"]}`, 400, "invalid_client_metadata"},
		{"fail/code-without-redirect", "POST", "/admin/v1/clients", `{"client_id":"x4x","name":"x","profile":"intl","auth_method":"private_key_jwt","jwks":` + jwks + `}`, 400, "invalid_client_metadata"},
		{"fail/jwt-without-jwks", "POST", "/admin/v1/clients", `{"client_id":"x5x","name":"x","profile":"intl","auth_method":"private_key_jwt","grant_types":["client_credentials"]}`, 400, "invalid_client_metadata"},
		{"fail/implicit", "POST", "/admin/v1/clients", `{"client_id":"x6x","name":"x","profile":"intl","auth_method":"client_secret_basic","grant_types":["implicit"]}`, 400, "invalid_client_metadata"},
		{"fail/bad-id", "POST", "/admin/v1/clients", `{"client_id":"a b","name":"x","profile":"intl","auth_method":"client_secret_basic","grant_types":["client_credentials"]}`, 400, "invalid_client_metadata"},
		{"fail/http-webhook", "POST", "/admin/v1/clients", `{"client_id":"x7x","name":"x","profile":"intl","auth_method":"client_secret_basic","grant_types":["client_credentials"],"webhook_url":"http://a.example/h"}`, 400, "invalid_client_metadata"},
		{"fail/unknown-field", "POST", "/admin/v1/clients", `{"client_id":"x8x","secret":"mine"}`, 400, "invalid_request"},
		{"fail/bad-json", "POST", "/admin/v1/clients", `[`, 400, "invalid_request"},
		{"fail/oversize", "POST", "/admin/v1/clients", `{"name":"` + strings.Repeat("x", 5000) + `"}`, 413, "invalid_request"},
		{"fail/not-found", "GET", "/admin/v1/clients/ghost", "", 404, "not_found"},
		{"fail/disable-not-found", "POST", "/admin/v1/clients/ghost/disable", "", 404, "not_found"},
		{"fail/disable-stale", "POST", "/admin/v1/clients/portal/disable", `{"version":7}`, 409, "conflict"},
		{"ok/disable", "POST", "/admin/v1/clients/portal/disable", `{"version":1}`, 200, ""},
		{"ok/disable-idempotent", "POST", "/admin/v1/clients/portal/disable", ``, 200, ""},
		{"fail/list-bad-limit", "GET", "/admin/v1/clients?limit=0", "", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := f.do(t, "all", tt.method, tt.path, tt.body)
			if st != tt.status || (tt.errCode != "" && body["error"] != tt.errCode) {
				t.Fatalf("= %d %v, want %d %s", st, body, tt.status, tt.errCode)
			}
		})
	}
	t.Run("ok/disabled-visible-and-event", func(t *testing.T) {
		_, body := f.do(t, "all", "GET", "/admin/v1/clients/portal", "")
		if body["disabled"] != true {
			t.Fatalf("%v", body)
		}
		evs, _ := f.reg.Events(context.Background(), 0, 100)
		if len(evs) != 1 || evs[0].Type != admin.EventClientDisabled {
			t.Fatalf("events %v", evs)
		}
	})
	t.Run("fail/missing-scope", func(t *testing.T) {
		if st, _ := f.do(t, "cards", "POST", "/admin/v1/clients", portal); st != 403 {
			t.Fatal(st)
		}
	})
}

func TestUnavailable(t *testing.T) {
	f := newFixture(t)
	f.reg.Close()
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/admin/v1/cards/A00000001", ""},
		{"POST", "/admin/v1/cards/A00000001/report-loss", ""},
		{"POST", "/admin/v1/cards", fmt.Sprintf(`{"ssn":%q,"name":"x","number":"A00000001","region":"411302"}`, ssnFor("19800101", "111"))},
		{"GET", "/admin/v1/clients/portal", ""},
		{"GET", "/admin/v1/clients", ""},
		{"POST", "/admin/v1/clients/portal/disable", ""},
		{"GET", "/admin/v1/audit", ""},
		{"POST", "/admin/v1/audit/verify", ""},
	} {
		t.Run("fail/"+c.method+c.path, func(t *testing.T) {
			st, body := f.do(t, "all", c.method, c.path, c.body)
			if st != 503 || body["error"] != "temporarily_unavailable" {
				t.Fatalf("= %d %v", st, body)
			}
		})
	}
}

func TestClientSpecValidateReportsAll(t *testing.T) {
	_, err := admin.ClientSpec{ID: "a", Profile: "x", AuthMethod: "none"}.Validate()
	if !errors.Is(err, admin.ErrInvalidClient) {
		t.Fatal(err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n < 4 {
		t.Fatalf("only %d problems reported: %v", n, err)
	}
}

func TestClientSpecIDTokenAlg(t *testing.T) {
	base := admin.ClientSpec{ID: "portal", Name: "门户", Domain: "portal.example.gov.cn", Profile: "intl",
		AuthMethod: "client_secret_basic", RedirectURIs: []string{"https://portal.example.gov.cn/cb"}, Scopes: []string{"openid"}}
	for _, tc := range []struct {
		name, profile, alg string
		ok                 bool
	}{
		{"ok/intl-default", "intl", "", true},
		{"ok/intl-es256", "intl", "ES256", true},
		{"ok/intl-rs256", "intl", "RS256", true},
		{"fail/intl-sm2", "intl", "SM2SM3", false},
		{"fail/intl-none", "intl", "none", false},
		{"fail/intl-hs256", "intl", "HS256", false},
		{"ok/gm-sm2", "gm", "SM2SM3", true},
		{"fail/gm-rs256", "gm", "RS256", false},
		{"fail/gm-es256", "gm", "ES256", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			spec.Profile, spec.IDTokenAlg = tc.profile, tc.alg
			if tc.profile == "gm" {
				spec.AuthMethod = "private_key_jwt"
				spec.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
			}
			c, err := spec.Validate()
			if tc.ok && (err != nil || c.IDTokenAlg != tc.alg) {
				t.Fatalf("%+v %v", c, err)
			}
			if !tc.ok && (!errors.Is(err, admin.ErrInvalidClient) || !strings.Contains(err.Error(), "id_token_signed_response_alg")) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
}
