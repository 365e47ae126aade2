package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/essc-project/essc/idp/card"
)

// ctlEnv is a fresh SQLite registry and key directory for CLI tests.
type ctlEnv struct{ db, keys string }

func newCtlEnv(t *testing.T) ctlEnv {
	dir := t.TempDir()
	return ctlEnv{db: "sqlite://" + filepath.Join(dir, "registry.db"), keys: filepath.Join(dir, "keys")}
}

// run calls dispatch in-process with the env's --database/--keys appended.
func (e ctlEnv) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append(append([]string{}, args...), "--database", e.db, "--keys", e.keys, "--operator", "test-op")
	code := dispatch(full, &out, &errOut)
	return code, out.String(), errOut.String()
}

func testSSN(birth, seq string) string {
	s := "411302" + birth + seq
	return s + string(card.SSNCheckChar(s))
}

func TestCardsCommands(t *testing.T) {
	e := newCtlEnv(t)
	alice := testSSN("19560314", "121")
	code, out, errOut := e.run(t, "cards", "add", "--ssn", alice, "--name", "张秀英", "--number", "A00000001", "--region", "411302")
	if code != 0 {
		t.Fatalf("add: %d %s", code, errOut)
	}
	if strings.Contains(out, alice) || !strings.Contains(out, card.MaskSSN(alice)) {
		t.Fatalf("add output must show only the masked SSN: %s", out)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"ok/show", []string{"cards", "show", "A00000001"}, 0, `"status": "active"`, ""},
		{"ok/report-loss-flags-after", []string{"cards", "report-loss", "A00000001", "--version", "1"}, 0, `"status": "lost"`, ""},
		{"fail/stale-version", []string{"cards", "unfreeze", "A00000001", "--version", "1"}, 1, "", "changed by someone else"},
		{"ok/unfreeze", []string{"cards", "unfreeze", "A00000001"}, 0, `"status": "active"`, ""},
		{"fail/unfreeze-active", []string{"cards", "unfreeze", "A00000001"}, 1, "", "not allowed"},
		{"ok/unlock-pin", []string{"cards", "unlock-pin", "A00000001"}, 0, `"locked": false`, ""},
		{"ok/reset-pin", []string{"cards", "reset-pin", "A00000001"}, 0, `"must_change": true`, ""},
		{"fail/add-duplicate", []string{"cards", "add", "--ssn", alice, "--name", "张秀英", "--number", "A00000001", "--region", "411302"}, 1, "", "exists"},
		{"fail/add-bad-ssn", []string{"cards", "add", "--ssn", "123", "--name", "x", "--number", "A00000002", "--region", "411302"}, 1, "", "social security number"},
		{"fail/add-bad-date", []string{"cards", "add", "--ssn", alice, "--name", "x", "--number", "A00000002", "--region", "411302", "--issued-on", "May"}, 1, "", "YYYY-MM-DD"},
		{"fail/show-missing-arg", []string{"cards", "show"}, 1, "", "takes 1 argument"},
		{"fail/show-not-found", []string{"cards", "show", "Z99999999"}, 1, "", "not found"},
		{"fail/unknown-sub", []string{"cards", "fly"}, 1, "", "unknown subcommand"},
		{"fail/unknown-flag", []string{"cards", "show", "A00000001", "--nope"}, 1, "", "flag provided but not defined"},
		{"fail/cancel-no-reason", []string{"cards", "cancel", "A00000001"}, 1, "", "cancel reason"},
		{"ok/replace", []string{"cards", "replace", "A00000001", "--new-number", "A00000002"}, 0, `"number": "A00000002"`, ""},
		{"fail/replace-replaced", []string{"cards", "replace", "A00000001", "--new-number", "A00000003"}, 1, "", "not allowed"},
		{"ok/cancel", []string{"cards", "cancel", "A00000002", "--reason", "emigration"}, 0, `"cancel_reason": "emigration"`, ""},
		{"fail/unfreeze-cancelled", []string{"cards", "unfreeze", "A00000002"}, 1, "", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := e.run(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d (want %d)\nstdout %s\nstderr %s", code, tt.code, out, errOut)
			}
		})
	}
	t.Run("ok/audit-verify-and-list", func(t *testing.T) {
		code, out, errOut := e.run(t, "audit", "verify")
		if code != 0 || !strings.Contains(out, "audit log OK: 7 entries") {
			t.Fatalf("%d %s %s", code, out, errOut)
		}
		code, out, _ = e.run(t, "audit", "list", "--limit", "2")
		if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "test-op") || !strings.Contains(out, "card.issue") {
			t.Fatalf("%d %s", code, out)
		}
	})
	t.Run("fail/audit-usage", func(t *testing.T) {
		if code, _, _ := e.run(t, "audit"); code != 1 {
			t.Fatal(code)
		}
		if code, _, _ := e.run(t, "audit", "list", "--limit", "0"); code != 1 {
			t.Fatal(code)
		}
	})
	t.Run("fail/audit-verify-detects-tampering", func(t *testing.T) {
		reg, err := (&regFlags{database: e.db, keys: e.keys}).open(t.Context(), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = reg.store.DB().Exec(reg.store.Rebind(`DELETE FROM audit_log WHERE seq = 3`))
		reg.store.Close()
		if err != nil {
			t.Fatal(err)
		}
		code, out, _ := e.run(t, "audit", "verify")
		if code != 1 || !strings.Contains(out, "BROKEN at entry") {
			t.Fatalf("%d %s", code, out)
		}
	})
}

