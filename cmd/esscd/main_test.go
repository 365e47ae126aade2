package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServing starts bin on data, waits until /healthz answers "ok",
// sends SIGTERM and returns the JSON log after a clean exit.
func startServing(t *testing.T, bin, data string) []byte {
	t.Helper()
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--data", data, "--listen", addr, "--shutdown-timeout", "5s")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second) // first start generates an RSA key
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Fatalf("healthz %d %q", resp.StatusCode, body)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("esscd exited early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, err := client.Post("http://"+addr+"/healthz", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %v %v", resp, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", logs.String())
	}
	if !bytes.Contains(logs.Bytes(), []byte(`"msg":"esscd stopped"`)) {
		t.Fatalf("no JSON shutdown log:\n%s", logs.String())
	}
	return logs.Bytes()
}

// TestBinaryLifecycle builds esscd, starts it on a fresh data directory,
// waits for /healthz, sends SIGTERM and expects a clean exit and key files;
// a second start reuses the keys.
func TestBinaryLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "esscd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")

	logs := startServing(t, bin, data)
	if n := bytes.Count(logs, []byte(`"msg":"generated signing key"`)); n != 3 {
		t.Fatalf("ok/first start generated %d keys:\n%s", n, logs)
	}
	keys := filepath.Join(data, "keys")
	pems, _ := filepath.Glob(filepath.Join(keys, "*.pem"))
	if _, err := os.Stat(filepath.Join(keys, "keys.json")); err != nil || len(pems) != 3 {
		t.Fatalf("key files: %v %v", pems, err)
	}
	for _, f := range append(pems, keys) {
		st, err := os.Stat(f)
		if err != nil || (f == keys) != (st.Mode().Perm() == 0o700) || (f != keys && st.Mode().Perm() != 0o600) {
			t.Fatalf("%s mode %v %v", f, st.Mode(), err)
		}
	}

	if logs := startServing(t, bin, data); bytes.Contains(logs, []byte("generated signing key")) {
		t.Fatalf("ok/second start regenerated keys:\n%s", logs)
	}

	for name, args := range map[string][]string{
		"fail/unknown-flag":   {"--bogus"},
		"fail/extra-argument": {"--data", data, "serve"},
		"fail/bad-listen":     {"--data", data, "--listen", "256.0.0.1:99999"},
		"fail/bad-keys":       {"--data", data, "--key-password-file", filepath.Join(data, "missing")},
	} {
		if err := exec.Command(bin, args...).Run(); err == nil {
			t.Errorf("%s: exit 0", name)
		}
	}
}

// buildBinaries builds the named commands into dir.
func buildBinaries(t *testing.T, dir string, names ...string) {
	for _, b := range names {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b), "../"+b).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
}

// proc is a running esscd process.
type proc struct {
	addr string
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan error
}

// startESSCD starts bin with args (plus --listen on a free port) and waits
// until /readyz answers 200.
func startESSCD(t *testing.T, bin string, env []string, args ...string) *proc {
	p := &proc{addr: freeAddr(t), logs: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append(args, "--listen", p.addr)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("esscd never ready: %v\n%s", err, p.logs.String())
		}
	}
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop(t *testing.T) {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("esscd exit: %v\n%s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("esscd did not exit after SIGTERM")
	}
}

