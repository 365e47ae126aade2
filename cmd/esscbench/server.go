package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// adminCredentials is DATA/admin-client.json as esscd bootstraps it.
type adminCredentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

func readAdminCredentials(dataDir string) (adminCredentials, error) {
	var c adminCredentials
	b, err := os.ReadFile(filepath.Join(dataDir, "admin-client.json"))
	if err != nil {
		return c, fmt.Errorf("esscbench: admin credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil || c.ClientID == "" || c.ClientSecret == "" {
		return c, fmt.Errorf("esscbench: %s/admin-client.json is not an admin credential file", dataDir)
	}
	return c, nil
}

// serverStats is one scrape of the server's /metrics.
type serverStats struct {
	CPUSeconds float64
	RSSBytes   float64
	Goroutines float64
}

// parseMetrics reads the process and Go collectors' values from a
// Prometheus text exposition. Missing process metrics are an error: without
// them the CPU-per-operation figure would silently be zero.
func parseMetrics(r io.Reader) (serverStats, error) {
	var s serverStats
	var seen int
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var dst *float64
		switch name {
		case "process_cpu_seconds_total":
			dst = &s.CPUSeconds
		case "process_resident_memory_bytes":
			dst = &s.RSSBytes
		case "go_goroutines":
			dst = &s.Goroutines
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return s, fmt.Errorf("esscbench: metrics: %s: %w", name, err)
		}
		*dst = v
		seen++
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if seen < 3 {
		return s, errors.New("esscbench: /metrics lacks process_cpu_seconds_total, process_resident_memory_bytes or go_goroutines")
	}
	return s, nil
}

func scrape(ctx context.Context, c *http.Client, base string) (serverStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return serverStats{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return serverStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverStats{}, fmt.Errorf("esscbench: /metrics: %d", resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

// parseCommandStats sums calls= over INFO commandstats lines.
func parseCommandStats(info string) (int64, error) {
	var n int64
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		_, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, ','); i >= 0 {
			rest = rest[:i]
		}
		v, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("esscbench: commandstats %q: %w", line, err)
		}
		n += v
	}
	return n, nil
}

// redisCommands is the server-wide number of commands Redis has executed.
// It counts every client of that Redis, so run on an otherwise idle Redis
// for exact per-operation figures.
func redisCommands(ctx context.Context, c *goredis.Client) (int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	return parseCommandStats(info)
}

// spawnConfig configures an esscd the tool starts itself.
type spawnConfig struct {
	Binary      string // esscd executable
	DatabaseURL string // "" → SQLite under the temp data dir
	RedisURL    string // "" → in-memory sessions
	Pprof       bool
}

// spawned is a running esscd child on a free loopback port.
type spawned struct {
	cmd     *exec.Cmd
	dir     string
	base    string
	logPath string
	done    chan error
	cleanup []func()
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// spawnServer starts esscd with a temporary data directory, lifted per-IP
// limits (the load comes from one address) and, for PostgreSQL, a fresh
// schema that is dropped on close; for Redis, a random key prefix whose keys
// are deleted on close. It returns once /readyz answers 200.
func spawnServer(ctx context.Context, cfg spawnConfig) (_ *spawned, err error) {
	dir, err := os.MkdirTemp("", "esscbench-")
	if err != nil {
		return nil, err
	}
	s := &spawned{dir: dir, done: make(chan error, 1)}
	s.cleanup = append(s.cleanup, func() { os.RemoveAll(dir) })
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	s.base = "http://" + addr
	dbURL := cfg.DatabaseURL
	if strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://") {
		if dbURL, err = s.freshSchema(ctx, dbURL); err != nil {
			return nil, err
		}
	}
	prefix := "essc-bench-" + randHex(6) + ":"
	if cfg.RedisURL != "" {
		opt, err := goredis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("esscbench: --spawn-redis: %w", err)
		}
		s.cleanup = append(s.cleanup, func() { deletePrefix(opt, prefix) })
	}
	conf := map[string]any{
		"mode": "development", "data": filepath.Join(dir, "data"), "listen": addr,
		"qr":            map[string]any{"transactions_per_ip_per_minute": 1 << 30},
		"wallet":        map[string]any{"anonymous_per_ip_per_10min": 1 << 30},
		"observability": map[string]any{"log_level": "warn", "pprof": cfg.Pprof},
		"database":      map[string]any{"url": dbURL},
		"redis":         map[string]any{"url": cfg.RedisURL, "prefix": prefix},
	}
	b, _ := json.Marshal(conf) // YAML is a superset of JSON
	confPath := filepath.Join(dir, "essc.yaml")
	if err := os.WriteFile(confPath, b, 0o600); err != nil {
		return nil, err
	}
	s.logPath = filepath.Join(dir, "esscd.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(cfg.Binary, "--config", confPath)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = cleanEnv(os.Environ())
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("esscbench: start %s: %w", cfg.Binary, err)
	}
	go func() { s.done <- s.cmd.Wait(); logf.Close() }()
	if err := s.waitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// cleanEnv drops ESSC_* variables so the child runs only on the written config.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "ESSC_") {
			out = append(out, kv)
		}
	}
	return out
}

func (s *spawned) freshSchema(ctx context.Context, dbURL string) (string, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", fmt.Errorf("esscbench: --spawn-database: %w", err)
	}
	schema := "essc_bench_" + randHex(6)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(ctx)
		return "", fmt.Errorf("esscbench: create schema: %w", err)
	}
	conn.Close(ctx)
	s.cleanup = append(s.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dbURL); err == nil {
			c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	})
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	return dbURL + sep + "search_path=" + schema, nil
}

func deletePrefix(opt *goredis.Options, prefix string) {
	c := goredis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for it.Next(ctx) {
		if batch = append(batch, it.Val()); len(batch) == 500 {
			c.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Unlink(ctx, batch...)
	}
}

func (s *spawned) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/readyz", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("esscbench: esscd exited before it was ready (%v); log:\n%s", err, s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("esscbench: esscd not ready after %s; log:\n%s", limit, s.logTail())
		}
	}
}

func (s *spawned) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// DataDir is the child's data directory (admin-client.json is there).
func (s *spawned) DataDir() string { return filepath.Join(s.dir, "data") }

// Close stops the child (SIGTERM, then SIGKILL after 15 s) and removes
// everything it created.
func (s *spawned) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}

// findEsscd resolves the esscd executable: the flag, else esscd beside this
// executable, else on PATH.
func findEsscd(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "esscd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("esscd")
	if err != nil {
		return "", errors.New("esscbench: --spawn needs esscd: build it (make build) or pass --esscd PATH")
	}
	return p, nil
}

// adminToken gets a client_credentials token for the bootstrap admin client.
func adminToken(ctx context.Context, c *http.Client, base string, cred adminCredentials, scope string) (string, error) {
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err := postForm(ctx, c, base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {scope}},
		cred.ClientID, cred.ClientSecret, &tok)
	if err != nil {
		return "", fmt.Errorf("esscbench: admin token: %w", err)
	}
	return tok.AccessToken, nil
}
