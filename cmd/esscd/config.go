package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Mode is the deployment mode. Production refuses insecure settings.
type Mode string

const (
	ModeDevelopment Mode = "development"
	ModeProduction  Mode = "production"
)

// FileConfig is the schema of essc.yaml (see essc.example.yaml). It is the
// outer configuration layer: Validate reports every problem at once, and the
// wiring in server.go turns it into each package's typed runtime Config.
type FileConfig struct {
	Mode   Mode   `yaml:"mode"`
	Issuer string `yaml:"issuer"` // base URL of the intl profile; the gm profile is Issuer+"/gm"
	Listen string `yaml:"listen"`
	Data   string `yaml:"data"` // directory of the embedded default and of keys unless keys.dir is set
	Demo   bool   `yaml:"demo"` // seed demo cards and clients and serve /demo

	Database struct {
		URL          string `yaml:"url"` // postgres://… or sqlite://path; empty: sqlite under Data
		URLFile      string `yaml:"url_file"`
		MaxOpenConns int    `yaml:"max_open_conns"`
	} `yaml:"database"`

	Redis struct {
		URL          string   `yaml:"url"` // redis://… single node; empty (and no sentinel/cluster): in-memory sessions
		Addrs        []string `yaml:"addrs"`
		MasterName   string   `yaml:"master_name"` // Sentinel
		Cluster      bool     `yaml:"cluster"`
		PasswordFile string   `yaml:"password_file"`
		DB           int      `yaml:"db"`
		Prefix       string   `yaml:"prefix"`
	} `yaml:"redis"`

	Keys struct {
		Dir           string        `yaml:"dir"`
		PasswordFile  string        `yaml:"password_file"`
		CheckInterval time.Duration `yaml:"check_interval"`
	} `yaml:"keys"`

	QR struct {
		// TxnPerIPPerMinute bounds new login transactions per browser IP
		// (many citizens may share one NAT address; default 60).
		TxnPerIPPerMinute int `yaml:"transactions_per_ip_per_minute"`
	} `yaml:"qr"`

	Wallet struct {
		// AnonymousPerIPPer10Min bounds apply / PIN-change / bind requests
		// per source IP (PIN spraying); default 60.
		AnonymousPerIPPer10Min int `yaml:"anonymous_per_ip_per_10min"`
	} `yaml:"wallet"`

	Entitlement struct {
		Webhooks WebhookSettings `yaml:"webhooks"`
	} `yaml:"entitlement"`

	Liveness struct {
		Verifier   string `yaml:"verifier"` // "none" | "development"
		DevKeyFile string `yaml:"development_key_file"`
	} `yaml:"liveness"`

	HTTP struct {
		TrustedProxies  []string      `yaml:"trusted_proxies"` // CIDRs whose X-Forwarded-For is believed
		TLSTerminated   bool          `yaml:"tls_terminated"`  // a TLS proxy is in front (required in production)
		ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
		// ReadHeaderTimeout cuts a client that sends its headers too slowly
		// (slowloris); ReadTimeout one whose whole request (headers and
		// body) takes longer. Defaults 10 s and 30 s.
		ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
		ReadTimeout       time.Duration `yaml:"read_timeout"`
	} `yaml:"http"`

	Observability struct {
		LogLevel string `yaml:"log_level"` // debug|info|warn|error
		Metrics  *bool  `yaml:"metrics"`
		Pprof    bool   `yaml:"pprof"` // /debug/pprof on the admin listener only
	} `yaml:"observability"`

	// problems are values of the environment layer that did not parse;
	// Validate reports them with everything else.
	problems []error
}

