package signing

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for KeySet tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fastGen avoids RSA generation cost in rotation tests.
func fastGen(t testing.TB) func(string) (*Key, error) {
	rsaKey := mustKey(t, AlgRS256)
	used := false
	return func(alg string) (*Key, error) {
		if alg == AlgRS256 && !used {
			used = true
			return rsaKey, nil
		}
		if alg == AlgRS256 {
			return nil, errors.New("test generator: one RSA key only")
		}
		return GenerateKey(alg)
	}
}

func kids(j JWKS) []string {
	var out []string
	for _, k := range j.Keys {
		out = append(out, k.Kid)
	}
	return out
}

func TestKeySetLifecycle(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	pol := Policy{PublishLead: time.Hour, ActiveFor: 10 * time.Hour, RetiredFor: 2 * time.Hour}
	ks, err := NewKeySet(KeySetConfig{Now: clk.Now, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Active(AlgSM2SM3); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("empty set Active: %v", err)
	}
	made, err := ks.EnsureActive(clk.Now(), AlgSM2SM3, AlgES256)
	if err != nil || len(made) != 2 {
		t.Fatalf("EnsureActive: %v %d", err, len(made))
	}
	first, _ := ks.Active(AlgSM2SM3)
	es, _ := ks.Active(AlgES256)
	if again, _ := ks.EnsureActive(clk.Now(), AlgSM2SM3); len(again) != 0 {
		t.Fatal("EnsureActive is not idempotent")
	}
	tok, _ := SignClaims(first, "JWT", map[string]int{"n": 1})

	// ok/rotate adds a pending key, published but not signing or verifying.
	next, err := ks.Rotate(AlgSM2SM3, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := ks.Active(AlgSM2SM3); a != first {
		t.Fatal("pending key signs")
	}
	if _, err := ks.ResolveKey(next.ID(), AlgSM2SM3); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("pending key resolves: %v", err)
	}
	if got := kids(ks.Publish(AlgSM2SM3)); len(got) != 2 || got[0] != first.ID() || got[1] != next.ID() {
		t.Fatalf("gm publish %v", got)
	}
	if got := kids(ks.Publish(AlgES256, AlgRS256)); len(got) != 1 || got[0] != es.ID() {
		t.Fatalf("intl publish %v (an SM2 key must never be in the intl JWKS)", got)
	}

	// ok/time activates the pending key and retires the old one.
	clk.Add(time.Hour)
	if a, _ := ks.Active(AlgSM2SM3); a != next {
		t.Fatal("pending key not active after PublishLead")
	}
	if _, _, err := Verify(tok, ks); err != nil {
		t.Fatalf("retired key must verify: %v", err)
	}
	// fail/removed after RetiredFor.
	clk.Add(2 * time.Hour)
	if _, _, err := Verify(tok, ks); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("removed key verifies: %v", err)
	}
	if got := kids(ks.Publish(AlgSM2SM3)); len(got) != 1 {
		t.Fatalf("removed key published: %v", got)
	}
	// fail/kid of another alg.
	tokES, _ := SignClaims(es, "", map[string]int{})
	if _, err := ks.ResolveKey(es.ID(), AlgSM2SM3); !errors.Is(err, ErrAlgMismatch) {
		t.Fatalf("alg mismatch: %v", err)
	}
	if _, _, err := Verify(tokES, ks); err != nil {
		t.Fatal(err)
	}

	// ok/Maintain schedules a successor before ActiveFor runs out and prunes.
	if ch, err := ks.Maintain(clk.Now()); err != nil || !ch {
		t.Fatalf("Maintain prune: %v %v", ch, err)
	}
	n := len(ks.Entries())
	clk.Add(9*time.Hour + 30*time.Minute) // next activated 12h30 ago? no: 10h30 - 1h lead
	if ch, err := ks.Maintain(clk.Now()); err != nil || !ch {
		t.Fatalf("Maintain rotate: %v %v", ch, err)
	}
	if len(ks.Entries()) <= n {
		t.Fatal("Maintain added no key")
	}
	if ch, _ := ks.Maintain(clk.Now()); ch {
		t.Fatal("Maintain not idempotent")
	}
	// explicit Rotate promotes the pending successor at once.
	succ, err := ks.Rotate(AlgSM2SM3, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := ks.Active(AlgSM2SM3); a != succ || succ == next {
		t.Fatal("Rotate did not promote the pending key")
	}
	if _, err := ks.ResolveKey(next.ID(), AlgSM2SM3); err != nil {
		t.Fatalf("just-retired key: %v", err)
	}
	if _, err := ks.Rotate("HS256", clk.Now()); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatal(err)
	}
}

