package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrate(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "sub", "registry.db")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		wantOut string
	}{
		{"ok/first_run_applies", []string{"migrate", "--database", url}, 0, "applied migration 0001"},
		{"ok/second_run_is_noop", []string{"migrate", "--database", url}, 0, "up to date"},
		{"fail/bad_scheme", []string{"migrate", "--database", "mysql://x"}, 1, ""},
		{"fail/extra_argument", []string{"migrate", "--database", url, "now"}, 1, ""},
		{"fail/unknown_flag", []string{"migrate", "--nope"}, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := dispatch(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, errOut.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("stdout %q, want %q", out.String(), tc.wantOut)
			}
		})
	}
}
