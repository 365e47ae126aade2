package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	prod := func(c *FileConfig) {
		c.Mode = ModeProduction
		c.Issuer = "https://id.example.gov.cn"
		c.HTTP.TLSTerminated = true
		c.Redis.URL = "redis://10.0.0.5:6379/0"
		c.Database.URL = "postgres://essc@db/essc"
	}
	tests := []struct {
		name  string
		edit  func(*FileConfig)
		wants []string // substrings every one of which must be reported
	}{
		{"ok/embedded-default", func(*FileConfig) {}, nil},
		{"ok/production", prod, nil},
		{"ok/sentinel", func(c *FileConfig) { c.Redis.Addrs = []string{"a:26379"}; c.Redis.MasterName = "m" }, nil},
		{"fail/http-issuer-off-loopback", func(c *FileConfig) { c.Issuer = "http://id.example.gov.cn" }, []string{"only on loopback"}},
		{"fail/production-insecure", func(c *FileConfig) {
			prod(c)
			c.Issuer = "http://127.0.0.1:8080"
			c.HTTP.TLSTerminated = false
			c.Liveness.Verifier = "development"
			c.Liveness.DevKeyFile = "k"
			c.Redis.URL = ""
			c.Database.URL = "sqlite://x.db"
			c.Demo = true
		}, []string{"issuer must be https", "tls_terminated", "development liveness", "Redis", "PostgreSQL", "demo"}},
		{"fail/every-problem-at-once", func(c *FileConfig) {
			c.Mode = "staging"
			c.Listen = "8080"
			c.Database.URL = "mysql://x"
			c.Redis.URL = "http://x"
			c.Liveness.Verifier = "magic"
			c.Observability.LogLevel = "loud"
			c.HTTP.TrustedProxies = []string{"10.0.0.1"}
		}, []string{"mode:", "listen:", "database.url", "redis.url", "liveness.verifier", "log_level", "trusted_proxies"}},
		{"fail/redis-both", func(c *FileConfig) { c.Redis.URL = "redis://x"; c.Redis.Addrs = []string{"y:1"} }, []string{"not both"}},
		{"fail/addrs-without-mode", func(c *FileConfig) { c.Redis.Addrs = []string{"y:1"} }, []string{"master_name"}},
		{"fail/issuer-query", func(c *FileConfig) { c.Issuer = "http://127.0.0.1:8080/?x=1" }, []string{"without query"}},
		{"ok/webhooks-tuned", func(c *FileConfig) {
			c.Entitlement.Webhooks = WebhookSettings{Lease: 4 * time.Second, MaxAttempts: 1, RetryBase: 10 * time.Millisecond,
				RetryMax: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond, Timeout: 2 * time.Second}
		}, nil},
		{"fail/webhooks-every-problem", func(c *FileConfig) {
			c.Listen = "8080" // reported together with the webhook problems
			c.Entitlement.Webhooks = WebhookSettings{Lease: 0, MaxAttempts: 0, RetryBase: time.Millisecond,
				RetryMax: 48 * time.Hour, PollInterval: 0, Timeout: -time.Second}
		}, []string{"listen:", "webhooks.lease", "webhooks.max_attempts", "webhooks.retry_base", "webhooks.retry_max",
			"webhooks.poll_interval", "webhooks.timeout"}},
		{"fail/webhook-lease-shorter-than-two-requests", func(c *FileConfig) {
			c.Entitlement.Webhooks.Lease = 15 * time.Second // default timeout 10s
		}, []string{"webhooks.lease: 15s must be at least twice timeout"}},
		{"fail/webhook-retry-base-above-max", func(c *FileConfig) {
			c.Entitlement.Webhooks.RetryBase, c.Entitlement.Webhooks.RetryMax = time.Minute, time.Second
		}, []string{"retry_base: 1m0s must be at least 10ms and at most retry_max"}},
		{"fail/webhook-too-long", func(c *FileConfig) {
			c.Entitlement.Webhooks.Lease, c.Entitlement.Webhooks.Timeout = 2*time.Hour, 10*time.Minute
			c.Entitlement.Webhooks.MaxAttempts, c.Entitlement.Webhooks.PollInterval = 1000, 2*time.Minute
		}, []string{"webhooks.lease", "webhooks.timeout", "webhooks.max_attempts", "webhooks.poll_interval"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			tc.edit(&c)
			c.Finish()
			err := c.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid configuration")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "essc.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:9000\nredis:\n  prefix: \"x:\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := defaults()
	if err := loadFile(path, &c); err != nil {
		t.Fatal(err)
	}
	envOverrides(&c, func(k string) string {
		return map[string]string{"ESSC_LISTEN": "127.0.0.1:9100", "ESSC_DATABASE_URL": "postgres://p@h/db"}[k]
	})
	c.Finish()
	if c.Listen != "127.0.0.1:9100" || c.Redis.Prefix != "x:" || c.Database.URL != "postgres://p@h/db" {
		t.Fatalf("layers not applied: %+v", c)
	}
	if c.Issuer != "http://127.0.0.1:9100" || c.Keys.Dir != filepath.Join("data", "keys") {
		t.Fatalf("derived defaults wrong: issuer %q keys %q", c.Issuer, c.Keys.Dir)
	}

	t.Run("fail/unknown-key", func(t *testing.T) {
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte("lisen: 1\n"), 0o600)
		c := defaults()
		if err := loadFile(p, &c); err == nil || !strings.Contains(err.Error(), "lisen") {
			t.Fatalf("unknown key accepted: %v", err)
		}
	})
	t.Run("ok/empty-file", func(t *testing.T) {
		p := filepath.Join(dir, "empty.yaml")
		os.WriteFile(p, nil, 0o600)
		c := defaults()
		if err := loadFile(p, &c); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("fail/missing-file", func(t *testing.T) {
		c := defaults()
		if err := loadFile(filepath.Join(dir, "nope.yaml"), &c); err == nil {
			t.Fatal("missing file accepted")
		}
	})
}

// TestWebhookSettingsLayers: the defaults are the dispatcher's historic
// behaviour; the file, ESSC_WEBHOOK_* and --webhook-* flags override them
// in that order; an unparsable environment value is reported with every
// other problem instead of being ignored.
func TestWebhookSettingsLayers(t *testing.T) {
	def := defaults().Entitlement.Webhooks
	if def != (WebhookSettings{Lease: time.Minute, MaxAttempts: 8, RetryBase: time.Second, RetryMax: time.Hour,
		PollInterval: time.Second, Timeout: 10 * time.Second}) {
		t.Fatalf("defaults changed: %+v", def)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "essc.yaml")
	os.WriteFile(path, []byte("entitlement:\n  webhooks:\n    lease: 30s\n    max_attempts: 5\n    retry_base: 2s\n    poll_interval: 500ms\n"), 0o600)
	env := map[string]string{"ESSC_CONFIG": path, "ESSC_WEBHOOK_MAX_ATTEMPTS": "6", "ESSC_WEBHOOK_RETRY_MAX": "10m", "ESSC_DATA": dir}
	c, err := loadConfig([]string{"--webhook-timeout", "3s", "--webhook-retry-max", "5m"}, io.Discard, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := WebhookSettings{Lease: 30 * time.Second, MaxAttempts: 6, RetryBase: 2 * time.Second, RetryMax: 5 * time.Minute,
		PollInterval: 500 * time.Millisecond, Timeout: 3 * time.Second}
	if c.Entitlement.Webhooks != want {
		t.Fatalf("layers: got %+v want %+v", c.Entitlement.Webhooks, want)
	}

	t.Run("fail/env-values-reported-with-other-problems", func(t *testing.T) {
		env := map[string]string{"ESSC_DATA": dir, "ESSC_LISTEN": "nope", "ESSC_WEBHOOK_LEASE": "soon", "ESSC_WEBHOOK_MAX_ATTEMPTS": "many"}
		_, err := loadConfig(nil, io.Discard, func(k string) string { return env[k] })
		for _, w := range []string{"listen:", "ESSC_WEBHOOK_LEASE: \"soon\"", "ESSC_WEBHOOK_MAX_ATTEMPTS: \"many\""} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error does not mention %q: %v", w, err)
			}
		}
	})
	t.Run("fail/flag-lease-shorter-than-two-timeouts", func(t *testing.T) {
		_, err := loadConfig([]string{"--data", dir, "--webhook-lease", "3s", "--webhook-timeout", "2s"}, io.Discard, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "at least twice timeout") {
			t.Fatalf("lease < 2×timeout accepted: %v", err)
		}
	})
}

// TestWebhookBackoff: doubling from retry_base, capped at retry_max; the
// defaults give the historic 1 s, 2 s, … 64 s (127 s over 8 attempts).
func TestWebhookBackoff(t *testing.T) {
	def := defaults().Entitlement.Webhooks
	var total time.Duration
	for n := 1; n < def.MaxAttempts; n++ {
		if got, want := def.Backoff(n), time.Second<<(n-1); got != want {
			t.Fatalf("default backoff(%d) = %v, want %v", n, got, want)
		}
		total += def.Backoff(n)
	}
	if total != 127*time.Second || def.Backoff(13) != time.Hour || def.Backoff(1000) != time.Hour {
		t.Fatalf("default total %v, backoff(13) %v, backoff(1000) %v", total, def.Backoff(13), def.Backoff(1000))
	}
	w := WebhookSettings{RetryBase: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 300 * time.Millisecond, 50: 300 * time.Millisecond} {
		if got := w.Backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestExampleConfig keeps docs/essc.example.yaml loadable and valid.
func TestExampleConfig(t *testing.T) {
	c := defaults()
	if err := loadFile(filepath.Join("..", "..", "docs", "essc.example.yaml"), &c); err != nil {
		t.Fatal(err)
	}
	c.Finish()
	if err := c.Validate(); err != nil {
		t.Fatalf("the documented example does not validate: %v", err)
	}
	if c.Mode != ModeProduction || c.Redis.MasterName != "essc" || c.Database.URLFile == "" || c.Entitlement.Webhooks.MaxAttempts != 10 {
		t.Fatalf("example not read as written: %+v", c)
	}
}

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		name, gogc string
		want       int
	}{
		{"ok/unset-uses-esscd-default", "", defaultGCPercent},
		{"ok/env-wins", "100", 0},
		{"ok/env-off-wins", "off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := gcPercentFor(func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			})
			if got != tc.want {
				t.Fatalf("GOGC=%q: %d, want %d", tc.gogc, got, tc.want)
			}
		})
	}
}