// WebhookSettings tune the agencies' webhook dispatcher (entitlement.webhooks).
// Retries back off from RetryBase, doubling, capped at RetryMax; the
// MaxAttempts-th failure dead-letters the event (an agency redelivers it on
// demand). A delivery is started only in the first half of a Lease, so the
// lease must be at least twice the request Timeout: a request that runs to
// its timeout still ends inside the lease, and no second replica can claim
// the agency and deliver concurrently.
type WebhookSettings struct {
	Lease        time.Duration `yaml:"lease"`
	MaxAttempts  int           `yaml:"max_attempts"`
	RetryBase    time.Duration `yaml:"retry_base"`
	RetryMax     time.Duration `yaml:"retry_max"`
	PollInterval time.Duration `yaml:"poll_interval"`
	Timeout      time.Duration `yaml:"timeout"`
}

// Backoff is the delay after the n-th failed attempt (n ≥ 1):
// RetryBase·2^(n-1), capped at RetryMax.
func (w WebhookSettings) Backoff(n int) time.Duration {
	d := w.RetryBase
	for i := 1; i < n && d < w.RetryMax; i++ {
		d *= 2
	}
	return min(d, w.RetryMax)
}

// defaults returns the embedded-default configuration (make run).
func defaults() FileConfig {
	var c FileConfig
	c.Mode = ModeDevelopment
	c.Listen = "127.0.0.1:8080"
	c.Data = "./data"
	c.Redis.Prefix = "essc:"
	c.Keys.CheckInterval = time.Hour
	c.Liveness.Verifier = "none"
	c.QR.TxnPerIPPerMinute = 60
	c.Wallet.AnonymousPerIPPer10Min = 60
	c.HTTP.ShutdownTimeout = 15 * time.Second
	c.HTTP.ReadHeaderTimeout = 10 * time.Second
	c.HTTP.ReadTimeout = 30 * time.Second
	c.Observability.LogLevel = "info"
	c.Entitlement.Webhooks = WebhookSettings{Lease: time.Minute, MaxAttempts: 8, RetryBase: time.Second,
		RetryMax: time.Hour, PollInterval: time.Second, Timeout: 10 * time.Second}
	return c
}

// loadFile reads a YAML configuration over the defaults; unknown keys are errors.
func loadFile(path string, c *FileConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// envOverrides applies ESSC_* variables (they win over the file, flags win over them).
func envOverrides(c *FileConfig, getenv func(string) string) {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	var mode string
	set(&mode, "ESSC_MODE")
	if mode != "" {
		c.Mode = Mode(mode)
	}
	set(&c.Issuer, "ESSC_ISSUER")
	set(&c.Listen, "ESSC_LISTEN")
	set(&c.Data, "ESSC_DATA")
	set(&c.Database.URL, "ESSC_DATABASE_URL")
	set(&c.Database.URLFile, "ESSC_DATABASE_URL_FILE")
	set(&c.Redis.URL, "ESSC_REDIS_URL")
	set(&c.Redis.PasswordFile, "ESSC_REDIS_PASSWORD_FILE")
	set(&c.Redis.Prefix, "ESSC_REDIS_PREFIX")
	set(&c.Keys.PasswordFile, "ESSC_KEY_PASSWORD_FILE")
	set(&c.Liveness.Verifier, "ESSC_LIVENESS_VERIFIER")
	duration := func(dst *time.Duration, key string) {
		if v := getenv(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				c.problems = append(c.problems, fmt.Errorf("%s: %q is not a duration", key, v))
				return
			}
			*dst = d
		}
	}
	wh := &c.Entitlement.Webhooks
	duration(&wh.Lease, "ESSC_WEBHOOK_LEASE")
	duration(&wh.RetryBase, "ESSC_WEBHOOK_RETRY_BASE")
	duration(&wh.RetryMax, "ESSC_WEBHOOK_RETRY_MAX")
	duration(&wh.PollInterval, "ESSC_WEBHOOK_POLL_INTERVAL")
	duration(&wh.Timeout, "ESSC_WEBHOOK_TIMEOUT")
	if v := getenv("ESSC_WEBHOOK_MAX_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			c.problems = append(c.problems, fmt.Errorf("ESSC_WEBHOOK_MAX_ATTEMPTS: %q is not a number", v))
		} else {
			wh.MaxAttempts = n
		}
	}
}

