package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/idp/entitlement"
	"github.com/essc-project/essc/idp/secret"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/signing"
)

// Short server limits for the slow-client tests (the defaults are 10 s / 30 s).
const (
	testReadHeaderTimeout = 600 * time.Millisecond
	testReadTimeout       = 1500 * time.Millisecond
)

// realServer serves s's app with the http.Server esscd itself runs
// (app.httpServer: header limit, read timeouts) on a loopback listener and
// returns its base URL.
func realServer(t *testing.T, s *stack) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := s.a.httpServer(ctx, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

func limitsStack(t *testing.T) (*stack, string) {
	s := newStack(t, "", "", func(c *FileConfig) {
		c.HTTP.ReadHeaderTimeout, c.HTTP.ReadTimeout = testReadHeaderTimeout, testReadTimeout
	})
	return s, realServer(t, s)
}

// rawExchange writes req on a fresh connection and reads one response.
func rawExchange(t *testing.T, base, req string) (*http.Response, []byte) {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may answer and close before it read everything: a write
	// error is not the result, the response is.
	go io.WriteString(conn, req)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestServerHeaderLimit: request headers beyond MaxHeaderBytes (32 KiB) are
// answered 431 before any handler runs; 16 KiB of headers still pass.
func TestServerHeaderLimit(t *testing.T) {
	checkGoroutineLeaks(t)
	_, base := limitsStack(t)
	get := func(pad int) *http.Response {
		resp, _ := rawExchange(t, base, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", pad)+"\r\nConnection: close\r\n\r\n")
		return resp
	}
	if r := get(16 << 10); r.StatusCode != http.StatusOK {
		t.Fatalf("ok/16KiB-headers: %d", r.StatusCode)
	}
	for _, n := range []int{40 << 10, 1 << 20} {
		if r := get(n); r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("fail/%dKiB-headers: %d, want 431", n>>10, r.StatusCode)
		}
	}
	// Many header lines adding up to the same size are refused the same way.
	many := strings.Repeat("X-A: "+strings.Repeat("b", 100)+"\r\n", 600)
	if r, _ := rawExchange(t, base, "GET /healthz HTTP/1.1\r\nHost: x\r\n"+many+"\r\n"); r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("fail/600-header-lines: %d, want 431", r.StatusCode)
	}
}

// TestServerBodyLimits sends every JSON API (wallet, verify, admin,
// entitlement) and the form endpoints (token, PAR, introspection,
// revocation; both profiles) a body over its limit whose content would
// otherwise be accepted: the answer is 413 or 400 with a JSON error, and
// nothing changed (the same request at its normal size then succeeds).
func TestServerBodyLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	checkGoroutineLeaks(t)
	s, base := limitsStack(t)
	ctx := context.Background()

	// A card whose PIN is changed but that has no e-card yet.
	const prefix = "41010219700101101"
	number := s.issue(t, prefix, "L10000001")
	phoneKey, _ := signing.GenerateKey(signing.AlgSM2SM3)
	phone := &client.Client{Base: s.base, Key: phoneKey}
	if err := phone.ChangePIN(ctx, number, card.InitialPIN, "730591"); err != nil {
		t.Fatal(err)
	}
	// A holder with an e-card and a presentation code.
	const prefix2 = "41010219700101202"
	app := s.phone(t, prefix2, s.issue(t, prefix2, "L10000002"), "730592")
	code, err := app.PresentationCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counter := s.counterToken(t)
	outlet := s.serviceToken(t, "outlet-limits", "社保服务网点", "outlet.example.gov.cn", admin.ScopeCards)
	agency := s.serviceToken(t, "agency-limits", "市社保局", "agency.example.gov.cn", entitlement.ScopeManage)
	svcID, svcSecret := serviceClient(t, s, "svc-limits")

	pad := func(jsonBody string, n int) string { // whitespace is valid JSON padding
		return jsonBody[:len(jsonBody)-1] + strings.Repeat(" ", n) + "}"
	}
	applyBody := fmt.Sprintf(`{"card_number":%q,"ssn":%q,"name":"李明","pin":"730591"}`, number, ssnFor(prefix))
	issueBody := `{"ssn":"` + ssnFor("41010219800202303") + `","name":"王芳","number":"L10000003","region":"410100"}`
	registerBody := `{"ssn":"` + ssnFor(prefix2) + `","benefit":"enterprise_pension","anchor":"2025-12-01"}`
	statusBody := `{"ssns":["` + ssnFor(prefix2) + `"]}`
	ccForm := "grant_type=client_credentials&scope=" + url.QueryEscape(wallet.ScopeVerify)

	type sent struct {
		path, contentType, body string
		hdr                     map[string]string
		proofKey                *signing.Key // a wallet proof over the exact body
		embed                   bool
	}
	do := func(r sent) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, base+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", r.contentType)
		for k, v := range r.hdr {
			req.Header.Set(k, v)
		}
		if r.proofKey != nil {
			p, err := wallet.SignProof(r.proofKey, http.MethodPost, s.base+r.path, []byte(r.body), time.Now(), r.embed)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(wallet.ProofHeader, p)
		}
		if id, ok := r.hdr["basic"]; ok {
			req.Header.Del("basic")
			req.SetBasicAuth(id, svcSecret)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", r.path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	basic := map[string]string{"basic": svcID}

	for _, tc := range []struct {
		name      string
		big, ok   sent
		okCode    int
		unchanged func(t *testing.T) // checked after the oversized request, before the normal one
	}{
		{name: "wallet/apply",
			big:    sent{path: "/wallet/v1/ecards", contentType: "application/json", body: pad(applyBody, 17<<10), proofKey: phoneKey, embed: true},
			ok:     sent{path: "/wallet/v1/ecards", contentType: "application/json", body: applyBody, proofKey: phoneKey, embed: true},
			okCode: http.StatusCreated,
			unchanged: func(t *testing.T) {
				if c, err := s.a.cards.Card(ctx, number); err != nil || c.ECard != nil {
					t.Fatalf("an e-card was issued by the oversized request: %+v %v", c.ECard, err)
				}
			}},
		{name: "verify/presentation-code",
			big:    sent{path: "/verify/v1/presentation-codes", contentType: "application/json", body: pad(`{"code":"`+code.Code+`"}`, 2<<10), hdr: bearer(counter)},
			ok:     sent{path: "/verify/v1/presentation-codes", contentType: "application/json", body: `{"code":"` + code.Code + `"}`, hdr: bearer(counter)},
			okCode: http.StatusOK},
		{name: "admin/issue-card",
			big:    sent{path: "/admin/v1/cards", contentType: "application/json", body: pad(issueBody, 65<<10), hdr: bearer(outlet)},
			ok:     sent{path: "/admin/v1/cards", contentType: "application/json", body: issueBody, hdr: bearer(outlet)},
			okCode: http.StatusCreated,
			unchanged: func(t *testing.T) {
				if _, err := s.a.cards.Card(ctx, "L10000003"); !errors.Is(err, card.ErrNotFound) {
					t.Fatalf("the oversized request issued a card: %v", err)
				}
			}},
		{name: "entitlement/register",
			big:    sent{path: "/entitlement/v1/beneficiaries", contentType: "application/json", body: pad(registerBody, 17<<10), hdr: bearer(agency)},
			ok:     sent{path: "/entitlement/v1/beneficiaries", contentType: "application/json", body: registerBody, hdr: bearer(agency)},
			okCode: http.StatusCreated},
		{name: "entitlement/batch-status",
			big:    sent{path: "/entitlement/v1/status", contentType: "application/json", body: pad(statusBody, 1<<20), hdr: bearer(agency)},
			ok:     sent{path: "/entitlement/v1/status", contentType: "application/json", body: statusBody, hdr: bearer(agency)},
			okCode: http.StatusOK},
		{name: "intl/token",
			big:    sent{path: "/oauth2/token", contentType: "application/x-www-form-urlencoded", body: ccForm + "&pad=" + strings.Repeat("x", 1<<20), hdr: basic},
			ok:     sent{path: "/oauth2/token", contentType: "application/x-www-form-urlencoded", body: ccForm, hdr: basic},
			okCode: http.StatusOK},
		{name: "intl/introspect",
			big:    sent{path: "/oauth2/introspect", contentType: "application/x-www-form-urlencoded", body: "token=" + counter + "&pad=" + strings.Repeat("x", 1<<20), hdr: basic},
			ok:     sent{path: "/oauth2/introspect", contentType: "application/x-www-form-urlencoded", body: "token=" + counter, hdr: basic},
			okCode: http.StatusOK},
		{name: "intl/revoke",
			big:    sent{path: "/oauth2/revoke", contentType: "application/x-www-form-urlencoded", body: "token=" + counter + "&pad=" + strings.Repeat("x", 1<<20), hdr: basic},
			ok:     sent{path: "/oauth2/revoke", contentType: "application/x-www-form-urlencoded", body: "token=x", hdr: basic},
			okCode: http.StatusOK},
		{name: "intl/par",
			big:    sent{path: "/oauth2/par", contentType: "application/x-www-form-urlencoded", body: "response_type=code&pad=" + strings.Repeat("x", 1<<20), hdr: basic},
			okCode: 0},
		{name: "gm/token",
			big:    sent{path: "/gm/oauth2/token", contentType: "application/x-www-form-urlencoded", body: "grant_type=client_credentials&pad=" + strings.Repeat("x", 1<<20)},
			okCode: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := do(tc.big)
			if code != http.StatusRequestEntityTooLarge && code != http.StatusBadRequest {
				t.Fatalf("oversized body: %d %v, want 413 or 400", code, out)
			}
			if e, _ := out["error"].(string); e == "" {
				t.Fatalf("oversized body: %d without a JSON error: %v", code, out)
			}
			if tc.unchanged != nil {
				tc.unchanged(t)
			}
			if tc.okCode != 0 {
				if code, out := do(tc.ok); code != tc.okCode {
					t.Fatalf("the same request at its normal size: %d %v, want %d", code, out, tc.okCode)
				}
			}
		})
	}
}

