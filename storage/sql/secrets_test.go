package sql

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/essc-project/essc/storage"
)

func TestLoadOrCreateSecrets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s1, err := LoadOrCreateSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.validate(); err != nil || len(s1.PINKey) != 32 {
		t.Fatalf("created secrets invalid: %v", err)
	}
	for _, f := range secretFiles {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f.name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %v", fi.Mode().Perm())
	}
	s2, err := LoadOrCreateSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1.SSNKey, s2.SSNKey) || !bytes.Equal(s1.AuditKey, s2.AuditKey) || !bytes.Equal(s1.PINKey, s2.PINKey) {
		t.Fatal("reloading the key directory gave different keys")
	}
	for _, v := range []string{fmt.Sprint(s1), fmt.Sprintf("%+v", s1), fmt.Sprintf("%#v", s1), fmt.Sprintf("%v", Config{Secrets: s1})} {
		if strings.Contains(v, fmt.Sprint(s1.SSNKey[0])+" ") || strings.Contains(v, fmt.Sprintf("%x", s1.SSNKey)) || !strings.Contains(v, "redacted") {
			t.Fatalf("secrets printed: %s", v)
		}
	}
	t.Run("fail/malformed_file_is_not_replaced", func(t *testing.T) {
		p := filepath.Join(dir, "registry-audit.key")
		if err := os.WriteFile(p, []byte("zz\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateSecrets(dir); !errors.Is(err, storage.ErrInvalidRecord) {
			t.Fatalf("malformed key: %v", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "zz\n" {
			t.Fatal("malformed key file was overwritten")
		}
	})
}

func testStore(t testing.TB) *Store {
	s, err := LoadOrCreateSecrets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Store{secrets: s}
}

func TestSSNCrypto(t *testing.T) {
	s := testStore(t)
	ct, err := s.encryptSSN("h1", "41130119500101123x")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("4113011950")) {
		t.Fatal("ciphertext contains plaintext")
	}
	ct2, _ := s.encryptSSN("h1", "41130119500101123X")
	if bytes.Equal(ct, ct2) {
		t.Fatal("encryption is deterministic (nonce reuse)")
	}
	for _, tc := range []struct {
		name   string
		holder string
		ct     []byte
		want   string
	}{
		{"ok/roundtrip_normalised", "h1", ct, "41130119500101123X"},
		{"fail/other_holder", "h2", ct, ""},
		{"fail/flipped_bit", "h1", flip(ct, len(ct)-1), ""},
		{"fail/truncated", "h1", ct[:10], ""},
		{"fail/empty", "h1", nil, ""},
		{"fail/bad_version", "h1", append([]byte{9}, ct[1:]...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.decryptSSN(tc.holder, tc.ct)
			if tc.want == "" {
				if !errors.Is(err, storage.ErrInvalidRecord) {
					t.Fatalf("decrypt: %q, %v; want ErrInvalidRecord", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("decrypt = %q, %v", got, err)
			}
		})
	}
	if !bytes.Equal(s.blindIndex("41130119500101123x"), s.blindIndex("41130119500101123X")) {
		t.Fatal("blind index not normalised")
	}
	if bytes.Equal(s.blindIndex("411301195001011230"), s.blindIndex("411301195001011231")) {
		t.Fatal("blind index collides")
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestMaskSSN(t *testing.T) {
	for in, want := range map[string]string{
		"41130119500101123x": "4113**********123X",
		"411301195001011230": "4113**********1230",
		"12345":              "*****",
		"":                   "",
	} {
		if got := maskSSN(in); got != want {
			t.Errorf("maskSSN(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecryptSSN: a corrupted or hostile stored ciphertext never panics and
// never decrypts under the wrong holder.
func FuzzDecryptSSN(f *testing.F) {
	s := testStore(f)
	ct, _ := s.encryptSSN("h1", "411301195001011230")
	f.Add([]byte{}, "h1")
	f.Add(ct, "h1")
	f.Add(ct, "h2")
	f.Add(append([]byte{1}, make([]byte, 40)...), "")
	f.Fuzz(func(t *testing.T, b []byte, holder string) {
		pt, err := s.decryptSSN(holder, b)
		if err == nil && (holder != "h1" || !bytes.Equal(b, ct) || pt != "411301195001011230") {
			t.Fatalf("unexpected successful decryption of %x for %q", b, holder)
		}
	})
}

// FuzzSQLiteDSN: the URL parser never panics and always forces the safety pragmas.
func FuzzSQLiteDSN(f *testing.F) {
	for _, s := range []string{"sqlite:///tmp/x.db", "file:x.db?_txlock=deferred", "sqlite://:memory:", "file:", "sqlite://a?%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if strings.ContainsAny(raw, "\x00") || !(strings.HasPrefix(raw, "sqlite://") || strings.HasPrefix(raw, "file:")) {
			return
		}
		dir := t.TempDir()
		_ = dir
		dsn, err := sqliteDSN(strings.Replace(raw, "sqlite://", "sqlite://"+dir+"/", 1))
		if err != nil {
			return
		}
		// Only the query carries settings (the file name may contain anything),
		// and only the exact parameter names count (a "0_txlock" is not one).
		_, query, _ := strings.Cut(dsn, "?")
		v, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("dsn %q: query does not parse: %v", dsn, err)
		}
		if tx := v["_txlock"]; len(tx) != 1 || tx[0] != "immediate" || !slices.Contains(v["_pragma"], "foreign_keys(1)") {
			t.Fatalf("dsn %q lacks the forced settings", dsn)
		}
	})
}