// ecardCLI runs the ecard binary as one phone against server.
func ecardCLI(t *testing.T, dir, server string) func(args ...string) string {
	return func(args ...string) string {
		out, err := exec.Command(filepath.Join(dir, "ecard"), append([]string{"--home", filepath.Join(dir, "phone"), "--server", server}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ecard %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
}

// demoBrowser is a browser at the demo portal: it starts a gm login and
// follows the QR transaction.
type demoBrowser struct {
	t       *testing.T
	c       *http.Client
	txnBase string
}

func startDemoLogin(t *testing.T, base string) *demoBrowser {
	jar, _ := cookiejar.New(nil)
	b := &demoBrowser{t: t, c: &http.Client{Jar: jar}}
	resp, err := b.c.Get(base + "/demo/login?profile=gm") // follows to the QR page
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	i := bytes.Index(page, []byte(`data-base="/qr/v1/transactions/`))
	if i < 0 {
		t.Fatalf("no QR page: %d %s", resp.StatusCode, page)
	}
	rest := page[i+len(`data-base="`):]
	b.txnBase = base + string(rest[:bytes.IndexByte(rest, '"')])
	return b
}

func (b *demoBrowser) getJSON(path string, out any) {
	resp, err := b.c.Get(b.txnBase + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
}

func (b *demoBrowser) payload() string {
	var f struct{ Payload string }
	b.getJSON("/frame", &f)
	return f.Payload
}

func (b *demoBrowser) state() (string, int) {
	var st struct {
		State  string
		Number int
	}
	b.getJSON("", &st)
	return st.State, st.Number
}

// complete posts the completion and returns the demo portal's page.
func (b *demoBrowser) complete() []byte {
	resp, err := b.c.Post(b.txnBase+"/complete", "application/x-www-form-urlencoded", nil)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

// TestBinariesDemoLogin runs the built esscd binary with --demo on a temp
// data dir, logs in through the demo portal with the built ecard binary as
// the phone, and shuts the server down cleanly (the README's make run flow).
func TestBinariesDemoLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	dir := t.TempDir()
	buildBinaries(t, dir, "esscd", "ecard", "esscctl")
	data := filepath.Join(dir, "data")
	srv := startESSCD(t, filepath.Join(dir, "esscd"), nil, "--data", data, "--demo")
	base := "http://" + srv.addr
	ecard := ecardCLI(t, dir, base)
	w := demoCards[0]
	ecard("init")
	ecard("apply", "--card", w.Number, "--ssn", ssnFor(w.SSNPrefix), "--name", w.Name, "--pin", w.PIN)

	br := startDemoLogin(t, base)
	if out := ecard("scan", br.payload()); !strings.Contains(out, "省网上办事大厅（演示）") {
		t.Fatalf("scan output: %s", out)
	}
	_, number := br.state()
	ecard("confirm", "--number", strconv.Itoa(number), "--pin", w.PIN)
	if body := br.complete(); !bytes.Contains(body, []byte("登录成功")) || !bytes.Contains(body, []byte("SM2SM3")) {
		t.Fatalf("demo portal after login:\n%s", body)
	}
	srv.stop(t)
	logs := srv.logs.String()
	if !strings.Contains(logs, "演示环境已启动") {
		t.Fatalf("no walkthrough printed:\n%s", logs)
	}
	// The README's commands: the same apply line as the walkthrough, and the
	// esscctl commands against the demo data.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	apply := fmt.Sprintf("bin/ecard apply --card %s --ssn %s --name %s --pin %s", w.Number, ssnFor(w.SSNPrefix), w.Name, w.PIN)
	if !bytes.Contains(readme, []byte(apply)) || !strings.Contains(logs, apply) {
		t.Errorf("README and walkthrough disagree on %q", apply)
	}
	db, keys := "sqlite://"+filepath.Join(data, "registry.db"), filepath.Join(data, "keys")
	for _, args := range [][]string{{"cards", "show", w.Number}, {"audit", "verify"}} {
		out, err := exec.Command(filepath.Join(dir, "esscctl"), append(args, "--database", db, "--keys", keys)...).CombinedOutput()
		if err != nil {
			t.Errorf("esscctl %v: %v\n%s", args, err, out)
		}
	}
}

// TestTwoReplicaProcesses runs two esscd processes on one Redis and one
// PostgreSQL behind a small path-routing proxy that stands for the load
// balancer (one issuer): the browser's requests reach replica 1, the e-card
// app's (the ecard binary) reach replica 2, and one QR login completes.
func TestTwoReplicaProcesses(t *testing.T) {
	r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL")
	if testing.Short() || r == "" || d == "" {
		t.Skip("needs ESSC_TEST_REDIS_URL and ESSC_TEST_DATABASE_URL (and not -short)")
	}
	dir := t.TempDir()
	buildBinaries(t, dir, "esscd", "ecard")
	db, data := postgresSchema(t, d), filepath.Join(dir, "data")
	prefix := fmt.Sprintf("essc-2r-%d:", time.Now().UnixNano())
	defer cleanRedis(t, r, prefix)
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + lb.Addr().String()
	args := []string{"--data", data, "--issuer", issuer, "--database", db, "--redis", r, "--demo"}
	env := []string{"ESSC_REDIS_PREFIX=" + prefix}
	r1 := startESSCD(t, filepath.Join(dir, "esscd"), env, args...) // seeds the demo first
	r2 := startESSCD(t, filepath.Join(dir, "esscd"), env, args...)
	var hits1, hits2 atomic.Int32
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		target := r1.addr
		if strings.HasPrefix(pr.In.URL.Path, "/wallet/") {
			target, _ = r2.addr, hits2.Add(1)
		} else {
			hits1.Add(1)
		}
		pr.SetURL(&url.URL{Scheme: "http", Host: target})
		pr.Out.Host = pr.In.Host
	}}
	lbSrv := &http.Server{Handler: proxy}
	go lbSrv.Serve(lb)
	t.Cleanup(func() { lbSrv.Close() })

	ecard := ecardCLI(t, dir, issuer)
	w := demoCards[0]
	ecard("init")
	ecard("apply", "--card", w.Number, "--ssn", ssnFor(w.SSNPrefix), "--name", w.Name, "--pin", w.PIN)
	br := startDemoLogin(t, issuer)
	ecard("scan", br.payload())
	st, number := br.state()
	if st != "scanned" {
		t.Fatalf("replica 1 does not see replica 2's scan: %s", st)
	}
	ecard("confirm", "--number", strconv.Itoa(number), "--pin", w.PIN)
	if body := br.complete(); !bytes.Contains(body, []byte("登录成功")) {
		t.Fatalf("login across replicas failed:\n%s", body)
	}
	if hits1.Load() == 0 || hits2.Load() < 3 {
		t.Fatalf("traffic not split: replica 1 %d, replica 2 %d", hits1.Load(), hits2.Load())
	}
	r1.stop(t)
	r2.stop(t)
}