func TestKeySetConcurrent(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	ks, _ := NewKeySet(KeySetConfig{Now: clk.Now})
	if _, err := ks.EnsureActive(clk.Now(), AlgES256); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				k, err := ks.Active(AlgES256)
				if err != nil {
					t.Error(err)
					return
				}
				tok, _ := SignClaims(k, "", map[string]int{"j": j})
				if _, _, err := Verify(tok, ks); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				if _, err := ks.Rotate(AlgES256, clk.Now()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

func TestKeyDir(t *testing.T) {
	for _, pw := range []string{"", "correct horse"} {
		name := "ok/plain"
		if pw != "" {
			name = "ok/encrypted"
		}
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			clk := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
			cfg := KeySetConfig{Now: clk.Now, Generate: fastGen(t)}
			d, err := OpenKeyDir(dir, []byte(pw), cfg)
			if err != nil {
				t.Fatal(err)
			}
			made, err := d.EnsureDefaults(clk.Now())
			if err != nil || len(made) != 3 {
				t.Fatalf("EnsureDefaults: %v %d", err, len(made))
			}
			if _, err := d.Rotate(AlgSM2SM3, clk.Now()); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(dir)
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Fatalf("dir mode %v %v", st.Mode(), err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			if len(files) != 5 {
				t.Fatalf("files %v", files)
			}
			for _, f := range files {
				if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
					t.Fatalf("%s mode %v", f, st.Mode())
				}
			}
			d2, err := OpenKeyDir(dir, []byte(pw), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, alg := range Algs() {
				a, _ := d.Set().Active(alg)
				b, err := d2.Set().Active(alg)
				if err != nil || !a.Equal(b) || b.ID() != a.ID() {
					t.Fatalf("%s reload: %v", alg, err)
				}
			}
			if len(d2.Set().Entries()) != 4 {
				t.Fatal("pending key lost on reload")
			}
			if again, _ := d2.EnsureDefaults(clk.Now()); len(again) != 0 {
				t.Fatal("EnsureDefaults regenerated keys")
			}
			if pw != "" {
				if _, err := OpenKeyDir(dir, []byte("wrong"), cfg); !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("fail/wrong password: %v", err)
				}
				if _, err := OpenKeyDir(dir, nil, cfg); !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("fail/no password: %v", err)
				}
			}
		})
	}
	t.Run("fail/state", func(t *testing.T) {
		for name, body := range map[string]string{
			"garbage":   "{",
			"version":   `{"version":2,"keys":[]}`,
			"unknown":   `{"version":1,"keys":[],"x":1}`,
			"traversal": `{"version":1,"keys":[{"kid":"../x","alg":"ES256","file":"es256-../x.pem"}]}`,
			"missing":   `{"version":1,"keys":[{"kid":"abc","alg":"ES256","file":"es256-abc.pem"}]}`,
		} {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, StateFile), []byte(body), 0o600)
			if _, err := OpenKeyDir(dir, nil, KeySetConfig{}); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
}

// TestKeyDirReload: a second writer (esscctl) rotates; the server's KeyDir
// picks the change up in place and its next Save keeps the new key.
func TestKeyDirReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	clk := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	cfg := KeySetConfig{Now: clk.Now}
	server, err := OpenKeyDir(dir, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Set().EnsureActive(clk.Now(), AlgES256); err != nil {
		t.Fatal(err)
	}
	if err := server.Save(); err != nil {
		t.Fatal(err)
	}
	set := server.Set()
	ctl, err := OpenKeyDir(dir, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	next, err := ctl.Rotate(AlgES256, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	if server.Set() != set || len(set.Entries()) != 2 {
		t.Fatalf("ok/reload in place: %d entries", len(set.Entries()))
	}
	if err := server.Save(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenKeyDir(dir, nil, cfg)
	if err != nil || len(again.Set().Entries()) != 2 {
		t.Fatalf("ok/save after reload kept the new key: %v", err)
	}
	found := false
	for _, e := range again.Set().Entries() {
		found = found || e.Key.ID() == next.ID()
	}
	if !found {
		t.Fatal("rotated key lost")
	}
	os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"version":1,"keys":[]} {}`), 0o600)
	if err := server.Reload(); !errors.Is(err, ErrMalformed) || len(set.Entries()) != 2 {
		t.Fatalf("fail/reload of a bad state leaves the set: %v", err)
	}
}