// serviceClient registers a client_credentials client allowed essc.verify
// and returns its id and secret.
func serviceClient(t *testing.T, s *stack, id string) (string, string) {
	t.Helper()
	clients, err := admin.NewClients(s.a.reg, secret.Hasher{Key: s.a.secrets.ClientSecretKey}, s.a.now)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, err := clients.Create(context.Background(), card.Actor{ID: "test"}, admin.ClientSpec{
		ID: id, Name: "核验终端", Domain: "svc.example.gov.cn", Profile: "intl",
		AuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}, Scopes: []string{wallet.ScopeVerify},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, sec
}

// slowConn opens a connection and sends head, then trickle one byte every
// step until the server closes the connection or limit passes. It returns
// how long the server let it live and what the server answered (if anything).
func slowConn(t *testing.T, base, head, trickle string, step, limit time.Duration) (time.Duration, string, int) {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Error(err)
		return 0, "", 0
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Error(err)
		return 0, "", 0
	}
	closed := make(chan []byte, 1)
	go func() {
		conn.SetReadDeadline(time.Now().Add(limit))
		b, _ := io.ReadAll(conn) // EOF (closed), reset or the deadline
		closed <- b
	}()
	sent := 0
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case b := <-closed:
			return time.Since(start), string(b), sent
		case <-tick.C:
			if sent < len(trickle) {
				if _, err := conn.Write([]byte{trickle[sent]}); err == nil {
					sent++
				}
			}
		}
	}
}

