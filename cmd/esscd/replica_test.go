package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/qrlogin"
)

// TestTwoReplicas runs two servers on one Redis and one PostgreSQL with one
// issuer (as behind a load balancer): the browser is served by replica 1,
// the phone talks to replica 2, the browser's long-poll on replica 1 wakes
// when replica 2 records the scan, and PIN failures on both replicas add up
// to one durable lock.
func TestTwoReplicas(t *testing.T) {
	checkGoroutineLeaks(t)
	r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL")
	if r == "" || d == "" {
		t.Skip("ESSC_TEST_REDIS_URL and ESSC_TEST_DATABASE_URL not set: two-replica test skipped")
	}
	db := postgresSchema(t, d)
	s1 := newStack(t, db, r)
	// Replica 2: same data (keys), same database, same Redis prefix, same issuer.
	s2 := newStack(t, db, r, func(c *FileConfig) {
		c.Data, c.Issuer, c.Redis.Prefix = s1.a.cfg.Data, s1.a.cfg.Issuer, s1.a.cfg.Redis.Prefix
	})
	ctx := context.Background()
	number := s1.issue(t, "41010519560315201", "R10000001")
	app := s1.phone(t, "41010519560315201", number, "258147")
	// The phone reaches replica 2 for the issuer's URL.
	addr2 := strings.TrimPrefix(s2.base, "http://")
	app.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr2)
	}}}
	if s2.base == s1.base {
		t.Fatal("replicas share an address")
	}

	b := s1.browser(t)
	b.authorize(nil)
	payload := b.payload()
	woke := make(chan string, 1)
	go func() {
		resp, err := b.c.Get(s1.base + qrlogin.Base + b.txn + "?wait=20")
		if err != nil {
			woke <- err.Error()
			return
		}
		defer resp.Body.Close()
		var st struct{ State string }
		json.NewDecoder(resp.Body).Decode(&st)
		woke <- st.State
	}()
	time.Sleep(100 * time.Millisecond) // the long-poll is subscribed
	start := time.Now()
	view, err := app.Scan(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-woke:
		if st != "scanned" {
			t.Fatalf("replica 1 long-poll returned %q", st)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("wake-up across replicas took %s", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("replica 1 was never woken by replica 2's scan")
	}
	if err := app.Confirm(ctx, view.Txn, b.number(), "258147"); err != nil {
		t.Fatal(err)
	}
	code, err := b.complete()
	if err != nil {
		t.Fatal(err)
	}
	if tok, status := b.exchange(code); status != 200 {
		t.Fatalf("token at replica 1: %d %v", status, tok)
	}

	// PIN failures alternate between replicas; the fifth locks for both.
	var e *client.Error
	direct := &client.Client{Base: s1.base, Key: app.Key}
	for i := range 5 {
		c := app
		if i%2 == 0 {
			c = direct
		}
		if err := c.Confirm(ctx, "AAAAAAAAAAAAAAAAAAAAAA", 10, "000000"); !errors.As(err, &e) || e.Code != "auth_failed" {
			t.Fatalf("wrong PIN %d: %v", i, err)
		}
	}
	if err := app.Confirm(ctx, "AAAAAAAAAAAAAAAAAAAAAA", 10, "258147"); !errors.As(err, &e) || e.Code != "auth_failed" {
		t.Fatalf("correct PIN after 5 failures across replicas was not locked out: %v", err)
	}
	resp, err := http.Get(s1.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, _ = http.Get(s2.base + "/metrics")
	m2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	all := string(metrics) + string(m2)
	for _, want := range []string{`essc_logins_total{outcome="completed"} 1`, `essc_tokens_issued_total{alg="SM2SM3",kind="token_response"} 1`,
		`essc_qr_transitions_total{from="pending",to="scanned"} 1`, `essc_pin_lockouts_total 1`} {
		if !strings.Contains(all, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
