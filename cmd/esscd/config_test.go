package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if c.Mode != ModeProduction || c.Redis.MasterName != "essc" || c.Database.URLFile == "" {
		t.Fatalf("example not read as written: %+v", c)
	}
}
