package admin

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/essc-project/essc/storage"
)

// FuzzDecode feeds arbitrary bodies to the strict JSON decoder of every
// endpoint: it never panics, and it accepts only one object with known fields.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"version":1}`, `{"version":1}{}`, `{"force":true}`, ``, `[`, `{"reason":"death","version":-1}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/admin/v1/cards/A00000001/cancel", strings.NewReader(string(body)))
		var in actionJSON
		err := decode(r, &in, false)
		if err != nil {
			if !errors.Is(err, errBadJSON) && !errors.Is(err, errTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			t.Fatalf("accepted a body that is not one JSON object: %q", body)
		}
		for k := range m {
			if !slices.Contains([]string{"version", "reason", "new_number", "region"}, strings.ToLower(k)) {
				t.Fatalf("accepted unknown field %q", k)
			}
		}
	})
}

// FuzzClientSpec checks that every registration Validate accepts keeps the
// rules (DESIGN.md §5).
func FuzzClientSpec(f *testing.F) {
	f.Add([]byte(`{"client_id":"portal","name":"x","profile":"gm","auth_method":"private_key_jwt","jwks":{"keys":[{}]},"redirect_uris":["https://a.example/cb"]}`))
	f.Add([]byte(`{"client_id":"bank","name":"x","profile":"intl","auth_method":"client_secret_basic","grant_types":["client_credentials"]}`))
	f.Add([]byte(`{"client_id":"x","redirect_uris":["http://127.0.0.1:8080/cb","javascript:alert(1)"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var spec ClientSpec
		if json.Unmarshal(body, &spec) != nil {
			return
		}
		c, err := spec.Validate()
		if err != nil {
			if !errors.Is(err, ErrInvalidClient) {
				t.Fatalf("error outside ErrInvalidClient: %v", err)
			}
			return
		}
		if c.Profile == storage.ProfileGM && c.AuthMethod != storage.AuthPrivateKeyJWT {
			t.Fatal("gm client without private_key_jwt")
		}
		for _, g := range c.GrantTypes {
			if !slices.Contains(grantTypes, g) {
				t.Fatalf("grant %q accepted", g)
			}
		}
		for _, u := range append(slices.Clone(c.RedirectURIs), c.PostLogoutRedirectURIs...) {
			p, err := url.Parse(u)
			if err != nil || p.Fragment != "" || (p.Scheme != "https" && !(p.Scheme == "http" && (p.Hostname() == "127.0.0.1" || p.Hostname() == "localhost" || p.Hostname() == "::1"))) {
				t.Fatalf("redirect %q accepted", u)
			}
		}
		if c.Sector == "" {
			t.Fatal("empty sector")
		}
	})
}
