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
	dbsql "database/sql"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
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
}

// noPanic fails if the server log shows a recovered or unrecovered panic
// (after the process has exited: the log is written until then).
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

func startRedis(t *testing.T, bin, addr string, extra ...string) *redisProc {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	return startRedisArgs(t, bin, addr, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "yes"}, extra...))
}

// startRedisArgs runs redis-server with exactly args and waits until addr
// answers PING.
func startRedisArgs(t *testing.T, bin, addr string, args []string) *redisProc {
	t.Helper()
	r := &redisProc{bin: bin, addr: addr, done: make(chan struct{})}
	r.cmd = exec.Command(bin, args...)
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
	srv.stop(t)
	srv.noPanic(t)
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

// mountSmall mounts a tmpfs of size on dir (unmounted in cleanup) and
// reports whether it could.
func mountSmall(t *testing.T, dir, size string) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("mount tmpfs: %v %s", err, out)
		return false
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return true
}

// fillDisk writes filler files under dir until the file system is full and
// returns their paths.
func fillDisk(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	chunk := make([]byte, 4096)
	for i := 0; ; i++ {
		p := filepath.Join(dir, "filler-"+strconv.Itoa(i))
		f, err := os.Create(p)
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return files
			}
			t.Fatal(err)
		}
		files = append(files, p)
		full := false
		for n := 0; n < 256; n++ {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				full = true
				break
			}
		}
		f.Close()
		if full {
			return files
		}
	}
}

// adminToken gets a client-credentials token for the bootstrap admin client.
func adminToken(t *testing.T, base, data string) string {
	t.Helper()
	creds := readAdminCredentials(t, data)
	code, body := do(t, http.DefaultClient, "POST", base+"/oauth2/token",
		strings.NewReader("grant_type=client_credentials&scope=essc.admin.cards+essc.admin.audit"),
		"Content-Type", "application/x-www-form-urlencoded", "Authorization", basicAuth(creds.ClientID, creds.ClientSecret))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if code != 200 || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("admin token: %d %s", code, body)
	}
	return tok.AccessToken
}

// TestFaultSQLiteDiskFull runs the esscd binary on the embedded default
// (SQLite, in-memory sessions) with its data directory on a small tmpfs,
// fills the disk, and writes: an e-card application and an outlet action
// (report loss) answer 503 temporarily_unavailable without SQL text, a
// restart on the full disk comes up, the log names the data directory and
// "disk full"; once space is freed the same writes succeed and what was
// stored before is intact (card unchanged, integrity check, audit chain).
// Without permission to mount it falls back to SQLite's max_page_count.
func TestFaultSQLiteDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: runs the binary")
	}
	dir := t.TempDir()
	buildBinaries(t, dir, "esscd", "esscctl")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(data, "registry.db")
	mounted := mountSmall(t, data, "8m")
	if !mounted {
		t.Log("FALLBACK: cannot mount a tmpfs (not root or not permitted): the disk is \"full\" by SQLite's max_page_count instead")
	}
	bin := filepath.Join(dir, "esscd")
	start := func(dbURL string) *proc {
		return startESSCD(t, bin, nil, "--data", data, "--demo", "--database", dbURL, "--shutdown-timeout", "5s")
	}
	srv := start("sqlite://" + db)
	base := "http://" + srv.addr
	ctx := context.Background()
	k, _ := signing.GenerateKey(signing.AlgSM2SM3)
	phone := &client.Client{Base: base, Key: k}
	w, w2 := demoCards[0], demoCards[1]
	if _, err := phone.Apply(ctx, wallet.ApplyRequest{CardNumber: w.Number, SSN: ssnFor(w.SSNPrefix), Name: w.Name, PIN: w.PIN}); err != nil {
		t.Fatal(err)
	}
	tok := adminToken(t, base, data)
	getCard := func(base, tok string) []byte {
		code, body := do(t, http.DefaultClient, "GET", base+"/admin/v1/cards/"+w.Number, nil, "Authorization", "Bearer "+tok)
		if code != 200 {
			t.Fatalf("get card: %d %s", code, body)
		}
		return body
	}
	before := getCard(base, tok)
	var c struct{ Version int }
	json.Unmarshal(before, &c)
	reportLoss := func(base, tok string) (int, []byte) {
		return do(t, http.DefaultClient, "POST", base+"/admin/v1/cards/"+w.Number+"/report-loss",
			strings.NewReader(`{"version":`+strconv.Itoa(c.Version)+`}`), "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	}
	apply2 := func(base string) error {
		k2, _ := signing.GenerateKey(signing.AlgSM2SM3)
		_, err := (&client.Client{Base: base, Key: k2}).Apply(ctx, wallet.ApplyRequest{CardNumber: w2.Number, SSN: ssnFor(w2.SSNPrefix), Name: w2.Name, PIN: w2.PIN})
		return err
	}

	// Fill the disk.
	var fillers []string
	if mounted {
		fillers = fillDisk(t, data)
	} else {
		srv.stop(t)
		fillSQLite(t, db, "CREATE TABLE fault_filler (b BLOB)")
		srv = start("sqlite://" + db + "?_pragma=max_page_count(1)") // clamped to the current size
		base = "http://" + srv.addr
		tok = adminToken(t, base, data)
	}
	var e *client.Error
	applied := false
	if err := apply2(base); !mounted && err == nil {
		applied = true
		t.Log("FALLBACK: the e-card application fitted in free space of existing pages under max_page_count")
	} else if !errors.As(err, &e) || e.Status != 503 || e.Code != "temporarily_unavailable" {
		t.Errorf("e-card application on a full disk: %v (want 503 temporarily_unavailable)", err)
	} else {
		checkClean(t, "apply", []byte(e.Message))
	}
	code, body := reportLoss(base, tok)
	want503JSON(t, "report loss on a full disk", code, body)
	// A restart on the full disk comes up and still answers 503 for writes.
	srv.stop(t)
	logs := srv.logs.String()
	if mounted { // (under max_page_count the first write freed pages for the next)
		srv = start("sqlite://" + db)
		base = "http://" + srv.addr
		tok = adminToken(t, base, data)
		code, body = reportLoss(base, tok)
		want503JSON(t, "report loss after a restart on a full disk", code, body)
		srv.stop(t)
		logs += srv.logs.String()
	}
	if !strings.Contains(logs, "disk full") || !strings.Contains(logs, "data directory "+data) {
		t.Errorf("the log does not say \"disk full\" with the data directory %s:\n%s", data, logs)
	}
	if strings.Contains(logs, "panic") {
		t.Errorf("panic in the log:\n%s", logs)
	}

	// Free the space: nothing stored before is damaged; the writes succeed.
	for _, f := range fillers {
		os.Remove(f)
	}
	if !mounted {
		fillSQLite(t, db, "DROP TABLE fault_filler")
	}
	srv = start("sqlite://" + db)
	base = "http://" + srv.addr
	tok = adminToken(t, base, data)
	if after := getCard(base, tok); !bytes.Equal(after, before) {
		t.Errorf("card changed by the failed writes:\nbefore %s\nafter  %s", before, after)
	}
	if err := apply2(base); !applied && err != nil {
		t.Errorf("e-card application after freeing space: %v", err)
	}
	if code, body := reportLoss(base, tok); code != 200 {
		t.Errorf("report loss after freeing space: %d %s", code, body)
	}
	srv.stop(t)
	sqlDB, err := dbsql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	var integrity string
	if err := sqlDB.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check: %q %v", integrity, err)
	}
	sqlDB.Close()
	out, err := exec.Command(filepath.Join(dir, "esscctl"), "audit", "verify", "--database", "sqlite://"+db, "--keys", filepath.Join(data, "keys")).CombinedOutput()
	if err != nil {
		t.Errorf("audit chain after the disk-full episode: %v\n%s", err, out)
	}
}

