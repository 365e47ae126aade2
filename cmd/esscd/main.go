// Command esscd is the essc server: the composition root that reads the
// configuration, opens the backends, wires the handlers and serves.
//
// Configuration is layered (defaults, --config YAML, ESSC_* environment,
// flags) and validated as a whole before anything is opened; see config.go.
// The wiring of backends and handlers is in server.go. Only main sets the
// process-wide logger.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/essc-project/essc/signing"
)

// defaultGCPercent is the garbage collector's target heap growth when GOGC is
// not set: 300 instead of Go's 100. esscd's live heap is small (tens of
// MiB) and a login allocates a lot of short-lived garbage; at 300 the QR login
// took 4–14 % less server CPU in alternating runs, for about 70 MiB more RSS
// under load and none at idle (docs/PERFORMANCE.md, "Seventh round"). GOGC in
// the environment (including GOGC=off with GOMEMLIMIT) takes precedence.
const defaultGCPercent = 300

func main() {
	if gcPercent := gcPercentFor(os.Getenv); gcPercent != 0 {
		debug.SetGCPercent(gcPercent)
	}
	level := new(slog.LevelVar)
	logger := slog.New(maskingHandler{slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})})
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], logger, level); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		logger.Error("esscd stopped", "err", err)
		os.Exit(1)
	}
}

// gcPercentFor is the GC percent esscd sets at start: defaultGCPercent,
// unless GOGC is set (0: leave the runtime's own setting).
func gcPercentFor(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		return 0
	}
	return defaultGCPercent
}

// loadConfig layers the configuration: defaults, then the YAML file named by
// --config (or ESSC_CONFIG), then ESSC_* environment variables, then flags.
func loadConfig(args []string, stderr io.Writer, getenv func(string) string) (FileConfig, error) {
	c := defaults()
	fs := flag.NewFlagSet("esscd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("ESSC_CONFIG"), "YAML configuration file (env ESSC_CONFIG); see essc.example.yaml")
	var f FileConfig // flag values; applied only when set
	var mode string
	fs.StringVar(&mode, "mode", "", "development|production")
	fs.StringVar(&f.Data, "data", "", "data directory (default ./data; keys under DATA/keys)")
	fs.StringVar(&f.Listen, "listen", "", "HTTP listen address (default 127.0.0.1:8080)")
	fs.StringVar(&f.Issuer, "issuer", "", "public base URL (default http://LISTEN)")
	fs.BoolVar(&f.Demo, "demo", false, "seed demonstration data and serve /demo (development only)")
	fs.StringVar(&f.Keys.PasswordFile, "key-password-file", "", "file with the password of encrypted signing key files")
	fs.StringVar(&f.Database.URL, "database", "", "registry database URL (postgres://… or sqlite://path)")
	fs.StringVar(&f.Redis.URL, "redis", "", "Redis URL for sessions (default: in memory)")
	fs.DurationVar(&f.HTTP.ShutdownTimeout, "shutdown-timeout", 0, "grace period for in-flight requests on SIGINT/SIGTERM")
	fs.DurationVar(&f.Keys.CheckInterval, "key-check-interval", 0, "how often the key rotation schedule is applied")
	wh := &f.Entitlement.Webhooks
	fs.DurationVar(&wh.Lease, "webhook-lease", 0, "how long a dispatcher holds an agency's webhook deliveries (at least twice --webhook-timeout; default 1m)")
	fs.IntVar(&wh.MaxAttempts, "webhook-max-attempts", 0, "failed attempts before a webhook event is dead-lettered (default 8)")
	fs.DurationVar(&wh.RetryBase, "webhook-retry-base", 0, "delay before the first webhook retry, doubling after each failure (default 1s)")
	fs.DurationVar(&wh.RetryMax, "webhook-retry-max", 0, "cap of the webhook retry delay (default 1h)")
	fs.DurationVar(&wh.PollInterval, "webhook-poll-interval", 0, "how often the dispatcher looks for webhook work (default 1s)")
	fs.DurationVar(&wh.Timeout, "webhook-timeout", 0, "timeout of one webhook request (default 10s)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() != 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *configPath != "" {
		if err := loadFile(*configPath, &c); err != nil {
			return c, err
		}
	}
	envOverrides(&c, getenv)
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "mode":
			c.Mode = Mode(mode)
		case "data":
			c.Data = f.Data
		case "listen":
			c.Listen = f.Listen
		case "issuer":
			c.Issuer = f.Issuer
		case "demo":
			c.Demo = f.Demo
		case "key-password-file":
			c.Keys.PasswordFile = f.Keys.PasswordFile
		case "database":
			c.Database.URL = f.Database.URL
		case "redis":
			c.Redis.URL = f.Redis.URL
		case "shutdown-timeout":
			c.HTTP.ShutdownTimeout = f.HTTP.ShutdownTimeout
		case "key-check-interval":
			c.Keys.CheckInterval = f.Keys.CheckInterval
		case "webhook-lease":
			c.Entitlement.Webhooks.Lease = wh.Lease
		case "webhook-max-attempts":
			c.Entitlement.Webhooks.MaxAttempts = wh.MaxAttempts
		case "webhook-retry-base":
			c.Entitlement.Webhooks.RetryBase = wh.RetryBase
		case "webhook-retry-max":
			c.Entitlement.Webhooks.RetryMax = wh.RetryMax
		case "webhook-poll-interval":
			c.Entitlement.Webhooks.PollInterval = wh.PollInterval
		case "webhook-timeout":
			c.Entitlement.Webhooks.Timeout = wh.Timeout
		}
	})
	c.Finish()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

// run starts the server and blocks until ctx is cancelled (a signal) and the
// server has shut down, or it fails to start.
func run(ctx context.Context, args []string, logger *slog.Logger, level *slog.LevelVar) error {
	cfg, err := loadConfig(args, os.Stderr, os.Getenv)
	if err != nil {
		return err
	}
	if err := level.UnmarshalText([]byte(cfg.Observability.LogLevel)); err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer a.Close()

	srv := a.httpServer(ctx, logger)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	logger.Info("esscd listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "data", cfg.Data,
		"mode", string(cfg.Mode), "sessions", map[bool]string{true: "redis", false: "memory"}[cfg.RedisEnabled()], "demo", cfg.Demo)

	workers, stopWorkers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range a.workers {
		wg.Go(func() { w(workers) })
	}
	if cfg.Demo {
		a.demoWalkthrough(os.Stderr)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err = <-serveErr:
	case <-ctx.Done():
		logger.Info("esscd shutting down", "timeout", cfg.HTTP.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if serr := <-serveErr; err == nil && !errors.Is(serr, http.ErrServerClosed) {
			err = serr
		}
	}
	stopWorkers()
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("esscd stopped")
	return nil
}

// maintainKeys reloads the key directory and applies the rotation schedule
// (new pending keys, pruning) every interval until ctx ends.
func maintainKeys(ctx context.Context, keys *signing.KeyDir, every time.Duration, logger *slog.Logger) {
	onTick(ctx, every, func(now time.Time) {
		// Pick up changes made by `esscctl keys` first, so Save never
		// overwrites them.
		if err := keys.Reload(); err != nil {
			logger.Error("reload signing keys", "err", err)
			return
		}
		changed, err := keys.Maintain(now)
		if err != nil {
			logger.Error("key rotation", "err", err)
		} else if changed {
			logger.Info("key rotation schedule applied")
		}
	})
}
