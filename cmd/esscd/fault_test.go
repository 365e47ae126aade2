package main

// Fault tests with real services on loopback (issue 10): a Redis killed in
// the middle of a login and restarted empty, PostgreSQL cut during an outlet
// action, an agency webhook endpoint that fails or holds requests while the
// server is killed, and the embedded SQLite default on a full disk. Each
// starts its own services (never the shared Redis/PostgreSQL on 6379/5432)
// and asserts clean 503s, no internals in answers, no panic, nothing
// half-applied and nothing lost.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/signing"
)

// internals are strings no answer may carry during an outage: driver and
// network error text, file paths, stack traces.
var internals = []string{"redis", "dial tcp", "connection refused", "127.0.0.1:", "goroutine", "panic",
	"sqlite", "SQL", "sql:", "pq:", "pgx", "postgres", "no space", "/tmp/", "disk"}

// checkClean fails if body carries any internal detail.
func checkClean(t *testing.T, what string, body []byte) {
	t.Helper()
	for _, s := range internals {
		if bytes.Contains(bytes.ToLower(body), bytes.ToLower([]byte(s))) {
			t.Errorf("%s: answer leaks %q: %s", what, s, body)
		}
	}
}

// want503 asserts a clean 503 with error temporarily_unavailable in JSON.
func want503JSON(t *testing.T, what string, code int, body []byte) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if code != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Error != "temporarily_unavailable" {
		t.Errorf("%s during the outage: %d %s (want 503 temporarily_unavailable)", what, code, body)
	}
	checkClean(t, what, body)
}

// do sends a request with c and returns the status and body.
func do(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// alive fails if the esscd process has exited.
func (p *proc) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("esscd exited: %v\n%s", err, p.logs.String())
	default:
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("esscd exited\n%s", p.logs.String())
	}
}

// noPanic fails if the server log shows a recovered or unrecovered panic.
func (p *proc) noPanic(t *testing.T) {
	t.Helper()
	if l := p.logs.String(); strings.Contains(l, "panic") || strings.Contains(l, "goroutine ") {
		t.Fatalf("panic in the server log:\n%s", l)
	}
}

// waitReady polls /readyz until it answers want (200 or 503).
func waitReady(t *testing.T, base string, want int) []byte {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	var last []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			last, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d: %v %s", want, err, last)
		}
	}
}

// needRedisServer returns the redis-server binary, skipping when it is not
// installed and the suite is not run with the services (CI installs it).
func needRedisServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test: runs binaries and services")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("ESSC_TEST_REDIS_URL") != "" {
				t.Fatal("ESSC_TEST_REDIS_URL is set but redis-server is not installed")
			}
			t.Skip("redis-server not installed")
		}
	}
	return bin
}

// redisProc is a redis-server of the test's own on a loopback port.
type redisProc struct {
	bin, addr string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startRedis(t *testing.T, bin, addr string) *redisProc {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	r := &redisProc{bin: bin, addr: addr, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "yes")
	var out bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &out, &out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() { r.kill(t) })
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		select {
		case <-r.done:
			t.Fatalf("redis-server exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s never answered:\n%s", addr, out.String())
		}
	}
	return r
}

// kill sends SIGKILL and waits for the process to be gone.
func (r *redisProc) kill(t *testing.T) {
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Error("redis-server survived SIGKILL")
	}
}

