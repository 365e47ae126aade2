package main

import (
	"bytes"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// leakIgnored are goroutines that are not the server's: the runtime's and
// the testing package's own, and idle keep-alive connections of the test's
// HTTP clients (closed first where the test used the default transport).
var leakIgnored = []string{
	"testing.tRunner", "testing.(*T).Run", "testing.runTests", "testing.(*M).", "testing.runFuzzing",
	"runtime.goexit0", "os/signal.signal_recv", "os/signal.loop", "runtime.ensureSigM",
	"runtime/trace.", "runtime.ReadTrace", "net/http.(*persistConn).readLoop", "net/http.(*persistConn).writeLoop",
}

// goroutines returns the stacks of all goroutines by their header line's id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		id, _, _ := strings.Cut(strings.TrimPrefix(s, "goroutine "), " ")
		out[id] = s
	}
	return out
}

// ignoredGoroutine reports whether stack g belongs to the runtime, the
// testing package or an idle client connection.
func ignoredGoroutine(g string) bool {
	for _, s := range leakIgnored {
		if strings.Contains(g, s) {
			return true
		}
	}
	return false
}

// leakWait is how long leaked goroutines are given to end.
var leakWait = 5 * time.Second

// checkGoroutineLeaks records the goroutines alive now and, when the test
// and all its cleanups are done (it registers first, so it runs last), fails
// if goroutines started since are still alive after up to 5 s (the default
// client's idle connections are closed first). Call it first in a test.
func checkGoroutineLeaks(t testing.TB) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		var leaked []string
		for deadline := time.Now().Add(leakWait); ; time.Sleep(50 * time.Millisecond) {
			http.DefaultClient.CloseIdleConnections()
			leaked = leaked[:0]
			for id, g := range goroutines() {
				if _, ok := before[id]; !ok && !ignoredGoroutine(g) {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(leaked) > 0 {
			t.Errorf("%d goroutine(s) leaked by the server:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

// leakRecorder stands for a test to check that the checker itself fails.
type leakRecorder struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (r *leakRecorder) Helper()               {}
func (r *leakRecorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *leakRecorder) Errorf(string, ...any) { r.failed = true }
func (r *leakRecorder) finish() (failed bool) { r.cleanups[0](); return r.failed }

// TestCheckGoroutineLeaks: a goroutine left running is reported, one that
// ends within the wait is not.
func TestCheckGoroutineLeaks(t *testing.T) {
	defer func(w time.Duration) { leakWait = w }(leakWait)
	leakWait = 300 * time.Millisecond
	stop := make(chan struct{})
	rec := &leakRecorder{TB: t}
	checkGoroutineLeaks(rec)
	go func() { <-stop }()
	if !rec.finish() {
		t.Fatal("a blocked goroutine was not reported")
	}
	rec = &leakRecorder{TB: t}
	checkGoroutineLeaks(rec)
	go func() { time.Sleep(50 * time.Millisecond) }()
	close(stop)
	if rec.finish() {
		t.Fatal("goroutines that ended were reported")
	}
}