func TestClientsCommands(t *testing.T) {
	e := newCtlEnv(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, jwks, `{"keys":[{"kty":"EC","crv":"SM2","x":"AA","y":"BB"}]}`)
	code, out, errOut := e.run(t, "clients", "add", "--id", "portal", "--name", "省人社网上服务平台", "--profile", "gm",
		"--jwks", jwks, "--redirect-uri", "https://rs.example.gov.cn/cb", "--scope", "openid,profile", "--purpose", "portal_login")
	if code != 0 {
		t.Fatalf("add: %s", errOut)
	}
	var c map[string]any
	if err := json.Unmarshal([]byte(out), &c); err != nil || c["client_id"] != "portal" || c["client_secret"] != nil {
		t.Fatalf("%v %s", err, out)
	}
	code, out, errOut = e.run(t, "clients", "add", "--id", "agency", "--name", "Pension agency", "--auth-method", "client_secret_basic",
		"--grant-type", "client_credentials", "--scope", "essc.entitlement.manage")
	if code != 0 {
		t.Fatalf("add secret client: %s", errOut)
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || len(c["client_secret"].(string)) < 40 || !strings.Contains(errOut, "shown once") {
		t.Fatalf("%v %s", err, out)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"ok/show", []string{"clients", "show", "portal"}, 0, `"profile": "gm"`, ""},
		{"ok/list", []string{"clients", "list"}, 0, "agency\tintl\tclient_secret_basic\tenabled", ""},
		{"fail/duplicate", []string{"clients", "add", "--id", "portal", "--name", "x", "--auth-method", "client_secret_basic", "--grant-type", "client_credentials"}, 1, "", "exists"},
		{"fail/invalid-reports-all", []string{"clients", "add", "--id", "x", "--profile", "gm", "--auth-method", "client_secret_basic"}, 1, "", "gm clients must use private_key_jwt"},
		{"fail/jwks-missing-file", []string{"clients", "add", "--id", "xyz", "--name", "x", "--jwks", "/nonexistent"}, 1, "", "no such file"},
		{"fail/show-not-found", []string{"clients", "show", "ghost"}, 1, "", "not found"},
		{"fail/list-limit", []string{"clients", "list", "--limit", "0"}, 1, "", "--limit"},
		{"fail/disable-stale", []string{"clients", "disable", "portal", "--version", "9"}, 1, "", "changed by someone else"},
		{"ok/disable", []string{"clients", "disable", "portal"}, 0, `"disabled": true`, ""},
		{"ok/list-shows-disabled", []string{"clients", "list"}, 0, "portal\tgm\tprivate_key_jwt\tdisabled", ""},
		{"fail/no-sub", []string{"clients"}, 1, "", "unknown subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := e.run(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d (want %d)\nstdout %s\nstderr %s", code, tt.code, out, errOut)
			}
		})
	}
}
