package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string
		notLoop  bool
	}{
		{name: "ok/ipv4", in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{name: "ok/ipv4-other-loopback", in: "http://127.8.9.10:1", want: "http://127.8.9.10:1"},
		{name: "ok/ipv6", in: "http://[::1]:8080/", want: "http://[::1]:8080"},
		{name: "ok/localhost", in: "http://LOCALHOST:8080", want: "http://LOCALHOST:8080"},
		{name: "fail/public-ip", in: "http://8.8.8.8:80", notLoop: true},
		{name: "fail/private-ip", in: "http://10.0.0.1:8080", notLoop: true},
		{name: "fail/unspecified", in: "http://0.0.0.0:8080", notLoop: true},
		{name: "fail/name", in: "http://essc.example.gov.cn", notLoop: true},
		{name: "fail/name-looking-local", in: "http://localhost.evil.example:80", notLoop: true},
		{name: "fail/mapped-public", in: "http://[::ffff:8.8.8.8]:80", notLoop: true},
		{name: "fail/https", in: "https://127.0.0.1:8443"},
		{name: "fail/userinfo", in: "http://u:p@127.0.0.1:8080"},
		{name: "fail/path", in: "http://127.0.0.1:8080/gm"},
		{name: "fail/query", in: "http://127.0.0.1:8080?x=1"},
		{name: "fail/empty", in: ""},
		{name: "fail/garbage", in: "::"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := CheckLoopback(tc.in)
			if tc.want != "" {
				if err != nil || u.String() != tc.want {
					t.Fatalf("CheckLoopback(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckLoopback(%q) accepted", tc.in)
			}
			if tc.notLoop != errors.Is(err, ErrNotLoopback) {
				t.Fatalf("CheckLoopback(%q) = %v; ErrNotLoopback expected %v", tc.in, err, tc.notLoop)
			}
		})
	}
}

func TestParseRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		args string
		errs []string // substrings every one of which must be reported
	}{
		{name: "ok/spawn-requests", args: "--spawn --requests 10"},
		{name: "ok/target", args: "--target http://127.0.0.1:8080 --data /tmp/x --duration 5s --scenarios qr-login,introspect"},
		{name: "ok/spawn-backends", args: "--spawn --spawn-redis redis://127.0.0.1:6379/9 --spawn-database postgres://postgres@127.0.0.1:5432/test --redis-addr 127.0.0.1:6379 --requests 5"},
		{name: "fail/neither", args: "--requests 5", errs: []string{"one of --target or --spawn"}},
		{name: "fail/both", args: "--spawn --target http://127.0.0.1:1 --requests 5", errs: []string{"exclusive"}},
		{name: "fail/remote-target", args: "--target http://192.0.2.1:8080 --data d --requests 5", errs: []string{"not a loopback"}},
		{name: "fail/target-without-data", args: "--target http://127.0.0.1:8080 --requests 5", errs: []string{"--data"}},
		{name: "fail/remote-redis-addr", args: "--spawn --requests 5 --redis-addr 192.0.2.1:6379", errs: []string{"--redis-addr", "loopback"}},
		{name: "fail/remote-spawn-db", args: "--spawn --requests 5 --spawn-database postgres://db.example:5432/x", errs: []string{"--spawn-database"}},
		{name: "fail/spawn-flags-without-spawn", args: "--target http://127.0.0.1:1 --data d --requests 5 --spawn-redis redis://127.0.0.1:6379", errs: []string{"need --spawn"}},
		{name: "fail/requests-and-duration", args: "--spawn --requests 5 --duration 1s", errs: []string{"exactly one"}},
		{name: "fail/no-bound", args: "--spawn", errs: []string{"exactly one"}},
		{name: "fail/too-many-requests", args: "--spawn --requests 20000000", errs: []string{"--requests"}},
		{name: "fail/too-long", args: "--spawn --duration 1h", errs: []string{"--duration"}},
		{name: "fail/workers", args: "--spawn --requests 5 --workers 0", errs: []string{"--workers"}},
		{name: "fail/workers-cap", args: "--spawn --requests 5 --workers 5000", errs: []string{"--workers"}},
		{name: "fail/batch", args: "--spawn --requests 5 --batch 30000", errs: []string{"--batch"}},
		{name: "fail/scenario", args: "--spawn --requests 5 --scenarios qr-login,nope", errs: []string{`unknown scenario "nope"`}},
		{name: "fail/scenario-twice", args: "--spawn --requests 5 --scenarios introspect,introspect", errs: []string{"twice"}},
		{name: "fail/profile-scenario", args: "--spawn --requests 5 --scenarios introspect --profile p.out", errs: []string{"--profile-scenario"}},
		{name: "fail/load-profile-scenario", args: "--spawn --requests 5 --scenarios introspect --load-profile p.out", errs: []string{"--profile-scenario"}},
		{name: "fail/every-problem-at-once", args: "--requests 0 --workers 0 --batch 0", errs: []string{"--target or --spawn", "exactly one", "--workers", "--batch"}},
		{name: "ok/ops", args: "--spawn --requests 5 --ops entitlement-batch=2,qr-login=9"},
		{name: "fail/ops-unknown", args: "--spawn --requests 5 --ops nope=2", errs: []string{"--ops"}},
		{name: "fail/ops-bad-count", args: "--spawn --requests 5 --ops qr-login=0", errs: []string{"--ops"}},
		{name: "fail/ops-with-duration", args: "--spawn --duration 1s --ops qr-login=3", errs: []string{"--ops needs --requests"}},
		{name: "fail/positional", args: "--spawn --requests 5 extra", errs: []string{"unexpected arguments"}},
		{name: "ok/rate", args: "--spawn --duration 5s --rate 3000"},
		{name: "fail/rate-negative", args: "--spawn --requests 5 --rate -1", errs: []string{"--rate"}},
		{name: "fail/rate-flood", args: "--spawn --requests 5 --rate 1e9", errs: []string{"--rate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseRun(strings.Fields(tc.args), io.Discard)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if len(c.Scenarios) == 0 || c.Workers != 64 || c.Warmup != 64 {
					t.Fatalf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestParseRunLabels(t *testing.T) {
	c, err := parseRun(strings.Fields("--spawn --requests 1 --spawn-redis redis://127.0.0.1:6379"), io.Discard)
	if err != nil || c.Label != "redis+postgres" {
		t.Fatalf("label %q, %v", c.Label, err)
	}
	if c.RedisAddr != "127.0.0.1:6379" {
		t.Fatalf("--redis-addr not defaulted from --spawn-redis: %q", c.RedisAddr)
	}
	c, _ = parseRun(strings.Fields("--spawn --requests 1 --ops qr-login=7,refresh=4000"), io.Discard)
	if c.Label != "embedded" || c.opsFor("qr-login") != 7 || c.opsFor("introspect") != 1 || c.phonesNeeded() != 2*4000/18+64+1 { // both QR scenarios run by default
		t.Fatalf("label %q, ops %v, phones %d", c.Label, c.Ops, c.phonesNeeded())
	}
}

func TestPhonesNeeded(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want int
	}{
		{"ok/explicit", Config{Phones: 7, Requests: 1e6, Workers: 4}, 7},
		{"ok/count", Config{Requests: 1800, Workers: 64}, 100 + 64 + 1},
		{"ok/count-capped", Config{Requests: 1e7, Workers: 64}, 10000},
		{"ok/duration", Config{Duration: time.Second, Workers: 64}, 256},
		{"ok/duration-many-workers", Config{Duration: time.Second, Workers: 500}, 1000},
		{"ok/duration-8s", Config{Duration: 8 * time.Second, Workers: 16}, 8*2500/20 + 16 + 1},
		{"ok/duration-soak", Config{Duration: time.Minute, Workers: 64}, 60*2500/20 + 64 + 1},
		{"ok/duration-soak-capped", Config{Duration: time.Minute, Workers: 4000}, 10000},
		{"ok/count-two-qr-scenarios", Config{Requests: 1800, Workers: 64, Scenarios: []string{"qr-login", "refresh", "qr-login-sse"}}, 200 + 64 + 1},
		{"ok/duration-two-qr-scenarios", Config{Duration: 4 * time.Second, Workers: 16, Scenarios: []string{"qr-login", "qr-login-sse"}}, 8*2500/20 + 16 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.phonesNeeded(); got != tc.want {
				t.Fatalf("phonesNeeded = %d, want %d", got, tc.want)
			}
		})
	}
}

func durs(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"ok/empty", nil, 50, 0},
		{"ok/single-p50", durs(7), 50, 7 * time.Millisecond},
		{"ok/single-p99", durs(7), 99, 7 * time.Millisecond},
		{"ok/p50-even", durs(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"ok/p50-odd", durs(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"ok/p100-is-max", durs(1, 2, 9), 100, 9 * time.Millisecond},
		{"ok/p0", durs(1, 2, 9), 0, 0},
		{"ok/p99-of-100", hundred, 99, 99 * time.Millisecond},
		{"ok/p90-of-100", hundred, 90, 90 * time.Millisecond},
		{"ok/p99.9-of-100", hundred, 99.9, 100 * time.Millisecond},
		{"ok/p1-of-100", hundred, 1, 1 * time.Millisecond},
		{"ok/p99-of-10-is-max", durs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummariseSortsAndRounds(t *testing.T) {
	s := Summarise("x", []time.Duration{3 * time.Millisecond, 1500 * time.Microsecond, 1234567 * time.Nanosecond})
	if s.Count != 3 || s.P50 != 1.5 || s.Max != 3 || s.P99 != 3 {
		t.Fatalf("%+v", s)
	}
}

func TestRecorderMerge(t *testing.T) {
	a, b := newRecorder(), newRecorder()
	a.add("scan", time.Millisecond)
	b.add("frame", time.Millisecond)
	b.add("scan", 2*time.Millisecond)
	b.errors["http_503"] = 2
	b.ops = 3
	if err := b.step("confirm", func() error { return failf("wallet_auth_failed", "x") }); err == nil {
		t.Fatal("fail/step swallowed the error")
	}
	a.merge(b)
	if len(a.steps["scan"]) != 2 || a.order[0] != "scan" || a.order[1] != "frame" || a.errors["http_503"] != 2 || a.ops != 3 {
		t.Fatalf("%+v", a)
	}
	if _, ok := a.steps["confirm"]; ok {
		t.Fatal("fail/a failed step's latency was recorded")
	}
}

func TestErrKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ok/kind", failf("oauth_invalid_client", "x"), "oauth_invalid_client"},
		{"ok/wrapped-kind", errors.Join(errors.New("a"), failf("http_503", "x")), "http_503"},
		{"ok/deadline", context.DeadlineExceeded, "timeout"},
		{"ok/eof", io.ErrUnexpectedEOF, "transport"},
		{"ok/other", errors.New("boom"), "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errKind(tc.err); got != tc.want {
				t.Fatalf("errKind = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	const ok = "# HELP process_cpu_seconds_total x\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n" +
		"process_resident_memory_bytes 3.3554432e+07\ngo_goroutines 25\ngo_gc_duration_seconds{quantile=\"0\"} 1e-05\n"
	s, err := parseMetrics(strings.NewReader(ok))
	if err != nil || s.CPUSeconds != 12.5 || s.RSSBytes != 32<<20 || s.Goroutines != 25 {
		t.Fatalf("ok/parse: %+v %v", s, err)
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines 3\n")); err == nil {
		t.Fatal("fail/missing process metrics accepted")
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total abc\n")); err == nil {
		t.Fatal("fail/bad value accepted")
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_get:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=32,usec=100,usec_per_call=3.1\r\ncmdstat_info:calls=1,usec=1\r\n"
	n, err := parseCommandStats(info)
	if err != nil || n != 43 {
		t.Fatalf("ok/sum: %d %v", n, err)
	}
	if _, err := parseCommandStats("cmdstat_get:calls=x,usec=1\n"); err == nil {
		t.Fatal("fail/bad count accepted")
	}
}

func TestBenchSSNValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := range 5000 {
		s := benchSSN(17, i)
		if len(s) != 18 || seen[s] {
			t.Fatalf("benchSSN(%d) = %q (dup %v)", i, s, seen[s])
		}
		seen[s] = true
	}
}

func sampleReport(label string, rate, cpu float64) Report {
	r := Report{Tool: "esscbench", Label: label, Date: "2026-11-28T00:00:00Z", Workers: 64,
		Machine: Machine{CPUs: 2, Go: "go1.26.8"}, Reference: Reference{SM2SignNS: 25000, SM2VerifyNS: 52000}, IdleRSS: 30,
		Scenarios: []ScenarioResult{{Name: "client_credentials_gm", Ops: 1000, OpsPerSec: rate, ReqPerSec: rate, ItemsPerOp: 1,
			Op: StepStats{Name: "op", P50: 1, P99: 5}, Steps: []StepStats{{Name: "token", Count: 1000, P99: 5}},
			ServerCPUMSPerOp: cpu, RedisCmdsPerOp: -1},
			{Name: "qr-login <&>", Ops: 10, OpsPerSec: 100, ItemsPerOp: 1, Op: StepStats{P99: 40},
				Steps: []StepStats{{Name: "scan", Count: 10}, {Name: "confirm", Count: 10}}, ServerCPUMSPerOp: -1, RedisCmdsPerOp: 20,
				Errors: map[string]int{"wallet_slow_down": 1}}}}
	for i := range r.Scenarios {
		r.Scenarios[i].applyReference(r.Reference)
	}
	return r
}

func TestApplyReference(t *testing.T) {
	r := sampleReport("embedded", 4000, 0.5)
	s := r.Scenarios[0]
	if s.ThroughputRatio != 0.1 || s.CPURatio != 20 { // 4000/s × 25 µs; 500 µs / 25 µs
		t.Fatalf("ratios %v %v", s.ThroughputRatio, s.CPURatio)
	}
	if r.Scenarios[1].CPURatio != 0 {
		t.Fatal("fail/CPU ratio from an unmeasured CPU figure")
	}
}

func TestReportRendering(t *testing.T) {
	r := sampleReport("embedded", 4000, 0.5)
	var tab bytes.Buffer
	if err := r.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"client_credentials_gm", "4000.0", "  scan", "wallet_slow_down=1", "SM2 sign 25.0 µs", "—"} {
		if !strings.Contains(tab.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tab.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	os.WriteFile(path, js.Bytes(), 0o600)
	back, err := ReadReport(path)
	if err != nil || back.Scenarios[0].ThroughputRatio != r.Scenarios[0].ThroughputRatio || back.Label != "embedded" {
		t.Fatalf("JSON round trip: %+v %v", back, err)
	}
	os.WriteFile(path, []byte(`{"tool":"other"}`), 0o600)
	if _, err := ReadReport(path); err == nil {
		t.Fatal("fail/foreign JSON accepted as a report")
	}

	var svg bytes.Buffer
	if err := WriteSVG(&svg, []Report{r, sampleReport("redis+postgres", 2000, 1)}); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, the scenario name escaped, both legends present.
	dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, svg.String())
		}
	}
	for _, want := range []string{"qr-login &lt;&amp;&gt;", "redis+postgres", "4000", "<svg"} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestCheck(t *testing.T) {
	base := Baseline{Reports: []Report{sampleReport("embedded", 4000, 0.5)}}
	for _, tc := range []struct {
		name    string
		current []Report
		fails   []string // metrics expected to fail
	}{
		{"ok/same", []Report{sampleReport("embedded", 4000, 0.5)}, nil},
		{"ok/within-tolerance", []Report{sampleReport("embedded", 3500, 0.57)}, nil},
		{"ok/faster", []Report{sampleReport("embedded", 9000, 0.2)}, nil},
		{"fail/throughput", []Report{sampleReport("embedded", 3300, 0.5)}, []string{"throughput_ratio"}},
		{"fail/cpu", []Report{sampleReport("embedded", 4000, 0.6)}, []string{"cpu_ratio"}},
		{"ok/missing-label-skipped", []Report{sampleReport("redis+postgres", 4000, 0.5)}, nil},
		{"fail/missing-scenario", []Report{func() Report { r := sampleReport("embedded", 4000, 0.5); r.Scenarios = r.Scenarios[:1]; return r }()}, []string{"-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := tc.current
			// The error-rate rule is exercised separately: clear the sample's one error.
			for i := range cur {
				for j := range cur[i].Scenarios {
					cur[i].Scenarios[j].Errors = nil
				}
			}
			lines, err := Check(base, cur, 0.15)
			var failed []string
			for _, l := range lines {
				if l.Failed {
					failed = append(failed, l.Metric)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.fails, ",") {
				t.Fatalf("failed %v, want %v", failed, tc.fails)
			}
			if (len(tc.fails) > 0) != errors.Is(err, ErrRegression) {
				t.Fatalf("err %v", err)
			}
		})
	}
	t.Run("ok/best-of-repeats", func(t *testing.T) {
		slow, fast := sampleReport("embedded", 3000, 0.7), sampleReport("embedded", 4100, 0.49)
		for _, r := range []*Report{&slow, &fast} {
			for i := range r.Scenarios {
				r.Scenarios[i].Errors = nil
			}
		}
		if lines, err := Check(base, []Report{slow, fast}, 0.15); err != nil {
			WriteCheck(os.Stderr, lines)
			t.Fatal(err)
		}
		if _, err := Check(base, []Report{slow, slow}, 0.15); !errors.Is(err, ErrRegression) {
			t.Fatal("fail/two slow repeats passed")
		}
	})
	t.Run("fail/errors", func(t *testing.T) {
		cur := sampleReport("embedded", 4000, 0.5)
		cur.Scenarios[0].Errors = map[string]int{"http_503": 11}
		if _, err := Check(base, []Report{cur}, 0.15); !errors.Is(err, ErrRegression) {
			t.Fatalf("11 errors in 1011 operations passed: %v", err)
		}
	})
	t.Run("ok/ratio-not-absolute", func(t *testing.T) {
		// A machine twice as slow: half the throughput, twice the reference time.
		cur := sampleReport("embedded", 2000, 1.0)
		cur.Reference.SM2SignNS = 50000
		for i := range cur.Scenarios {
			cur.Scenarios[i].Errors = nil
			cur.Scenarios[i].applyReference(cur.Reference)
		}
		if lines, err := Check(base, []Report{cur}, 0.15); err != nil {
			WriteCheck(os.Stderr, lines)
			t.Fatal(err)
		}
	})
}

func TestDispatchCheckAndBaseline(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport("embedded", 4000, 0.5)
	rep.Scenarios[1].Errors = nil
	good, slow := filepath.Join(dir, "good.json"), filepath.Join(dir, "slow.json")
	writeFile(good, rep.WriteJSON)
	s := sampleReport("embedded", 1000, 2)
	s.Scenarios[1].Errors = nil
	writeFile(slow, s.WriteJSON)
	base := filepath.Join(dir, "baseline.json")
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	if err := dispatch(ctx, []string{"baseline", "-o", base, "-note", "test", good}, io.Discard, io.Discard, log); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dispatch(ctx, []string{"check", "--baseline", base, good}, &out, io.Discard, log); err != nil {
		t.Fatalf("ok/check against itself: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := dispatch(ctx, []string{"check", "--baseline", base, slow}, &out, io.Discard, log); !errors.Is(err, ErrRegression) || !strings.Contains(out.String(), "FAIL") {
		t.Fatalf("fail/regression not reported: %v\n%s", err, out.String())
	}
	if err := dispatch(ctx, []string{"chart", "-o", filepath.Join(dir, "c.svg"), good, slow}, io.Discard, io.Discard, log); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"nope"}, {"check", "--baseline", base}, {"check", "--tolerance", "2", good}, {"chart", good}} {
		if err := dispatch(ctx, args, io.Discard, io.Discard, log); err == nil {
			t.Errorf("fail/dispatch %q accepted", args)
		}
	}
}

// TestSpawnedRun builds esscd and runs every scenario briefly against it
// (SQLite + memory; with ESSC_TEST_REDIS_URL and ESSC_TEST_DATABASE_URL also
// on Redis + PostgreSQL), checking that every operation succeeded and every
// server-side figure was measured.
func TestSpawnedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts esscd")
	}
	bin := filepath.Join(t.TempDir(), "esscd")
	build := exec.Command("go", "build", "-o", bin, "github.com/essc-project/essc/cmd/esscd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build esscd: %v\n%s", err, out)
	}
	pgReadable := false // whether this user may find and read the local PostgreSQL's processes
	run := func(t *testing.T, extra ...string) {
		dir := t.TempDir()
		args := append([]string{"--spawn", "--esscd", bin, "--requests", "40", "--workers", "4", "--batch", "50",
			"--beneficiaries", "100", "--reference-time", "50ms", "--json", filepath.Join(dir, "r.json"), "--svg", filepath.Join(dir, "r.svg"),
			"--load-profile", filepath.Join(dir, "load.prof"), "--profile-scenario", "qr-login"}, extra...)
		cfg, err := parseRun(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var table bytes.Buffer
		rep, err := Run(context.Background(), cfg, &table, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + table.String())
		if len(rep.Scenarios) != len(scenarioList) || rep.IdleRSS <= 0 || rep.Reference.SM2SignNS <= 0 {
			t.Fatalf("report incomplete: %+v", rep)
		}
		for _, s := range rep.Scenarios {
			if s.Ops != 40 || s.ErrorCount() != 0 || s.OpsPerSec <= 0 || s.ThroughputRatio <= 0 || s.ServerCPUMSPerOp < 0 || s.LoadCPUMSPerOp < 0 || s.RSSMiB <= 0 || len(s.Steps) == 0 {
				t.Errorf("%s: %+v", s.Name, s)
			}
			if cfg.RedisAddr != "" && (s.RedisCmdsPerOp < 0 || s.RedisCPUMSPerOp < 0) {
				t.Errorf("%s: Redis commands or CPU not measured", s.Name)
			}
			if pgReadable && s.PostgresCPUMSPerOp < 0 {
				t.Errorf("%s: PostgreSQL CPU not measured", s.Name)
			}
		}
		qr := rep.Scenarios[scenarioIndex(rep.Scenarios, "qr-login")]
		var names []string
		for _, st := range qr.Steps {
			names = append(names, st.Name)
		}
		if want := "authorize scan status confirm complete token userinfo"; strings.Join(names, " ") != want {
			t.Errorf("qr-login steps %q, want %q", names, want)
		}
		if fl := rep.Scenarios[scenarioIndex(rep.Scenarios, "http-floor")]; len(fl.Steps) != 1 || fl.Steps[0].Name != "healthz" {
			t.Errorf("http-floor steps %+v, want one healthz", fl.Steps)
		}
		if st, err := os.Stat(filepath.Join(dir, "load.prof")); err != nil || st.Size() == 0 {
			t.Errorf("load profile: %v", err)
		}
		if back, err := ReadReport(filepath.Join(dir, "r.json")); err != nil || len(back.Scenarios) != len(rep.Scenarios) {
			t.Fatalf("JSON: %v", err)
		}
		if st, err := os.Stat(filepath.Join(dir, "r.svg")); err != nil || st.Size() == 0 {
			t.Fatalf("SVG: %v", err)
		}
	}
	t.Run("embedded", func(t *testing.T) { run(t) })
	r, d := os.Getenv("ESSC_TEST_REDIS_URL"), os.Getenv("ESSC_TEST_DATABASE_URL")
	if r == "" || d == "" {
		t.Log("ESSC_TEST_REDIS_URL / ESSC_TEST_DATABASE_URL not set: Redis+PostgreSQL run skipped")
		return
	}
	t.Run("redis+postgres", func(t *testing.T) {
		u, err := urlHost(r)
		if err != nil {
			t.Fatal(err)
		}
		if pid, err := postmasterPID(context.Background(), d); err == nil {
			_, err = procTreeCPU(pid)
			pgReadable = err == nil
		}
		if !pgReadable {
			t.Log("the local PostgreSQL's processes are not readable here: its CPU is not required")
		}
		run(t, "--spawn-redis", r, "--spawn-database", d, "--redis-addr", u)
	})
}

func scenarioIndex(rs []ScenarioResult, name string) int {
	for i, s := range rs {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// TestSchedule: the open-loop schedule hands out exactly count start times,
// spaced by 1/rate from the first, and closes; in duration mode it stops at
// the deadline.
func TestSchedule(t *testing.T) {
	ctx := context.Background()
	var got []time.Time
	for t0 := range schedule(ctx, 1000, 50, time.Time{}) {
		got = append(got, t0)
	}
	if len(got) != 50 {
		t.Fatalf("%d starts, want 50", len(got))
	}
	for i := 1; i < len(got); i++ {
		if d := got[i].Sub(got[i-1]); d != time.Millisecond {
			t.Fatalf("start %d is %v after the previous, want 1ms", i, d)
		}
	}
	n := 0
	begin := time.Now()
	for range schedule(ctx, 200, 0, begin.Add(100*time.Millisecond)) {
		n++
	}
	// 20 when the schedule starts with the test; fewer only if its
	// goroutine starts late (a loaded CI machine), never more.
	if n < 10 || n > 20 || time.Since(begin) > time.Second {
		t.Fatalf("duration mode: %d starts in 100 ms at 200/s (want at most 20), took %v", n, time.Since(begin))
	}
}

func TestCheckRefusesFixedRateReports(t *testing.T) {
	r := sampleReport("embedded", 4000, 0.5)
	r.Rate = 3000
	if _, err := Check(Baseline{Reports: []Report{sampleReport("embedded", 4000, 0.5)}}, []Report{r}, 0.15); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Fatalf("Check of a fixed-rate report: %v", err)
	}
}

func TestFloorLines(t *testing.T) {
	ref := Reference{SM2SignNS: 26000, SM2VerifyNS: 51000, SM2SignCPUNS: 25000, SM2VerifyCPUNS: 50000}
	r := Report{Reference: ref, Scenarios: []ScenarioResult{
		{Name: "qr-login", OpsPerSec: 100, ReqPerSec: 700, ServerCPUMSPerOp: 2.5},
		{Name: "client_credentials_intl", OpsPerSec: 1000, ReqPerSec: 1000, ServerCPUMSPerOp: 0.1},
		{Name: "client_credentials_gm", OpsPerSec: 1000, ReqPerSec: 1000, ServerCPUMSPerOp: -1},
	}}
	for i := range r.Scenarios {
		r.Scenarios[i].applyReference(ref)
	}
	if f := r.Scenarios[0].CryptoFloorMS; f != 0.2 { // 3 × 50 + 2 × 25 µs
		t.Fatalf("qr-login crypto floor %v ms, want 0.2", f)
	}
	if r.Scenarios[1].CryptoFloorMS != 0 {
		t.Fatal("fail/a floor for a scenario whose cryptography is not SM2")
	}
	lines := r.floorLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "floor qr-login: SM2 3 verify + 2 sign = 200 µs; server CPU 2500 µs = 12.5× that") ||
		strings.Contains(lines[0], "http-floor") {
		t.Fatalf("without http-floor: %q", lines)
	}
	r.Scenarios = append(r.Scenarios, ScenarioResult{Name: "http-floor", OpsPerSec: 20000, ReqPerSec: 20000, ServerCPUMSPerOp: 0.04})
	lines = r.floorLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "+ 7 requests × 40 µs (http-floor) = 480 µs (2.40× the SM2 floor), server CPU 5.2× that") {
		t.Fatalf("with http-floor: %q", lines)
	}
}
