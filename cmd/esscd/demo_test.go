package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/signing"
)

// TestDemo seeds the demo twice (idempotent) and logs in through the /demo
// portal: authorize → QR page → e-card app scan/confirm → callback, where the
// portal shows the verified SM2-signed ID token.
func TestDemo(t *testing.T) {
	checkGoroutineLeaks(t)
	if testing.Short() {
		t.Skip("end-to-end")
	}
	// Runs last: everything the server started must have stopped.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	cfg.Data, cfg.Listen, cfg.Demo = t.TempDir(), ln.Addr().String(), true
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// First start seeds; a second start on the same data must succeed unchanged.
	a1, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a1.Close()
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("ok/second start on the demo data: %v", err)
	}
	srv := httptest.NewUnstartedServer(a.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { srv.Close(); a.Close() })
	base := "http://" + cfg.Listen
	var walk strings.Builder
	a.demoWalkthrough(&walk)
	if !strings.Contains(walk.String(), "bin/ecard apply --card DEMO00001") {
		t.Fatalf("walkthrough lacks the ecard commands:\n%s", walk.String())
	}

	ctx := context.Background()
	k, _ := signing.GenerateKey(signing.AlgSM2SM3)
	app := &client.Client{Base: base, Key: k}
	w := demoCards[0]
	if _, err := app.Apply(ctx, wallet.ApplyRequest{CardNumber: w.Number, SSN: ssnFor(w.SSNPrefix), Name: w.Name, PIN: w.PIN}); err != nil {
		t.Fatal(err)
	}

	br := startDemoLogin(t, base)
	view, err := app.Scan(ctx, br.payload())
	if err != nil {
		t.Fatal(err)
	}
	if view.RPName != "省网上办事大厅（演示）" {
		t.Fatalf("phone shows %q", view.RPName)
	}
	_, number := br.state()
	if err := app.Confirm(ctx, view.Txn, number, w.PIN); err != nil {
		t.Fatal(err)
	}
	body := br.complete() // → /demo/callback
	for _, want := range []string{"登录成功", "SM2SM3", "通过", "urn:essc:acr:pin"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("portal page lacks %q:\n%s", want, body)
		}
	}

	t.Run("fail/callback-without-cookie", func(t *testing.T) {
		resp, err := http.Get(base + "/demo/callback?code=x&state=y")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback without login cookie: %d", resp.StatusCode)
		}
	})
	t.Run("fail/cancelled-card-cannot-apply", func(t *testing.T) {
		k2, _ := signing.GenerateKey(signing.AlgSM2SM3)
		c := demoCards[3]
		_, err := (&client.Client{Base: base, Key: k2}).Apply(ctx, wallet.ApplyRequest{CardNumber: c.Number, SSN: ssnFor(c.SSNPrefix), Name: c.Name, PIN: "123456"})
		if err == nil {
			t.Fatal("e-card issued on a cancelled card")
		}
	})
}

func TestCheckIDClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := map[string]any{"iss": "https://i/gm", "aud": []any{"rp"}, "nonce": "n", "exp": float64(now.Unix() + 60), "iat": float64(now.Unix())}
	if err := checkIDClaims(good, "https://i/gm", "rp", "n", now); err != nil {
		t.Fatalf("ok/good: %v", err)
	}
	for name, edit := range map[string]func(map[string]any){
		"fail/iss":    func(c map[string]any) { c["iss"] = "https://i" },
		"fail/aud":    func(c map[string]any) { c["aud"] = "other" },
		"fail/nonce":  func(c map[string]any) { c["nonce"] = "m" },
		"fail/exp":    func(c map[string]any) { c["exp"] = float64(now.Unix()) },
		"fail/no-exp": func(c map[string]any) { delete(c, "exp") },
		"fail/iat":    func(c map[string]any) { c["iat"] = float64(now.Unix() + 3600) },
	} {
		c := map[string]any{}
		for k, v := range good {
			c[k] = v
		}
		edit(c)
		if err := checkIDClaims(c, "https://i/gm", "rp", "n", now); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