// TestFaultRedisKilledMidLogin runs the esscd binary on a Redis of its own,
// starts a QR login, scans it from the app and SIGKILLs Redis: confirm, poll,
// completion, a new login and the token endpoint answer clean 503s (JSON
// temporarily_unavailable or the fixed page), /readyz reports not ready, the
// process lives and logs no panic. Redis comes back empty on the same port:
// /readyz recovers, the old transaction is refused everywhere (no half-state
// is accepted), and a new login from scratch completes.
func TestFaultRedisKilledMidLogin(t *testing.T) {
	rbin := needRedisServer(t)
	dir := t.TempDir()
	buildBinaries(t, dir, "esscd")
	raddr := freeAddr(t)
	red := startRedis(t, rbin, raddr)
	data := filepath.Join(dir, "data")
	srv := startESSCD(t, filepath.Join(dir, "esscd"), nil, "--data", data, "--demo", "--redis", "redis://"+raddr+"/0")
	base := "http://" + srv.addr
	ctx := context.Background()
	hc := &http.Client{Timeout: 15 * time.Second}

	k, _ := signing.GenerateKey(signing.AlgSM2SM3)
	phone := &client.Client{Base: base, Key: k, HTTP: hc}
	w := demoCards[0]
	if _, err := phone.Apply(ctx, wallet.ApplyRequest{CardNumber: w.Number, SSN: ssnFor(w.SSNPrefix), Name: w.Name, PIN: w.PIN}); err != nil {
		t.Fatal(err)
	}
	br := startDemoLogin(t, base)
	br.c.Timeout = 15 * time.Second
	view, err := phone.Scan(ctx, br.payload())
	if err != nil {
		t.Fatal(err)
	}
	st, number := br.state()
	if st != "scanned" {
		t.Fatalf("state after scan: %s", st)
	}
	creds := readAdminCredentials(t, data)

	red.kill(t)

	// The phone's confirmation.
	var e *client.Error
	err = phone.Confirm(ctx, view.Txn, number, w.PIN)
	if !errors.As(err, &e) || e.Status != 503 || e.Code != "temporarily_unavailable" {
		t.Errorf("confirm during the outage: %v (want 503 temporarily_unavailable)", err)
	} else {
		checkClean(t, "confirm", []byte(e.Message))
	}
	// The browser's poll (JSON) and its completion (the fixed page).
	code, body := do(t, br.c, "GET", br.txnBase, nil)
	want503JSON(t, "poll", code, body)
	code, body = do(t, br.c, "POST", br.txnBase+"/complete", nil, "Content-Type", "application/x-www-form-urlencoded")
	if code != 503 || !bytes.Contains(body, []byte("服务暂时不可用")) {
		t.Errorf("complete during the outage: %d %s", code, body)
	}
	checkClean(t, "complete", body)
	// The token endpoint (client credentials: the token is stored in Redis).
	code, body = do(t, hc, "POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=essc.admin.audit"),
		"Content-Type", "application/x-www-form-urlencoded", "Authorization", basicAuth(creds.ClientID, creds.ClientSecret))
	want503JSON(t, "token", code, body)
	// A new login cannot start either: a page, not a 500.
	code, body = do(t, hc, "GET", base+"/demo/login?profile=gm", nil)
	if code != 503 {
		t.Errorf("new login during the outage: %d %s", code, body)
	}
	checkClean(t, "new login", body)
	if body := waitReady(t, base, 503); !bytes.Contains(body, []byte(`"sessions":"unavailable"`)) || !bytes.Contains(body, []byte(`"registry":"ok"`)) {
		t.Errorf("readyz during the outage: %s", body)
	}
	srv.alive(t)
	srv.noPanic(t)

	// Redis comes back on the same port, empty.
	startRedis(t, rbin, raddr)
	waitReady(t, base, 200)
	if err := phone.Confirm(ctx, view.Txn, number, w.PIN); err == nil {
		t.Fatal("fail/the old transaction was confirmed after Redis came back empty")
	} else if !errors.As(err, &e) || e.Status >= 500 {
		t.Errorf("old transaction's confirm after recovery: %v", err)
	}
	if code, body := do(t, br.c, "GET", br.txnBase, nil); code != 404 || !bytes.Contains(body, []byte("expired_token")) {
		t.Errorf("old transaction's poll after recovery: %d %s", code, body)
	}
	if body := br.complete(); bytes.Contains(body, []byte("登录成功")) {
		t.Fatal("fail/the old transaction completed a login after recovery")
	}
	code, body = do(t, hc, "POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=essc.admin.audit"),
		"Content-Type", "application/x-www-form-urlencoded", "Authorization", basicAuth(creds.ClientID, creds.ClientSecret))
	if code != 200 {
		t.Errorf("token after recovery: %d %s", code, body)
	}

	// A new login from scratch.
	br2 := startDemoLogin(t, base)
	view2, err := phone.Scan(ctx, br2.payload())
	if err != nil {
		t.Fatalf("scan after recovery: %v", err)
	}
	if _, n := br2.state(); n == 0 {
		t.Fatal("no number after the scan")
	} else if err := phone.Confirm(ctx, view2.Txn, n, w.PIN); err != nil {
		t.Fatalf("confirm after recovery: %v", err)
	}
	if body := br2.complete(); !bytes.Contains(body, []byte("登录成功")) {
		t.Fatalf("login after recovery failed:\n%s", body)
	}
	srv.alive(t)
	srv.noPanic(t)
	srv.stop(t)
}

func basicAuth(id, secret string) string {
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return req.Header.Get("Authorization")
}

func readAdminCredentials(t *testing.T, data string) adminCredentials {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "admin-client.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c adminCredentials
	if err := json.Unmarshal(b, &c); err != nil || c.ClientSecret == "" {
		t.Fatalf("admin credentials: %v", err)
	}
	return c
}