// fillSQLite (the fallback without a tmpfs) runs stmt and, when it creates
// the filler table, fills the database file to its max_page_count.
func fillSQLite(t *testing.T, db, stmt string) {
	t.Helper()
	sqlDB, err := dbsql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(1)
	if _, err := sqlDB.Exec(stmt); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stmt, "CREATE") {
		return
	}
	var pages int
	if err := sqlDB.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlDB.Exec("PRAGMA max_page_count = " + strconv.Itoa(pages+64)); err != nil {
		t.Fatal(err)
	}
	for n := 0; ; n++ {
		if _, err := sqlDB.Exec("INSERT INTO fault_filler VALUES (randomblob(200))"); err != nil {
			if !strings.Contains(err.Error(), "full") || n == 0 {
				t.Fatalf("filling the database: %v", err)
			}
			break
		}
	}
	if _, err := sqlDB.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
}

// pgProxy is a TCP proxy in front of the shared PostgreSQL that the test can
// cut: refuse new connections and close the open ones, or close a
// connection the moment its client sends COMMIT (the transaction never
// commits; PostgreSQL rolls it back).
type pgProxy struct {
	ln          net.Listener
	upstream    string
	mu          sync.Mutex
	conns       map[net.Conn]bool
	down        bool
	cutAtCommit bool
	cutCommits  int
}

func startPGProxy(t *testing.T, upstream string) *pgProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, upstream: upstream, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.track(c, u)
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(u, c, true) }()
			go func() { defer wg.Done(); p.pipe(c, u, false) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut(); wg.Wait() })
	return p
}

func (p *pgProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = true
	}
}

// pipe copies src to dst; on the client side it watches for COMMIT.
func (p *pgProxy) pipe(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && bytes.Contains(bytes.ToLower(buf[:n]), []byte("commit")) {
				p.mu.Lock()
				cut := p.cutAtCommit
				if cut {
					p.cutCommits++
				}
				p.mu.Unlock()
				if cut {
					src.Close()
					dst.Close()
					return
				}
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// cut refuses new connections and closes the open ones.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.cutAtCommit = false, false
}

func (p *pgProxy) commitsCut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutCommits
}

