package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Config is a validated `esscbench run` configuration.
type Config struct {
	Target        string         // http://127.0.0.1:PORT of a running esscd (or "" with Spawn)
	Data          string         // that server's data directory (admin-client.json)
	Spawn         bool           // start esscd ourselves
	Esscd         string         // esscd executable for Spawn
	SpawnDatabase string         // registry URL for the spawned server ("" → SQLite)
	SpawnRedis    string         // Redis URL for the spawned server ("" → memory)
	Scenarios     []string       // in run order
	Requests      int            // operations per scenario (exclusive with Duration)
	Ops           map[string]int // per-scenario operation counts overriding Requests
	Duration      time.Duration  // measured time per scenario
	Workers       int
	Rate          float64 // operations started per second (open loop); 0: each worker starts its next at once
	Warmup        int     // untimed operations before each scenario
	Phones        int     // 0: sized from the load
	Batch         int
	Beneficiaries int
	RedisAddr     string // INFO commandstats source
	Label         string
	JSON, SVG     string
	Profile       string // CPU profile file (server pprof, spawned with it)
	ProfileOf     string // scenario to profile
	LoadProfile   string // CPU profile file of this tool during ProfileOf
	Reference     time.Duration
	Timeout       time.Duration
}

// Bounds of a run: a measuring instrument, not a flood.
const (
	maxWorkers  = 1024
	maxRequests = 10_000_000
	maxDuration = 10 * time.Minute
	maxRate     = 100_000
)

// opsFor is the operation count of scenario name (0 in duration mode).
func (c Config) opsFor(name string) int {
	if n, ok := c.Ops[name]; ok && c.Requests > 0 {
		return n
	}
	return c.Requests
}

// phonesNeeded sizes the phone pool: a device may scan 20 times a minute
// (qrlogin's per-device limit), so a pool too small for the run's rate turns
// into wallet_slow_down errors, not into a measurement.
func (c Config) phonesNeeded() int {
	if c.Phones > 0 {
		return c.Phones
	}
	// The QR scenarios run one after the other on the same phones.
	runs := 0
	for _, s := range c.Scenarios {
		if s == "qr-login" || s == "qr-login-sse" {
			runs++
		}
	}
	runs = max(runs, 1)
	if c.Requests > 0 {
		n := c.Requests
		for _, v := range c.Ops {
			n = max(n, v)
		}
		return min(runs*n/18+c.Workers+1, maxPhones)
	}
	// A timed run: enough phones for up to maxLoginRate logins a second
	// within one minute's scan window (the limit is per clock minute).
	window := min(time.Duration(runs)*c.Duration, time.Minute).Seconds()
	return min(max(256, 2*c.Workers, int(window*maxLoginRate/20)+c.Workers+1), maxPhones)
}

// maxLoginRate is the QR login rate a timed run sizes its phones for (a
// fast two-core host does 1,200 a second embedded).
const maxLoginRate = 2500

// maxPhones bounds the pool (and --phones): registering a phone costs the
// run's setup about a millisecond.
const maxPhones = 10000

