package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/essc-project/essc/qrlogin"
)

// TestDecodeQR reads back the server's own QR images (2 px per module, as
// served) from a PNG file, as `ecard scan --image` does with a screenshot.
func TestDecodeQR(t *testing.T) {
	payload := "essc://login?v=1&t=AAAAAAAAAAAAAAAAAAAAAA&e=12&c=AAAAAAAAAAAAAAAAAAAAAA"
	png, err := qrlogin.QRImage(payload, false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qr.png")
	os.WriteFile(path, png, 0o600)
	got, err := decodeQR(path)
	if err != nil || got != payload {
		t.Fatalf("decoded %q, %v", got, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.png")
	os.WriteFile(bad, []byte("not a png"), 0o600)
	if _, err := decodeQR(bad); err == nil {
		t.Fatal("fail/garbage image decoded")
	}
}

func TestRunErrors(t *testing.T) {
	home := t.TempDir()
	for name, args := range map[string][]string{
		"fail/no-command":           {},
		"fail/not-initialised":      {"--home", filepath.Join(home, "none"), "code"},
		"fail/unknown-command":      {"--home", home, "bogus"},
		"fail/confirm-without-scan": {"--home", home, "confirm", "--number", "12", "--pin", "258147"},
	} {
		t.Run(name, func(t *testing.T) {
			if name != "fail/no-command" && name != "fail/not-initialised" {
				if _, err := os.Stat(filepath.Join(home, "device.pem")); err != nil {
					if code := run(context.Background(), []string{"--home", home, "init"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
						t.Fatal("init failed")
					}
				}
			}
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code == 0 {
				t.Fatalf("exit 0: %s", out.String())
			}
		})
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"--home", home, "init"}, &bytes.Buffer{}, &errb); code == 0 || !strings.Contains(errb.String(), "already exists") {
		t.Fatalf("fail/second init overwrote the device key: %d %s", code, errb.String())
	}
	st, err := os.Stat(filepath.Join(home, "device.pem"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device key mode: %v %v", st, err)
	}
}
