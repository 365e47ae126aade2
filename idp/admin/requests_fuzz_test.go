package admin_test

import (
	"context"
	"encoding/json"
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
	essql "github.com/essc-project/essc/storage/sql"
)

// FuzzAdminRequests sends arbitrary bodies and paths to the admin API over
// a real card service and registry (SQLite): issuing cards, lifecycle
// actions, client registration and disabling, audit verification. Never a
// 5xx, never a non-JSON answer, every refusal a JSON error with a fixed
// description that leaks no internals — and the audit chain still verifies
// afterwards (nothing half-written).
func FuzzAdminRequests(f *testing.F) {
	f.Add("POST", "/admin/v1/cards", `{"ssn":"`+ssnFor("19560314", "121")+`","name":"张秀英","number":"A00000001","region":"411302"}`)
	f.Add("POST", "/admin/v1/cards", `{"ssn":"`+ssnFor("19560314", "121")+`","name":"张秀英","number":"A00000001","region":"411302","issued_on":"2026-13-01"}`)
	f.Add("POST", "/admin/v1/cards", `{"ssn":1,"name":null}`)
	f.Add("POST", "/admin/v1/cards/A00000001/report-loss", `{"version":1}`)
	f.Add("POST", "/admin/v1/cards/A00000001/cancel", `{"reason":"death","version":2}`)
	f.Add("POST", "/admin/v1/cards/A00000001/replace", `{"new_number":"A00000002","region":"411302"}`)
	f.Add("POST", "/admin/v1/cards/A00000001/unlock-pin", ``)
	f.Add("POST", "/admin/v1/clients", `{"client_id":"portal","name":"门户","domain":"portal.example.gov.cn","profile":"gm","auth_method":"private_key_jwt","jwks":{"keys":[]},"redirect_uris":["https://portal.example.gov.cn/cb"]}`)
	f.Add("POST", "/admin/v1/clients", `{"client_id":"bank","name":"银行","domain":"bank.example.com","profile":"intl","auth_method":"client_secret_basic","grant_types":["client_credentials"],"scopes":["essc.verify"]}`)
	f.Add("POST", "/admin/v1/clients/bank/disable", `{"version":1}`)
	f.Add("POST", "/admin/v1/audit/verify", `{}`)
	f.Add("GET", "/admin/v1/audit?after=-1&limit=100000", ``)
	f.Add("GET", "/admin/v1/cards/A00000001", ``)
	secrets, err := essql.LoadOrCreateSecrets(filepath.Join(f.TempDir(), "keys"))
	if err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clock := func() time.Time { return now }
	reg, err := essql.Open(context.Background(), essql.Config{URL: "sqlite://" + filepath.Join(f.TempDir(), "r.db"), Secrets: secrets,
		Logger: log, Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { reg.Close() })
	svc, err := card.New(card.Config{Registry: reg, PINKey: secrets.PINKey, Now: clock, Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	clients, err := admin.NewClients(reg, plainHasher{}, clock)
	if err != nil {
		f.Fatal(err)
	}
	h, err := admin.New(admin.Config{Cards: svc, Clients: clients, Audit: reg, Logger: log, MaxBody: 4096,
		Auth: tokenAuth{"all": {ClientID: "outlet-1", Scopes: []string{admin.ScopeCards, admin.ScopeClients, admin.ScopeAudit}}}})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if (method != "GET" && method != "POST") || !strings.HasPrefix(target, "/admin/v1/") || strings.ContainsAny(target, " \r\n\t#%") {
			return
		}
		req, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer all")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code == http.StatusNotFound && w.Body.String() == "404 page not found\n" {
			return // no such route (the mux's own answer)
		}
		if w.Code == http.StatusMethodNotAllowed || (w.Code == http.StatusMovedPermanently || w.Code == http.StatusTemporaryRedirect ||
			w.Code == http.StatusPermanentRedirect) && w.Header().Get("Location") != "" {
			return // the mux's own answers: no such method, or a path to clean ("/admin/v1/.")
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s %q → %d: not a JSON object: %q", method, target, body, w.Code, w.Body)
		}
		if w.Code >= 500 {
			t.Fatalf("%s %s %q → %d %v", method, target, body, w.Code, out)
		}
		if w.Code >= 400 {
			e, _ := out["error"].(string)
			d, _ := out["error_description"].(string)
			if e == "" || d == "" {
				t.Fatalf("%d without error/error_description: %v", w.Code, out)
			}
			for _, leak := range []string{"sql", "sqlite", "storage:", "card:", "panic", "goroutine"} {
				if strings.Contains(strings.ToLower(d), leak) {
					t.Fatalf("internal error text leaked: %q", d)
				}
			}
		}
		if rep, err := reg.VerifyAudit(ctx); err != nil || !rep.OK {
			t.Fatalf("audit chain broken after %s %s %q: %+v %v", method, target, body, rep, err)
		}
	})
}
