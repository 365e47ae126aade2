package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServing starts bin on data, waits until /healthz answers "ok",
// sends SIGTERM and returns the JSON log after a clean exit.
func startServing(t *testing.T, bin, data string) []byte {
	t.Helper()
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--data", data, "--listen", addr, "--shutdown-timeout", "5s")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second) // first start generates an RSA key
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Fatalf("healthz %d %q", resp.StatusCode, body)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("esscd exited early: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, err := client.Post("http://"+addr+"/healthz", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %v %v", resp, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", logs.String())
	}
	if !bytes.Contains(logs.Bytes(), []byte(`"msg":"esscd stopped"`)) {
		t.Fatalf("no JSON shutdown log:\n%s", logs.String())
	}
	return logs.Bytes()
}

// TestBinaryLifecycle builds esscd, starts it on a fresh data directory,
// waits for /healthz, sends SIGTERM and expects a clean exit and key files;
// a second start reuses the keys.
func TestBinaryLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "esscd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")

	logs := startServing(t, bin, data)
	if n := bytes.Count(logs, []byte(`"msg":"generated signing key"`)); n != 3 {
		t.Fatalf("ok/first start generated %d keys:\n%s", n, logs)
	}
	keys := filepath.Join(data, "keys")
	pems, _ := filepath.Glob(filepath.Join(keys, "*.pem"))
	if _, err := os.Stat(filepath.Join(keys, "keys.json")); err != nil || len(pems) != 3 {
		t.Fatalf("key files: %v %v", pems, err)
	}
	for _, f := range append(pems, keys) {
		st, err := os.Stat(f)
		if err != nil || (f == keys) != (st.Mode().Perm() == 0o700) || (f != keys && st.Mode().Perm() != 0o600) {
			t.Fatalf("%s mode %v %v", f, st.Mode(), err)
		}
	}

	if logs := startServing(t, bin, data); bytes.Contains(logs, []byte("generated signing key")) {
		t.Fatalf("ok/second start regenerated keys:\n%s", logs)
	}

	for name, args := range map[string][]string{
		"fail/unknown-flag":   {"--bogus"},
		"fail/extra-argument": {"--data", data, "serve"},
		"fail/bad-listen":     {"--data", data, "--listen", "256.0.0.1:99999"},
		"fail/bad-keys":       {"--data", data, "--key-password-file", filepath.Join(data, "missing")},
	} {
		if err := exec.Command(bin, args...).Run(); err == nil {
			t.Errorf("%s: exit 0", name)
		}
	}
}
