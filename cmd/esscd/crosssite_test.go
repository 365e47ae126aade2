package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/storage"
)

const evilOrigin = "https://evil.example"

// crossSite makes req look like a browser request from another site: what
// a page on evil.example can make a victim's browser send.
func crossSite(req *http.Request) {
	req.Header.Set("Origin", evilOrigin)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Mode", "no-cors")
	req.Header.Set("Referer", evilOrigin+"/trap.html")
}

// setCookies records the Set-Cookie headers the server sends.
type setCookies struct {
	mu   sync.Mutex
	got  []string
	next http.RoundTripper
}

func (s *setCookies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.got = append(s.got, resp.Header.Values("Set-Cookie")...)
		s.mu.Unlock()
	}
	return resp, err
}

// TestCrossSiteRequests: what a page on another site can make a logged-in
// victim's browser send — simple (no-preflight) POSTs with text/plain or form
// bodies and every cookie of the victim — changes nothing on the wallet and
// admin APIs (a device-key proof or a bearer token is required, never a
// cookie); no endpoint grants another origin CORS access; and the QR
// login's poll and collect refuse a cross-site request even when the
// binding cookie is attached (SameSite=Strict keeps browsers from attaching
// it; the Origin / Sec-Fetch-Site check covers browsers that do).
func TestCrossSiteRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	checkGoroutineLeaks(t)
	s := newStack(t, "", "")
	ctx := context.Background()
	const prefix = "41010519560315301"
	number := s.issue(t, prefix, "X10000001")
	app := s.phone(t, prefix, number, "258147")

	// The victim's browser starts a QR login: the binding cookie is
	// HttpOnly, SameSite=Strict and scoped to the transaction.
	b := s.browser(t)
	rec := &setCookies{next: http.DefaultTransport}
	b.c.Transport = rec
	b.authorize(nil)
	var binding string
	for _, c := range rec.got {
		if strings.Contains(c, "Path="+qrlogin.Base+b.txn) {
			binding = c
		}
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(binding, attr) {
			t.Fatalf("binding cookie %q lacks %s", binding, attr)
		}
	}
	cookies := b.c.Jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(s.base, "http://"), Path: qrlogin.Base + b.txn})
	var cookieHdr []string
	for _, c := range cookies {
		cookieHdr = append(cookieHdr, c.Name+"="+c.Value)
	}
	if len(cookieHdr) == 0 {
		t.Fatal("no binding cookie in the browser")
	}

	send := func(method, path, contentType, body string, hdr func(*http.Request)) (int, http.Header, string) {
		req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		req.Header.Set("Cookie", strings.Join(cookieHdr, "; "))
		if hdr != nil {
			hdr(req)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(out)
	}

	t.Run("fail/wallet-and-admin-without-credentials", func(t *testing.T) {
		for _, tc := range []struct{ path, ct, body string }{
			{"/wallet/v1/report-loss", "text/plain", "{}"},
			{"/wallet/v1/report-loss", "application/x-www-form-urlencoded", "a=b"},
			{"/wallet/v1/pin", "text/plain", `{"card_number":"` + number + `","old_pin":"258147","new_pin":"730591"}`},
			{"/wallet/v1/devices/unbind", "text/plain", `{"device_id":"x"}`},
			{"/wallet/v1/presentation-codes", "text/plain", "{}"},
			{"/admin/v1/cards/" + number + "/report-loss", "text/plain", "{}"},
			{"/admin/v1/cards/" + number + "/reset-pin", "application/x-www-form-urlencoded", ""},
			{"/admin/v1/cards", "text/plain", `{"ssn":"` + ssnFor("41010519800101401") + `","name":"王五","number":"X10000009","region":"410100"}`},
			{"/entitlement/v1/beneficiaries", "text/plain", `{"ssn":"` + ssnFor(prefix) + `","benefit":"enterprise_pension","anchor":"2025-12-01"}`},
			{"/verify/v1/presentation-codes", "text/plain", `{"code":"x"}`},
		} {
			code, _, body := send(http.MethodPost, tc.path, tc.ct, tc.body, crossSite)
			if code != http.StatusUnauthorized && code != http.StatusForbidden {
				t.Errorf("%s (%s): %d %s, want 401/403", tc.path, tc.ct, code, body)
			}
		}
		c, err := s.a.cards.Card(ctx, number)
		if err != nil || c.Card.Status != storage.CardActive || c.ECard == nil || c.ECard.Status != storage.ECardActive {
			t.Fatalf("card changed by cross-site requests: %+v %v", c, err)
		}
		if _, err := s.a.cards.VerifyPIN(ctx, number, "258147"); err != nil {
			t.Fatalf("PIN changed or reset by cross-site requests: %v", err)
		}
		if _, err := s.a.cards.Card(ctx, "X10000009"); err == nil {
			t.Fatal("a card was issued by a cross-site request")
		}
	})

	t.Run("fail/no-cors-for-foreign-origins", func(t *testing.T) {
		paths := []string{"/wallet/v1/ecards", "/wallet/v1/report-loss", "/admin/v1/cards", "/admin/v1/clients",
			"/entitlement/v1/beneficiaries", "/verify/v1/presentation-codes", "/oauth2/token", "/gm/oauth2/token",
			"/oauth2/introspect", "/userinfo", "/gm/userinfo", "/oauth2/par", "/oauth2/revoke", "/oauth2/logout",
			"/.well-known/openid-configuration", "/gm/jwks.json", qrlogin.Base + b.txn, qrlogin.Base + b.txn + "/complete",
			"/healthz", "/readyz"}
		for _, p := range paths {
			for _, method := range []string{http.MethodOptions, http.MethodGet, http.MethodPost} {
				_, hdr, _ := send(method, p, "text/plain", "", func(r *http.Request) {
					r.Header.Set("Origin", evilOrigin)
					if method == http.MethodOptions {
						r.Header.Set("Access-Control-Request-Method", "POST")
						r.Header.Set("Access-Control-Request-Headers", "authorization, content-type, essc-proof")
					}
				})
				for k := range hdr {
					if strings.HasPrefix(strings.ToLower(k), "access-control-allow-") {
						t.Errorf("%s %s from %s: %s: %q", method, p, evilOrigin, k, hdr.Get(k))
					}
				}
			}
		}
	})

	// The phone approves; the transaction waits for the binding browser.
	sv, err := app.Scan(ctx, b.payload())
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Confirm(ctx, sv.Txn, b.number(), "258147"); err != nil {
		t.Fatal(err)
	}

	t.Run("fail/qr-poll-and-collect-cross-site-with-cookie", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path string
			hdr                func(*http.Request)
		}{
			{"poll/origin+fetch-site", http.MethodGet, "", crossSite},
			{"events/fetch-site", http.MethodGet, "/events", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }},
			{"collect/origin+fetch-site", http.MethodPost, "/complete", crossSite},
			{"collect/origin-only", http.MethodPost, "/complete", func(r *http.Request) { r.Header.Set("Origin", evilOrigin) }},
			{"collect/null-origin-cross-site", http.MethodPost, "/complete", func(r *http.Request) {
				r.Header.Set("Origin", "null")
				r.Header.Set("Sec-Fetch-Site", "cross-site")
			}},
			{"collect/same-site-sibling", http.MethodPost, "/complete", func(r *http.Request) {
				r.Header.Set("Sec-Fetch-Site", "same-site")
			}},
			{"collect/fetch-site-only", http.MethodPost, "/complete", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }},
			{"cancel/origin", http.MethodPost, "/cancel", crossSite},
			{"restart/origin", http.MethodPost, "/restart", crossSite},
		} {
			code, hdr, body := send(tc.method, qrlogin.Base+b.txn+tc.path, "application/x-www-form-urlencoded", "", tc.hdr)
			if code != http.StatusForbidden {
				t.Errorf("%s: %d %s (Location %q), want 403", tc.name, code, body, hdr.Get("Location"))
			}
			if strings.Contains(hdr.Get("Location"), "code=") || strings.Contains(body, `"approved"`) {
				t.Errorf("%s: leaked the approval: %s %s", tc.name, hdr.Get("Location"), body)
			}
		}
		var e struct{ Error string }
		_, _, body := send(http.MethodPost, qrlogin.Base+b.txn+"/complete", "", "", crossSite)
		if json.Unmarshal([]byte(body), &e); e.Error == "" {
			t.Errorf("the refusal is not a JSON error: %s", body)
		}
	})

	t.Run("ok/same-origin-collect-still-works", func(t *testing.T) {
		// The refused attempts consumed nothing: the real page collects.
		// What Chromium sends for the page's own form post: the page's
		// Referrer-Policy no-referrer makes the Origin opaque.
		if code, _, body := send(http.MethodGet, qrlogin.Base+b.txn, "", "", func(r *http.Request) {
			r.Header.Set("Origin", s.base)
			r.Header.Set("Sec-Fetch-Site", "same-origin")
		}); !strings.Contains(body, `"state":"approved"`) { // 200, or 400 slow_down right after b.number()
			t.Fatalf("same-origin poll: %d %s", code, body)
		}
		code, hdr, body := send(http.MethodPost, qrlogin.Base+b.txn+"/complete", "application/x-www-form-urlencoded", "", func(r *http.Request) {
			r.Header.Set("Origin", "null")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
		})
		if code != http.StatusSeeOther && code != http.StatusFound || !strings.Contains(hdr.Get("Location"), "code=") {
			t.Fatalf("same-origin collect: %d %s %s", code, hdr.Get("Location"), body)
		}
	})
}
