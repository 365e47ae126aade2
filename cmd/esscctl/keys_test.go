package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/essc-project/essc/signing"
)

func TestKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	wrong := filepath.Join(t.TempDir(), "wrong")
	if os.WriteFile(empty, nil, 0o600) != nil || os.WriteFile(wrong, []byte("wrong"), 0o600) != nil {
		t.Fatal("write password files")
	}
	base := []string{"--dir", dir, "--password-file", pw}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := dispatch(append([]string{"keys"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ok/generate-gm-and-es256", append([]string{"generate", "--alg", "SM2SM3,ES256"}, base...), 0, "active SM2SM3 key"},
		{"ok/generate-is-idempotent", append([]string{"generate", "--alg", "SM2SM3"}, base...), 0, "already has an active key"},
		{"ok/show", append([]string{"show"}, base...), 0, "active"},
		{"ok/rotate-adds-pending", append([]string{"rotate", "--alg", "SM2SM3"}, base...), 0, "is pending"},
		{"ok/rotate-promotes", append([]string{"rotate", "--alg", "SM2SM3"}, base...), 0, "is active"},
		{"ok/show-gm-jwks", append([]string{"show", "--jwks", "--alg", "SM2SM3"}, base...), 0, `"crv": "SM2"`},
		{"fail/rotate-without-alg", append([]string{"rotate"}, base...), 1, ""},
		{"fail/unknown-alg", append([]string{"generate", "--alg", "HS256"}, base...), 1, ""},
		{"fail/wrong-password", []string{"show", "--dir", dir, "--password-file", wrong}, 1, ""},
		{"fail/empty-password-file", []string{"show", "--dir", dir, "--password-file", empty}, 1, ""},
		{"fail/no-password", []string{"show", "--dir", dir}, 1, ""},
		{"fail/missing-dir", []string{"show", "--dir", filepath.Join(dir, "nope")}, 1, ""},
		{"fail/unknown-subcommand", append([]string{"destroy"}, base...), 1, ""},
		{"fail/no-subcommand", nil, 1, ""},
		{"fail/extra-argument", append([]string{"show", "now"}, base...), 1, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, out, errOut := run(s.args...)
			if code != s.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, s.code, errOut)
			}
			if !strings.Contains(out, s.want) {
				t.Fatalf("stdout %q, want %q", out, s.want)
			}
		})
	}
	// The directory now holds two SM2 keys (active + retired) and one ES256 key.
	d, err := signing.OpenKeyDir(dir, []byte("hunter2"), signing.KeySetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Set().Entries()); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	_, out, _ := run(append([]string{"show", "--jwks", "--alg", "ES256,RS256"}, base...)...)
	var set signing.JWKS
	if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Alg != "ES256" {
		t.Fatalf("intl JWKS %s (%v)", out, err)
	}
}
