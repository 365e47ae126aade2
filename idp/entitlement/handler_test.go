package entitlement_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/storage"
)

// tokens is a small real Authenticator: bearer token → principal.
type tokens map[string]entitlement.Principal

func (tk tokens) Authenticate(r *http.Request) (entitlement.Principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return entitlement.Principal{}, entitlement.ErrUnauthenticated
	}
	if tok == "outage" {
		return entitlement.Principal{}, fmt.Errorf("introspect: %w", storage.ErrUnavailable)
	}
	p, ok := tk[tok]
	if !ok {
		return entitlement.Principal{}, entitlement.ErrUnauthenticated
	}
	return p, nil
}

func newServer(t *testing.T, e *env) *httptest.Server {
	h, err := entitlement.NewHandler(entitlement.HandlerConfig{Service: e.svc, Keys: e.keys, Logger: quiet, MaxBatchBody: 1 << 20,
		Auth: tokens{
			"gm":      {ClientID: "agency-gm", Scopes: []string{entitlement.ScopeManage}},
			"intl":    {ClientID: "agency-intl", Scopes: []string{entitlement.ScopeManage}},
			"noscope": {ClientID: "agency-gm", Scopes: []string{"openid"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestHandler(t *testing.T) {
	e := newEnv(t, "sqlite://"+t.TempDir()+"/r.db")
	srv := newServer(t, e)
	p := e.person(t)
	code, b := call(t, srv, "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"enterprise_pension","anchor":"2023-06-01"}`, p.SSN))
	if code != http.StatusCreated || b["status"] != "certified" || strings.Contains(fmt.Sprint(b), p.SSN) {
		t.Fatalf("register: %d %v", code, b)
	}
	id := b["id"].(string)
	if _, err := e.svc.Certify(context.Background(), e.certifyInput(t, p)); err != nil {
		t.Fatal(err)
	}
	code, att := call(t, srv, "gm", "GET", "/entitlement/v1/beneficiaries/"+id+"/attestation", "")
	if code != 200 {
		t.Fatalf("attestation %d", code)
	}
	code, ver := call(t, srv, "gm", "POST", "/entitlement/v1/attestations/verify", fmt.Sprintf(`{"attestation":%q}`, att["attestation"]))
	if code != 200 || ver["valid"] != true {
		t.Fatalf("verify own attestation: %d %v", code, ver)
	}
	code, ver = call(t, srv, "intl", "POST", "/entitlement/v1/attestations/verify", fmt.Sprintf(`{"attestation":%q}`, att["attestation"]))
	if code != 200 || ver["valid"] != false {
		t.Fatalf("verify another agency's attestation: %d %v", code, ver)
	}
	code, st := call(t, srv, "gm", "POST", "/entitlement/v1/status", fmt.Sprintf(`{"ssns":[%q]}`, p.SSN))
	if code != 200 || len(st["beneficiaries"].([]any)) != 1 {
		t.Fatalf("batch %d %v", code, st)
	}
	code, ev := call(t, srv, "gm", "GET", "/entitlement/v1/events?after=0&limit=10", "")
	if code != 200 || len(ev["events"].([]any)) != 2 || ev["cursor"].(float64) < 2 {
		t.Fatalf("events %d %v", code, ev)
	}
	code, ev = call(t, srv, "gm", "GET", fmt.Sprintf("/entitlement/v1/events?after=%d", int64(ev["cursor"].(float64))), "")
	if code != 200 || len(ev["events"].([]any)) != 0 {
		t.Fatalf("resumed feed %d %v", code, ev)
	}
	code, due := call(t, srv, "gm", "GET", "/entitlement/v1/due?month=2025-03", "")
	if code != 200 || len(due["beneficiaries"].([]any)) != 1 {
		t.Fatalf("due %d %v", code, due)
	}
	code, _ = call(t, srv, "gm", "PATCH", "/entitlement/v1/beneficiaries/"+id, `{"version":2,"benefit":"work_injury_annuity"}`)
	if code != 200 {
		t.Fatalf("patch %d", code)
	}
	if code, _ = call(t, srv, "gm", "POST", "/entitlement/v1/webhooks/redeliver", `{"from_seq":1}`); code != http.StatusAccepted {
		t.Fatalf("redeliver %d", code)
	}
	if code, _ = call(t, srv, "gm", "GET", "/entitlement/v1/webhooks/dead-letters", ""); code != 200 {
		t.Fatalf("dead letters %d", code)
	}

	big := `{"ssns":["` + strings.Repeat("1", 2<<20) + `"]}`
	tooMany := `{"ssns":[` + strings.TrimSuffix(strings.Repeat(fmt.Sprintf("%q,", p.SSN), entitlement.MaxBatch+1), ",") + `]}`
	for _, tc := range []struct {
		name, token, method, path, body string
		want                            int
		code                            string
	}{
		{"fail/no token", "", "GET", "/entitlement/v1/beneficiaries/" + id, "", 401, "invalid_token"},
		{"fail/unknown token", "nope", "GET", "/entitlement/v1/beneficiaries/" + id, "", 401, "invalid_token"},
		{"fail/missing scope", "noscope", "GET", "/entitlement/v1/beneficiaries/" + id, "", 403, "insufficient_scope"},
		{"fail/auth backend down", "outage", "GET", "/entitlement/v1/beneficiaries/" + id, "", 503, "temporarily_unavailable"},
		{"fail/other agency reads", "intl", "GET", "/entitlement/v1/beneficiaries/" + id, "", 404, "not_found"},
		{"fail/other agency changes", "intl", "PATCH", "/entitlement/v1/beneficiaries/" + id, `{"version":3,"benefit":"enterprise_pension"}`, 404, "not_found"},
		{"fail/other agency removes", "intl", "DELETE", "/entitlement/v1/beneficiaries/" + id, "", 404, "not_found"},
		{"fail/other agency attestation", "intl", "GET", "/entitlement/v1/beneficiaries/" + id + "/attestation", "", 404, "not_found"},
		{"fail/unknown id", "gm", "GET", "/entitlement/v1/beneficiaries/nope", "", 404, "not_found"},
		{"fail/bad ssn", "gm", "POST", "/entitlement/v1/beneficiaries", `{"ssn":"110101195001010010","benefit":"enterprise_pension","anchor":"2023-06-01"}`, 400, "invalid_request"},
		{"fail/unknown field", "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"enterprise_pension","anchor":"2023-06-01","x":1}`, p.SSN), 400, "invalid_request"},
		{"fail/trailing data", "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"enterprise_pension","anchor":"2023-06-01"} {}`, p.SSN), 400, "invalid_request"},
		{"fail/unknown benefit", "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"lottery","anchor":"2023-06-01"}`, p.SSN), 400, "invalid_request"},
		{"fail/future anchor", "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"work_injury_annuity","anchor":"2030-01-01"}`, p.SSN), 400, "invalid_request"},
		{"fail/bad anchor", "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"work_injury_annuity","anchor":"01/06/2023"}`, p.SSN), 400, "invalid_request"},
		{"fail/duplicate", "gm", "POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"work_injury_annuity","anchor":"2023-06-01"}`, p.SSN), 409, "already_registered"},
		{"fail/stale version", "gm", "PATCH", "/entitlement/v1/beneficiaries/" + id, `{"version":1,"benefit":"enterprise_pension"}`, 409, "version_conflict"},
		{"fail/patch without version", "gm", "PATCH", "/entitlement/v1/beneficiaries/" + id, `{"benefit":"enterprise_pension"}`, 400, "invalid_request"},
		{"fail/batch empty", "gm", "POST", "/entitlement/v1/status", `{"ssns":[]}`, 400, "invalid_request"},
		{"fail/batch bad ssn", "gm", "POST", "/entitlement/v1/status", `{"ssns":["x"]}`, 400, "invalid_request"},
		{"fail/batch not a list", "gm", "POST", "/entitlement/v1/status", `{"ssns":"x"}`, 400, "invalid_request"},
		{"fail/batch too many", "gm", "POST", "/entitlement/v1/status", tooMany, 400, "invalid_request"},
		{"fail/batch body too large", "gm", "POST", "/entitlement/v1/status", big, 413, "invalid_request"},
		{"fail/due without month", "gm", "GET", "/entitlement/v1/due", "", 400, "invalid_request"},
		{"fail/due bad month", "gm", "GET", "/entitlement/v1/due?month=2025-13", "", 400, "invalid_request"},
		{"fail/due bad limit", "gm", "GET", "/entitlement/v1/due?month=2025-03&limit=-1", "", 400, "invalid_request"},
		{"fail/events bad cursor", "gm", "GET", "/entitlement/v1/events?after=abc", "", 400, "invalid_request"},
		{"fail/events limit too large", "gm", "GET", "/entitlement/v1/events?limit=100000", "", 400, "invalid_request"},
		{"fail/redeliver zero", "gm", "POST", "/entitlement/v1/webhooks/redeliver", `{"from_seq":0}`, 400, "invalid_request"},
		{"fail/redeliver unknown field", "gm", "POST", "/entitlement/v1/webhooks/redeliver", `{"from":1}`, 400, "invalid_request"},
		{"fail/verify not json", "gm", "POST", "/entitlement/v1/attestations/verify", `attestation`, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, srv, tc.token, tc.method, tc.path, tc.body)
			if code != tc.want || body["error"] != tc.code {
				t.Fatalf("%s %s = %d %v; want %d %s", tc.method, tc.path, code, body, tc.want, tc.code)
			}
		})
	}
	t.Run("fail/verify garbage is not valid", func(t *testing.T) {
		code, body := call(t, srv, "gm", "POST", "/entitlement/v1/attestations/verify", `{"attestation":"a.b.c"}`)
		if code != 200 || body["valid"] != false {
			t.Fatalf("%d %v", code, body)
		}
	})
	t.Run("ok/remove then 404", func(t *testing.T) {
		if code, _ := call(t, srv, "gm", "DELETE", "/entitlement/v1/beneficiaries/"+id, ""); code != http.StatusNoContent {
			t.Fatalf("delete %d", code)
		}
		if code, _ := call(t, srv, "gm", "GET", "/entitlement/v1/beneficiaries/"+id, ""); code != 404 {
			t.Fatalf("get after delete %d", code)
		}
	})
	t.Run("fail/storage down is 503 on every endpoint", func(t *testing.T) {
		e.store.Close()
		for _, r := range [][3]string{
			{"GET", "/entitlement/v1/beneficiaries/" + id, ""},
			{"POST", "/entitlement/v1/beneficiaries", fmt.Sprintf(`{"ssn":%q,"benefit":"enterprise_pension","anchor":"2023-06-01"}`, e.ssn())},
			{"POST", "/entitlement/v1/status", fmt.Sprintf(`{"ssns":[%q]}`, p.SSN)},
			{"GET", "/entitlement/v1/due?month=2025-03", ""},
			{"GET", "/entitlement/v1/events", ""},
			{"GET", "/entitlement/v1/webhooks/dead-letters", ""},
			{"POST", "/entitlement/v1/webhooks/redeliver", `{"from_seq":1}`},
			{"DELETE", "/entitlement/v1/beneficiaries/" + id, ""},
		} {
			code, body := call(t, srv, "gm", r[0], r[1], r[2])
			if code != 503 || body["error"] != "temporarily_unavailable" {
				t.Fatalf("%s %s with storage down = %d %v", r[0], r[1], code, body)
			}
		}
	})
}

// FuzzRequests feeds arbitrary bodies and query strings to every endpoint:
// the handler must answer a fixed status and never 500 or panic.
func FuzzRequests(f *testing.F) {
	f.Add("POST", "/entitlement/v1/beneficiaries", `{"ssn":"11010119500101001X","benefit":"enterprise_pension","anchor":"2023-06-01"}`)
	f.Add("POST", "/entitlement/v1/status", `{"ssns":["11010119500101001X"]}`)
	f.Add("PATCH", "/entitlement/v1/beneficiaries/x", `{"version":1}`)
	f.Add("GET", "/entitlement/v1/due?month=2025-03&after=x&limit=5", ``)
	f.Add("GET", "/entitlement/v1/events?after=18446744073709551616", ``)
	f.Add("POST", "/entitlement/v1/attestations/verify", `{"attestation":"eyJ.eyJ.sig"}`)
	f.Add("POST", "/entitlement/v1/webhooks/redeliver", `{"from_seq":-1}`)
	e := newEnv(f, "sqlite://"+f.TempDir()+"/r.db")
	h, err := entitlement.NewHandler(entitlement.HandlerConfig{Service: e.svc, Keys: e.keys, Logger: quiet,
		Auth: tokens{"gm": {ClientID: "agency-gm", Scopes: []string{entitlement.ScopeManage}}}})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/entitlement/v1/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		switch method {
		case "GET", "POST", "PATCH", "DELETE":
		default:
			return
		}
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer gm")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q = %d %s", method, target, body, w.Code, w.Body)
		}
	})
}