func (p *pgProxy) armCommitCut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAtCommit, p.cutCommits = true, 0
}

// registrySnapshot is everything an outlet action may change.
type registrySnapshot struct {
	card   string
	events []storage.Event
	audit  []storage.AuditEntry
}

// TestFaultPostgresDownDuringOutletAction wires esscd (registry on a fresh
// PostgreSQL schema reached through a proxy the test cuts, sessions in
// memory) and runs outlet actions through the admin API while PostgreSQL
// goes away: cut at the action's COMMIT and fully unreachable. Each answers
// 503 temporarily_unavailable; after the proxy is restored the card, its
// e-card, the outbox and the audit log are exactly as before; repeating the
// action succeeds once and emits its events and audit entry exactly once.
func TestFaultPostgresDownDuringOutletAction(t *testing.T) {
	d := os.Getenv("ESSC_TEST_DATABASE_URL")
	if testing.Short() || d == "" {
		t.Skip("needs ESSC_TEST_DATABASE_URL (and not -short)")
	}
	u, err := url.Parse(postgresSchema(t, d))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startPGProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	q := u.Query()
	q.Set("sslmode", "disable") // the proxy must read the COMMIT, so no TLS through it
	u.RawQuery = q.Encode()
	s := newStack(t, u.String(), "")
	ctx := context.Background()
	number := s.issue(t, "41010519560315201", "P10000001")
	s.phone(t, "41010519560315201", number, "258147")
	tok := s.serviceToken(t, "outlet-terminal", "社保服务网点", "outlet.example.gov.cn", admin.ScopeCards)
	snapshot := func() registrySnapshot {
		t.Helper()
		code, body := do(t, http.DefaultClient, "GET", s.base+"/admin/v1/cards/"+number, nil, "Authorization", "Bearer "+tok)
		if code != 200 {
			t.Fatalf("get card: %d %s", code, body)
		}
		evs, err := s.a.reg.Events(ctx, 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		audit, err := s.a.reg.AuditEntries(ctx, 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		return registrySnapshot{card: string(body), events: evs, audit: audit}
	}
	same := func(what string, a, b registrySnapshot) {
		t.Helper()
		if a.card != b.card || len(a.events) != len(b.events) || len(a.audit) != len(b.audit) {
			t.Fatalf("%s: half-applied:\ncard %s\n  -> %s\nevents %d -> %d, audit %d -> %d", what, a.card, b.card,
				len(a.events), len(b.events), len(a.audit), len(b.audit))
		}
	}
	version := func(card string) int {
		var c struct{ Version int }
		json.Unmarshal([]byte(card), &c)
		return c.Version
	}
	action := func(name, extra string, v int) (int, []byte) {
		return do(t, http.DefaultClient, "POST", s.base+"/admin/v1/cards/"+number+"/"+name,
			strings.NewReader(`{"version":`+strconv.Itoa(v)+extra+`}`), "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	}

	for _, tc := range []struct{ name, extra, how string }{
		{"report-loss", "", "cut at commit"},
		{"report-loss", "", "unreachable"},
		{"cancel", `,"reason":"death"`, "cut at commit"},
	} {
		before := snapshot()
		v := version(before.card)
		if tc.how == "cut at commit" {
			proxy.armCommitCut()
		} else {
			proxy.cut()
		}
		code, body := action(tc.name, tc.extra, v)
		want503JSON(t, tc.name+" ("+tc.how+")", code, body)
		if tc.how == "cut at commit" && proxy.commitsCut() == 0 {
			t.Fatalf("%s: the proxy never saw the COMMIT", tc.name)
		}
		if tc.how == "unreachable" {
			waitReady(t, s.base, 503)
		}
		proxy.restore()
		waitReady(t, s.base, 200)
		same(tc.name+" ("+tc.how+")", before, snapshot())

		// Repeated: applied once, its events and audit entry once.
		if code, body := action(tc.name, tc.extra, v); code != 200 {
			t.Fatalf("%s repeated after recovery: %d %s", tc.name, code, body)
		}
		after := snapshot()
		if version(after.card) != v+1 || len(after.audit) != len(before.audit)+1 || len(after.events) <= len(before.events) {
			t.Fatalf("%s: version %d→%d, audit %d→%d, events %d→%d", tc.name, v, version(after.card),
				len(before.audit), len(after.audit), len(before.events), len(after.events))
		}
		seen := map[string]bool{}
		for _, e := range after.events[len(before.events):] {
			k := e.Type + "/" + e.Aggregate
			if seen[k] {
				t.Fatalf("%s: event %s emitted twice", tc.name, k)
			}
			seen[k] = true
		}
		if code, _ := action(tc.name, tc.extra, v); code == 200 {
			t.Fatalf("fail/%s applied twice with the same version", tc.name)
		}
		if tc.name == "report-loss" {
			if code, body := action("unfreeze", "", v+1); code != 200 {
				t.Fatalf("unfreeze: %d %s", code, body)
			}
		}
	}
}