// parseRun parses and validates `esscbench run` arguments, reporting every
// problem at once.
func parseRun(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("esscbench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var scen, ops string
	fs.StringVar(&c.Target, "target", "", "base URL of a running esscd on loopback, e.g. http://127.0.0.1:8080")
	fs.StringVar(&c.Data, "data", "", "the target's data directory (its admin-client.json creates the bench clients)")
	fs.BoolVar(&c.Spawn, "spawn", false, "start esscd on a free loopback port with a temporary data directory")
	fs.StringVar(&c.Esscd, "esscd", "", "esscd executable for --spawn (default: beside esscbench, then PATH)")
	fs.StringVar(&c.SpawnDatabase, "spawn-database", "", "registry URL for the spawned esscd (postgres://…; a fresh schema is used and dropped)")
	fs.StringVar(&c.SpawnRedis, "spawn-redis", "", "Redis URL for the spawned esscd's sessions (a random prefix is used and deleted)")
	fs.StringVar(&scen, "scenarios", strings.Join(scenarioList, ","), "comma-separated scenarios: "+strings.Join(scenarioList, ", "))
	fs.IntVar(&c.Requests, "requests", 0, "operations per scenario (exclusive with --duration)")
	fs.StringVar(&ops, "ops", "", "per-scenario operation counts overriding --requests, e.g. entitlement-batch=200,qr-login=1000")
	fs.DurationVar(&c.Duration, "duration", 0, "measured time per scenario (exclusive with --requests)")
	fs.IntVar(&c.Workers, "workers", 64, "concurrent workers (connections)")
	fs.Float64Var(&c.Rate, "rate", 0, "start operations at this fixed rate per second (open loop: latency counts from the scheduled start, so queueing behind a slow server is measured); 0: as fast as the workers go")
	fs.IntVar(&c.Warmup, "warmup", -1, "untimed operations before each scenario (default: one per worker)")
	fs.IntVar(&c.Phones, "phones", 0, "simulated phones (0: sized from the load; each may scan 20 times a minute)")
	fs.IntVar(&c.Batch, "batch", 1000, "SSNs per entitlement batch-status call")
	fs.IntVar(&c.Beneficiaries, "beneficiaries", 2000, "beneficiaries registered for entitlement-batch")
	fs.StringVar(&c.RedisAddr, "redis-addr", "", "host:port of the server's Redis, for Redis commands per operation (default: --spawn-redis's host)")
	fs.StringVar(&c.Label, "label", "", "name of this run in reports (default embedded or redis+postgres)")
	fs.StringVar(&c.JSON, "json", "", "write the report as JSON to this file")
	fs.StringVar(&c.SVG, "svg", "", "write the chart (throughput and p99 per scenario) to this file")
	fs.StringVar(&c.Profile, "profile", "", "write a server CPU profile (pprof) of one scenario to this file (needs pprof on the server; --spawn enables it)")
	fs.StringVar(&c.ProfileOf, "profile-scenario", "client_credentials_gm", "scenario --profile and --load-profile cover")
	fs.StringVar(&c.LoadProfile, "load-profile", "", "write a CPU profile (pprof) of esscbench itself during one scenario to this file (what the simulated parties cost)")
	fs.DurationVar(&c.Reference, "reference-time", 500*time.Millisecond, "time spent on each reference measurement (SM2 sign, verify)")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "per-request timeout")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if fs.NArg() != 0 {
		bad("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.Spawn && c.Target != "":
		bad("--target and --spawn are exclusive")
	case !c.Spawn && c.Target == "":
		bad("one of --target or --spawn is required")
	case c.Target != "":
		u, err := CheckLoopback(c.Target)
		if err != nil {
			bad("--target: %w", err)
		} else {
			c.Target = u.String()
		}
		if c.Data == "" {
			bad("--target needs --data (the server's data directory with admin-client.json)")
		}
	}
	if !c.Spawn && (c.SpawnDatabase != "" || c.SpawnRedis != "" || c.Esscd != "") {
		bad("--spawn-database, --spawn-redis and --esscd need --spawn")
	}
	for _, f := range []struct{ name, v string }{{"--spawn-database", c.SpawnDatabase}, {"--spawn-redis", c.SpawnRedis}} {
		if f.v == "" || strings.HasPrefix(f.v, "sqlite://") {
			continue
		}
		u, err := url.Parse(f.v)
		if err != nil || u.Hostname() == "" {
			bad("%s: %q is not a URL with a host", f.name, f.v)
		} else if err := CheckLoopbackAddr(u.Host); err != nil {
			bad("%s: %w", f.name, err)
		}
	}
	if c.RedisAddr == "" && c.SpawnRedis != "" {
		c.RedisAddr, _ = urlHost(c.SpawnRedis)
	}
	if c.RedisAddr != "" {
		if err := CheckLoopbackAddr(c.RedisAddr); err != nil {
			bad("--redis-addr: %w", err)
		}
	}
	if (c.Requests > 0) == (c.Duration > 0) {
		bad("exactly one of --requests or --duration must be positive")
	}
	if c.Requests < 0 || c.Requests > maxRequests {
		bad("--requests: must be 1..%d", maxRequests)
	}
	if c.Duration < 0 || c.Duration > maxDuration {
		bad("--duration: must be at most %s", maxDuration)
	}
	if c.Workers < 1 || c.Workers > maxWorkers {
		bad("--workers: must be 1..%d", maxWorkers)
	}
	if c.Rate < 0 || c.Rate > maxRate {
		bad("--rate: must be 0..%d", maxRate)
	}
	if c.Warmup < 0 {
		c.Warmup = c.Workers
	}
	if c.Phones < 0 || c.Phones > maxPhones {
		bad("--phones: must be 0..%d", maxPhones)
	}
	if c.Batch < 1 || c.Batch > 20000 {
		bad("--batch: must be 1..20000")
	}
	if c.Beneficiaries < 1 || c.Beneficiaries > 1_000_000 {
		bad("--beneficiaries: must be 1..1000000")
	}
	if c.Reference < 10*time.Millisecond || c.Reference > 10*time.Second {
		bad("--reference-time: must be 10ms..10s")
	}
	if c.Timeout <= 0 {
		bad("--timeout: must be positive")
	}
	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, ok := lookupScenario(s); !ok {
			bad("--scenarios: unknown scenario %q", s)
		} else if slices.Contains(c.Scenarios, s) {
			bad("--scenarios: %q twice", s)
		} else {
			c.Scenarios = append(c.Scenarios, s)
		}
	}
	if len(c.Scenarios) == 0 {
		bad("--scenarios: none given")
	}
	if ops != "" {
		if c.Requests <= 0 {
			bad("--ops needs --requests")
		}
		c.Ops = map[string]int{}
		for _, kv := range strings.Split(ops, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			n, err := strconv.Atoi(v)
			if _, known := lookupScenario(k); !ok || !known || err != nil || n < 1 || n > maxRequests {
				bad("--ops: %q is not scenario=N (1..%d)", kv, maxRequests)
				continue
			}
			c.Ops[k] = n
		}
	}
	if (c.Profile != "" || c.LoadProfile != "") && !slices.Contains(c.Scenarios, c.ProfileOf) {
		bad("--profile-scenario %q is not among --scenarios", c.ProfileOf)
	}
	if c.Label == "" {
		c.Label = "embedded"
		if c.SpawnRedis != "" || c.SpawnDatabase != "" {
			c.Label = "redis+postgres"
		} else if c.Target != "" {
			c.Label = "target"
		}
	}
	return c, errors.Join(errs...)
}