// Finish fills derived defaults (after file, env and flags are applied).
func (c *FileConfig) Finish() {
	if c.Keys.Dir == "" {
		c.Keys.Dir = filepath.Join(c.Data, "keys")
	}
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Listen
	}
	c.Issuer = strings.TrimSuffix(c.Issuer, "/")
	if c.Demo && c.Liveness.Verifier == "none" && c.Mode != ModeProduction {
		c.Liveness.Verifier = "development" // the demo shows face confirmation with a generated test key
	}
	if c.Database.URL == "" && c.Database.URLFile == "" {
		c.Database.URL = "sqlite://" + filepath.Join(c.Data, "registry.db")
	}
}

// MetricsEnabled reports whether /metrics is served (default on).
func (c *FileConfig) MetricsEnabled() bool {
	return c.Observability.Metrics == nil || *c.Observability.Metrics
}

// RedisEnabled reports whether sessions live in Redis (otherwise in memory).
func (c *FileConfig) RedisEnabled() bool { return c.Redis.URL != "" || len(c.Redis.Addrs) > 0 }

// Validate reports every problem of the configuration at once, joined.
func (c *FileConfig) Validate() error {
	errs := append([]error(nil), c.problems...)
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.Mode != ModeDevelopment && c.Mode != ModeProduction {
		bad("mode: %q is neither development nor production", c.Mode)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen: %q is not host:port", c.Listen)
	}
	iss, err := url.Parse(c.Issuer)
	if err != nil || iss.Host == "" || (iss.Scheme != "http" && iss.Scheme != "https") || iss.RawQuery != "" || iss.Fragment != "" {
		bad("issuer: %q must be an absolute http(s) URL without query or fragment", c.Issuer)
		iss = nil
	}
	if c.Data == "" {
		bad("data: must not be empty")
	}
	if c.Database.URL != "" && c.Database.URLFile != "" {
		bad("database: set url or url_file, not both")
	}
	if u := c.Database.URL; u != "" && !hasAnyPrefix(u, "postgres://", "postgresql://", "sqlite://", "file:") {
		bad("database.url: unsupported scheme (postgres://, sqlite://)")
	}
	if c.Database.MaxOpenConns < 0 {
		bad("database.max_open_conns: must not be negative")
	}
	if c.Redis.URL != "" && len(c.Redis.Addrs) > 0 {
		bad("redis: set url (single node) or addrs (Sentinel/Cluster), not both")
	}
	if c.Redis.MasterName != "" && c.Redis.Cluster {
		bad("redis: master_name (Sentinel) and cluster are exclusive")
	}
	if len(c.Redis.Addrs) > 0 && c.Redis.MasterName == "" && !c.Redis.Cluster {
		bad("redis.addrs: set master_name (Sentinel) or cluster: true")
	}
	if c.Redis.URL != "" && !hasAnyPrefix(c.Redis.URL, "redis://", "rediss://", "unix://") {
		bad("redis.url: unsupported scheme (redis://, rediss://, unix://)")
	}
	if c.QR.TxnPerIPPerMinute <= 0 {
		bad("qr.transactions_per_ip_per_minute: must be positive")
	}
	if c.Wallet.AnonymousPerIPPer10Min <= 0 {
		bad("wallet.anonymous_per_ip_per_10min: must be positive")
	}
	if c.Keys.CheckInterval <= 0 {
		bad("keys.check_interval: must be positive")
	}
	if c.HTTP.ShutdownTimeout <= 0 {
		bad("http.shutdown_timeout: must be positive")
	}
	if c.HTTP.ReadHeaderTimeout <= 0 || c.HTTP.ReadTimeout < c.HTTP.ReadHeaderTimeout {
		bad("http.read_header_timeout and http.read_timeout: must be positive, read_timeout at least read_header_timeout")
	}
	validateWebhooks(c.Entitlement.Webhooks, bad)
	for _, p := range c.HTTP.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil {
			bad("http.trusted_proxies: %q is not a CIDR", p)
		}
	}
	switch c.Liveness.Verifier {
	case "none":
	case "development":
		if c.Liveness.DevKeyFile == "" && !c.Demo {
			bad("liveness.development_key_file: required with the development verifier")
		}
	default:
		bad("liveness.verifier: %q is not one of none, development", c.Liveness.Verifier)
	}
	switch c.Observability.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("observability.log_level: %q is not debug|info|warn|error", c.Observability.LogLevel)
	}

	if c.Mode == ModeProduction {
		if iss != nil && iss.Scheme != "https" {
			bad("production: issuer must be https (got %q)", c.Issuer)
		}
		if !c.HTTP.TLSTerminated {
			bad("production: http.tls_terminated must be true (TLS in front of esscd is required)")
		}
		if c.Liveness.Verifier == "development" {
			bad("production: the development liveness verifier is refused")
		}
		if c.Demo {
			bad("production: demo data is refused")
		}
		if !c.RedisEnabled() {
			bad("production: sessions must be in Redis (redis.url or redis.addrs); in-memory sessions do not survive restarts or scale out")
		}
		if u := c.Database.URL; u != "" && !hasAnyPrefix(u, "postgres://", "postgresql://") {
			bad("production: database must be PostgreSQL")
		}
		if c.Observability.Pprof {
			bad("production: pprof must be off")
		}
	} else if iss != nil && iss.Scheme == "http" && !isLoopbackHost(iss.Hostname()) {
		bad("issuer: plain http is allowed only on loopback (got %q)", c.Issuer)
	}
	return errors.Join(errs...)
}