// TestServerSlowClients: a client that trickles its headers (slowloris) is
// cut after ReadHeaderTimeout, one that trickles its body after ReadTimeout
// — and while 20 such clients hang on, others are served at once.
func TestServerSlowClients(t *testing.T) {
	checkGoroutineLeaks(t)
	_, base := limitsStack(t)
	const step = 50 * time.Millisecond
	limit := testReadTimeout + 5*time.Second
	trickle := strings.Repeat("X-Slow: "+strings.Repeat("z", 40)+"\r\n", 20) // never finishes in time

	var wg sync.WaitGroup
	type result struct {
		kind  string
		lived time.Duration
		got   string
		sent  int
	}
	results := make(chan result, 40)
	for i := range 20 {
		wg.Go(func() {
			if i%2 == 0 {
				d, got, sent := slowConn(t, base, "GET /healthz HTTP/1.1\r\nHost: x\r\n", trickle, step, limit)
				results <- result{"headers", d, got, sent}
				return
			}
			body := strings.Repeat(" ", 4000)
			d, got, sent := slowConn(t, base, fmt.Sprintf("POST /wallet/v1/ecards HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)),
				body, step, limit)
			results <- result{"body", d, got, sent}
		})
	}
	// Meanwhile a normal client is served promptly, several times.
	hc := &http.Client{Timeout: 2 * time.Second}
	for range 5 {
		time.Sleep(testReadHeaderTimeout / 4)
		start := time.Now()
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("a normal client was not served while slow clients hang on: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || time.Since(start) > time.Second {
			t.Fatalf("a normal client: %d after %v", resp.StatusCode, time.Since(start))
		}
	}
	wg.Wait()
	close(results)
	const slack = 2500 * time.Millisecond // a loaded CI machine under -race
	for r := range results {
		timeout := testReadHeaderTimeout
		if r.kind == "body" {
			timeout = testReadTimeout
		}
		if r.lived < timeout-100*time.Millisecond || r.lived > timeout+slack {
			t.Errorf("slow %s: cut after %v (sent %d bytes), want about %v", r.kind, r.lived, r.sent, timeout)
		}
		switch r.kind {
		case "headers":
			if r.got != "" {
				t.Errorf("slow headers: the server answered %q", r.got)
			}
		case "body":
			// The handler's read fails: a 4xx error, never a processed request.
			if r.got != "" && !strings.HasPrefix(r.got, "HTTP/1.1 4") {
				t.Errorf("slow body: the server answered %q", r.got)
			}
		}
	}
}