func main() {
	// Like esscd, the tool collects at GOGC=300 unless GOGC is set: its
	// simulated browsers and apps make much short-lived garbage, and its CPU
	// shares the machine with the server's (8–14 % less per QR login,
	// docs/PERFORMANCE.md "Eighth round"). The spawned esscd is not affected.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr, logger); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

const usage = `usage:
  esscbench run   (--spawn [--spawn-database URL] [--spawn-redis URL] | --target URL --data DIR) (--requests N | --duration D) [flags]
  esscbench check --baseline FILE [--tolerance 0.15] REPORT.json...
  esscbench baseline -o FILE [-note TEXT] REPORT.json...   (repeats of a label merge to their best ratios)
  esscbench chart -o FILE.svg REPORT.json...
run "esscbench run -h" for the run flags.`

// dispatch runs a subcommand.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("esscbench: no subcommand")
	}
	switch args[0] {
	case "run":
		cfg, err := parseRun(args[1:], stderr)
		if err != nil {
			return err
		}
		_, err = Run(ctx, cfg, stdout, log)
		return err
	case "check":
		fs := flag.NewFlagSet("esscbench check", flag.ContinueOnError)
		fs.SetOutput(stderr)
		basePath := fs.String("baseline", "testdata/bench-baseline.json", "committed baseline")
		tol := fs.Float64("tolerance", 0.15, "allowed relative regression of a ratio")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() == 0 || *tol <= 0 || *tol >= 1 {
			return errors.New("esscbench check: give one or more report files and a tolerance in (0,1)")
		}
		base, err := ReadBaseline(*basePath)
		if err != nil {
			return err
		}
		reports, err := readReports(fs.Args())
		if err != nil {
			return err
		}
		lines, err := Check(base, reports, *tol)
		WriteCheck(stdout, lines)
		return err
	case "baseline", "chart":
		fs := flag.NewFlagSet("esscbench "+args[0], flag.ContinueOnError)
		fs.SetOutput(stderr)
		out := fs.String("o", "", "output file")
		note := fs.String("note", "", "baseline note (machine, how it was measured)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" || fs.NArg() == 0 {
			return fmt.Errorf("esscbench %s: -o FILE and one or more report files are required", args[0])
		}
		reports, err := readReports(fs.Args())
		if err != nil {
			return err
		}
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		if args[0] == "chart" {
			err = WriteSVG(f, reports)
		} else {
			b := Baseline{Note: *note, Reports: MergeBest(reports)}
			enc := jsonEncoder(f)
			err = enc.Encode(b)
		}
		return errors.Join(err, f.Close())
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("esscbench: unknown subcommand %q", args[0])
}

func readReports(paths []string) ([]Report, error) {
	var out []Report
	for _, p := range paths {
		r, err := ReadReport(p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Run executes cfg: spawn or connect, measure the reference, run every
// scenario, print the table and write the JSON and SVG files.
func Run(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) (*Report, error) {
	rep := &Report{Tool: "esscbench", Label: cfg.Label, Date: time.Now().UTC().Format(time.RFC3339), Workers: cfg.Workers, Rate: cfg.Rate,
		Requests: cfg.Requests, IdleRSS: -1, Machine: machine()}
	if cfg.Duration > 0 {
		rep.Duration = cfg.Duration.String()
	}
	base, data := cfg.Target, cfg.Data
	if cfg.Spawn {
		bin, err := findEsscd(cfg.Esscd)
		if err != nil {
			return nil, err
		}
		log.Info("spawning esscd", "binary", bin, "database", redactURL(cfg.SpawnDatabase), "redis", redactURL(cfg.SpawnRedis))
		sp, err := spawnServer(ctx, spawnConfig{Binary: bin, DatabaseURL: cfg.SpawnDatabase, RedisURL: cfg.SpawnRedis, Pprof: cfg.Profile != ""})
		if err != nil {
			return nil, err
		}
		defer sp.Close()
		base, data = sp.base, sp.DataDir()
	}
	tr := newTransport(cfg.Workers, cfg.Timeout) // the per-request timeout: clients keep Timeout 0
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e := &env{cfg: cfg, base: base, http: hc, tr: tr, run: randHex(4)}
	obs := &observer{e: e}
	if strings.HasPrefix(cfg.SpawnDatabase, "postgres") {
		if pid, err := postmasterPID(ctx, cfg.SpawnDatabase); err == nil {
			obs.pgPID = pid
		} else {
			log.Warn("PostgreSQL's CPU will not be measured", "err", err)
		}
	}
	if cfg.RedisAddr != "" {
		obs.redis = goredis.NewClient(&goredis.Options{Addr: cfg.RedisAddr})
		defer obs.redis.Close()
	}
	if s, err := scrape(ctx, hc, base); err == nil {
		rep.IdleRSS = round(s.RSSBytes/(1<<20), 1)
	} else {
		log.Warn("no server metrics: CPU and RSS figures will be missing", "err", err)
	}
	cred, err := readAdminCredentials(data)
	if err != nil {
		return nil, err
	}
	if e.admin, err = adminToken(ctx, hc, base, cred, "essc.admin.cards essc.admin.clients"); err != nil {
		return nil, err
	}
	ref0, err := measureReference(cfg.Reference)
	if err != nil {
		return nil, err
	}
	type prepared struct {
		sc scenario
		op opFunc
	}
	var preps []prepared
	for _, name := range cfg.Scenarios {
		sc, _ := lookupScenario(name)
		log.Info("setting up", "scenario", name)
		op, err := sc.Setup(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		preps = append(preps, prepared{sc, op})
	}
	if s, err := scrape(ctx, hc, base); err == nil {
		rep.GoroutinesStart = s.Goroutines
	}
	for _, p := range preps {
		log.Info("running", "scenario", p.sc.Name, "workers", cfg.Workers, "requests", cfg.Requests, "duration", cfg.Duration)
		var prof func(context.Context)
		if p.sc.Name == cfg.ProfileOf && (cfg.Profile != "" || cfg.LoadProfile != "") {
			prof = func(ctx context.Context) {
				if cfg.LoadProfile != "" {
					stop := profileSelf(cfg.LoadProfile, log)
					defer func() { <-ctx.Done(); stop() }()
				}
				if cfg.Profile != "" {
					captureProfile(ctx, base, cfg, log)
				}
			}
		}
		res := runScenario(ctx, e, obs, p.sc.Name, p.sc.ItemsPerOp(e), p.op, prof)
		rep.Scenarios = append(rep.Scenarios, res)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	ref1, err := measureReference(cfg.Reference)
	if err != nil {
		return nil, err
	}
	rep.Reference = ref0.mean(ref1)
	for _, v := range []*float64{&rep.Reference.SM2SignNS, &rep.Reference.SM2VerifyNS, &rep.Reference.SM2SignCPUNS, &rep.Reference.SM2VerifyCPUNS} {
		*v = round(*v, 0)
	}
	for i := range rep.Scenarios {
		rep.Scenarios[i].applyReference(rep.Reference)
	}
	tr.CloseIdleConnections()
	rep.GoroutinesEnd = settledGoroutines(ctx, base, rep.GoroutinesStart, 10*time.Second)
	if err := rep.WriteTable(stdout); err != nil {
		return rep, err
	}
	if cfg.JSON != "" {
		if err := writeFile(cfg.JSON, rep.WriteJSON); err != nil {
			return rep, err
		}
	}
	if cfg.SVG != "" {
		if err := writeFile(cfg.SVG, func(w io.Writer) error { return WriteSVG(w, []Report{*rep}) }); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// captureProfile fetches /debug/pprof/profile for (at most) the run.
func captureProfile(ctx context.Context, base string, cfg Config, log *slog.Logger) {
	secs := 10
	if cfg.Duration > 0 {
		secs = max(1, int(cfg.Duration.Seconds())-1)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	c := &http.Client{Transport: newSyncTransport(1, time.Duration(secs+30)*time.Second)}
	resp, err := c.Do(req)
	if err != nil {
		log.Warn("profile", "err", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Warn("profile: is pprof enabled on the server (observability.pprof)?", "status", resp.StatusCode)
		return
	}
	if err := writeFile(cfg.Profile, func(w io.Writer) error { _, err := io.Copy(w, resp.Body); return err }); err != nil {
		log.Warn("profile", "err", err)
	}
}

// profileSelf starts a CPU profile of this process into path; the returned
// func stops it and closes the file.
func profileSelf(path string, log *slog.Logger) (stop func()) {
	out, err := os.Create(path)
	if err != nil {
		log.Warn("load profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		log.Warn("load profile", "err", err)
		out.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := out.Close(); err != nil {
			log.Warn("load profile", "err", err)
		}
	}
}

func writeFile(path string, f func(io.Writer) error) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(f(out), out.Close())
}

// redactURL drops a password from a URL for logging.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

func machine() Machine {
	m := Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.LoadAvg, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// urlHost returns host:port of a URL (e.g. the Redis URL for --redis-addr).
func urlHost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("esscbench: %q has no host", s)
	}
	return u.Host, nil
}

// settledGoroutines polls the server's goroutine count after the load until
// it is back at (or below) start or limit passes, and returns the last
// count: connection and pool goroutines take a moment to end, and a count
// still above start after limit is a leak candidate.
func settledGoroutines(ctx context.Context, base string, start float64, limit time.Duration) float64 {
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	last := 0.0
	for {
		if s, err := scrape(ctx, c, base); err == nil {
			last = s.Goroutines
			if last <= start {
				return last
			}
		}
		if time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(500 * time.Millisecond):
		}
	}
}