// Bounds of entitlement.webhooks: below them a dispatcher hammers the
// database or the agency, above them an event waits for hours for no reason.
const (
	webhookMinInterval = 10 * time.Millisecond
	webhookMaxLease    = time.Hour
	webhookMaxRetry    = 24 * time.Hour
	webhookMaxPoll     = time.Minute
	webhookMaxTimeout  = 5 * time.Minute
	webhookMaxAttempts = 100
)

func validateWebhooks(w WebhookSettings, bad func(string, ...any)) {
	const p = "entitlement.webhooks."
	if w.Timeout <= 0 || w.Timeout > webhookMaxTimeout {
		bad(p+"timeout: %v must be positive and at most %v", w.Timeout, webhookMaxTimeout)
	}
	if w.Lease <= 0 || w.Lease > webhookMaxLease {
		bad(p+"lease: %v must be positive and at most %v", w.Lease, webhookMaxLease)
	} else if w.Timeout > 0 && w.Lease < 2*w.Timeout {
		bad(p+"lease: %v must be at least twice timeout (%v): deliveries start only in the first half of a lease, and a request must end inside it", w.Lease, w.Timeout)
	}
	if w.MaxAttempts < 1 || w.MaxAttempts > webhookMaxAttempts {
		bad(p+"max_attempts: %d must be between 1 and %d", w.MaxAttempts, webhookMaxAttempts)
	}
	if w.RetryMax < webhookMinInterval || w.RetryMax > webhookMaxRetry {
		bad(p+"retry_max: %v must be between %v and %v", w.RetryMax, webhookMinInterval, webhookMaxRetry)
	}
	if w.RetryBase < webhookMinInterval || w.RetryBase > w.RetryMax {
		bad(p+"retry_base: %v must be at least %v and at most retry_max (%v)", w.RetryBase, webhookMinInterval, w.RetryMax)
	}
	if w.PollInterval < webhookMinInterval || w.PollInterval > webhookMaxPoll {
		bad(p+"poll_interval: %v must be between %v and %v", w.PollInterval, webhookMinInterval, webhookMaxPoll)
	}
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// readSecretFile reads a secret from a file, dropping one trailing newline.
// The value is never logged.
func readSecretFile(what, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s: file %s is empty", what, path)
	}
	return s, nil
}
